"""Where and how a session report is sent: the `Webhook` config and Standard Webhooks signing.

A report is POSTed with the Standard Webhooks headers:

- ``webhook-id``: the report's ``end_id`` (stable across retries: the receiver's idempotency key),
- ``webhook-timestamp``: Unix seconds of *this* attempt,
- ``webhook-signature``: one ``v1,<base64 HMAC-SHA256>`` per secret, space separated, over
  ``"{id}.{timestamp}.{body}"`` — several secrets at once allow key rotation.

Signatures are computed with the reference ``standardwebhooks`` package. Secrets are
``whsec_<base64>`` strings (the ``whsec_`` prefix is optional, as in the reference package).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import standardwebhooks

__all__ = [
    "DEFAULT_JITTER",
    "DEFAULT_SCHEDULE",
    "SECRET_ENV",
    "Webhook",
    "parse_secrets",
    "sign",
    "signed_headers",
    "validate_secret",
]

#: Seconds to wait before each attempt: immediately, 5 s, 30 s, 2 min, 10 min, 30 min, 1 h,
#: 2 h, 6 h, 12 h, 24 h (about 46 h in all). After the last one fails the report is ``dead``.
DEFAULT_SCHEDULE: tuple[float, ...] = (
    0.0,
    5.0,
    30.0,
    120.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    21600.0,
    43200.0,
    86400.0,
)

#: Each non-zero delay is multiplied by a random factor in ``[1 - jitter, 1 + jitter]``.
DEFAULT_JITTER = 0.1

#: Environment variable holding the secret(s) relays outside the agent sign with
#: (comma or whitespace separated, for rotation).
SECRET_ENV = "ENDCALL_WEBHOOK_SECRET"

_SPLIT = re.compile(r"[\s,]+")
USER_AGENT = "endcall-webhook/1"


def parse_secrets(text: str) -> tuple[str, ...]:
    """Split a comma/whitespace separated list of secrets (e.g. ``$ENDCALL_WEBHOOK_SECRET``)."""
    return tuple(s for s in _SPLIT.split(text.strip()) if s)


def validate_secret(secret: str) -> None:
    """Raise ``ValueError`` unless ``secret`` is a usable Standard Webhooks secret."""
    raw = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    raw = raw.rstrip("=")
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError("webhook secret must be 'whsec_' followed by base64") from e
    if len(key) < 16:
        raise ValueError("webhook secret must decode to at least 16 bytes")


def _as_tuple(secret: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(secret, str):
        return parse_secrets(secret)
    return tuple(secret)


@dataclass(frozen=True)
class Webhook:
    """Destination of the session report.

    ``secret`` is one secret or several (a sequence, or one comma/space separated string);
    each one adds a ``v1`` signature. ``schedule`` is the delay before each attempt (the first
    is normally 0: immediately); ``jitter`` randomises non-zero delays by ±that fraction.
    ``in_process_window`` bounds how long the agent process keeps retrying after the session
    ends (what is left is delivered later by a relay, see ``endcall.relay``). ``headers`` are
    extra request headers (stored with the report in the outbox so relays send them too — do
    not put credentials there if the outbox is shared with less trusted readers).
    """

    url: str
    secret: str | Sequence[str]
    timeout: float = 15.0
    schedule: Sequence[float] = DEFAULT_SCHEDULE
    in_process_window: float = 60.0
    headers: Mapping[str, str] = field(default_factory=dict)
    jitter: float = DEFAULT_JITTER

    def __post_init__(self) -> None:
        if not (self.url.startswith("http://") or self.url.startswith("https://")):
            raise ValueError(f"webhook url must be http(s)://..., got {self.url!r}")
        secrets = _as_tuple(self.secret)
        if not secrets:
            raise ValueError("at least one webhook secret is required")
        for s in secrets:
            validate_secret(s)
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        if not self.schedule or any(d < 0 for d in self.schedule):
            raise ValueError("schedule must be a non-empty sequence of delays >= 0")
        if self.in_process_window < 0:
            raise ValueError("in_process_window must be >= 0")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        # freeze mutable inputs so the config is hashable-ish and cannot change under us
        object.__setattr__(self, "schedule", tuple(float(d) for d in self.schedule))
        object.__setattr__(self, "headers", dict(self.headers))

    @property
    def secrets(self) -> tuple[str, ...]:
        """All secrets, in order; each produces one signature."""
        return _as_tuple(self.secret)


@functools.lru_cache(maxsize=64)
def _signer(secret: str) -> standardwebhooks.Webhook:
    return standardwebhooks.Webhook(secret)


def sign(end_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> str:
    """The ``webhook-signature`` header value: one ``v1,...`` per secret, space separated.

    Uses ``standardwebhooks.Webhook.sign``, which signs text; bodies that are not UTF-8 are
    signed over their raw bytes with the same HMAC construction.
    """
    ts = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    try:
        text: str | None = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    sigs: list[str] = []
    for secret in secrets:
        if text is not None:
            sigs.append(_signer(secret).sign(end_id, ts, text))
        else:
            raw = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
            key = base64.b64decode(raw + "==")
            mac = hmac.new(key, f"{end_id}.{timestamp}.".encode() + body, hashlib.sha256)
            sigs.append("v1," + base64.b64encode(mac.digest()).decode())
    return " ".join(sigs)


def signed_headers(
    end_id: str,
    body: bytes,
    secrets: Sequence[str],
    timestamp: int,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """All request headers of one attempt (extra headers never override the signed ones)."""
    headers = {"content-type": "application/json", "user-agent": USER_AGENT}
    if extra:
        headers.update({k.lower(): v for k, v in extra.items()})
    headers["webhook-id"] = end_id
    headers["webhook-timestamp"] = str(timestamp)
    headers["webhook-signature"] = sign(end_id, timestamp, body, secrets)
    return headers
