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
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import standardwebhooks

__all__ = [
    "DEFAULT_JITTER",
    "DEFAULT_SCHEDULE",
    "SECRETS_ENV",
    "SECRET_ENV",
    "Webhook",
    "key_id",
    "parse_named_secrets",
    "parse_secrets",
    "sign",
    "signed_headers",
    "validate_secret",
    "validate_url",
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

#: Environment variable naming the per-customer secrets a job may choose by id (its metadata's
#: ``webhook_secret_id``): ``id=whsec_…`` entries, comma or whitespace separated; an id given
#: twice has two secrets (rotation).
SECRETS_ENV = "ENDCALL_WEBHOOK_SECRETS"
_SECRET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

#: the longest request timeout a `Webhook` accepts (leases are sized from it)
MAX_TIMEOUT = 300.0

_SPLIT = re.compile(r"[\s,]+")
USER_AGENT = "endcall-webhook/1"


def parse_secrets(text: str) -> tuple[str, ...]:
    """Split a comma/whitespace separated list of secrets (e.g. ``$ENDCALL_WEBHOOK_SECRET``)."""
    return tuple(s for s in _SPLIT.split(text.strip()) if s)


def parse_named_secrets(text: str, source: str = SECRETS_ENV) -> dict[str, tuple[str, ...]]:
    """``id=whsec_…`` entries, comma or whitespace separated (e.g. ``$ENDCALL_WEBHOOK_SECRETS``),
    as id → secrets; an id given twice keeps both secrets (rotation: one signature each).
    Raises ``ValueError`` naming the entry by position or id, never a secret's value."""
    named: dict[str, tuple[str, ...]] = {}
    for i, entry in enumerate(parse_secrets(text)):
        secret_id, sep, secret = entry.partition("=")
        if not sep or not _SECRET_ID.fullmatch(secret_id):
            raise ValueError(
                f"{source}: entry #{i + 1} is not id=whsec_… (an id is 1-64 letters, digits, "
                "'.', '_' or '-', starting with a letter or digit)"
            )
        try:
            validate_secret(secret)
        except ValueError as e:
            raise ValueError(
                f"{source}: the secret of id {secret_id!r} is not usable: {e}"
            ) from None
        named[secret_id] = (*named.get(secret_id, ()), secret)
    return named


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


def _key(secret: str) -> bytes:
    raw = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    raw = raw.rstrip("=")
    return base64.b64decode(raw + "=" * (-len(raw) % 4))


def key_id(secret: str) -> str:
    """A fingerprint naming a secret without revealing it: ``"k1_"`` + the first 16 hex digits
    of SHA-256 over the decoded key. Outbox rows carry the key ids their report is to be
    signed with, so a relay can tell whether it holds the right secret."""
    validate_secret(secret)
    return "k1_" + hashlib.sha256(b"endcall-key-id:" + _key(secret)).hexdigest()[:16]


def validate_url(url: object) -> str:
    """Return ``url`` if it is an absolute ``http://`` or ``https://`` URL with a host and no
    whitespace, user info or fragment; else raise ``ValueError`` saying what is wrong."""
    if not isinstance(url, str):
        raise ValueError(f"webhook url must be a string, got {type(url).__name__}")
    if not url or url != url.strip() or any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError(f"webhook url must not be empty or contain whitespace: {url!r}")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"webhook url is malformed ({e}): {url!r}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"webhook url must start with http:// or https://, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"webhook url has no host: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("webhook url must not carry user:password (the report is signed)")
    if parts.fragment or url.endswith("#"):
        raise ValueError(f"webhook url must not have a #fragment: {url!r}")
    if port == 0:
        raise ValueError(f"webhook url has port 0: {url!r}")
    return url


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
    ends (what is left is delivered later by a relay, see ``endcall.reports.relay``). ``headers``
    are extra request headers (stored with the report in the outbox so relays send them too — do
    not put credentials there if the outbox is shared with less trusted readers).

    Everything is checked here, so a mistake fails when the agent starts, not when a report is
    due: ``ValueError`` for a URL that is not an absolute http(s) URL with a host (or has
    whitespace, user info or a fragment), a secret that is not ``whsec_`` + base64 of at least
    16 bytes (naming which one), a timeout outside (0, 300] s, a negative or infinite delay in
    ``schedule``, ``in_process_window < 0`` or ``jitter`` outside [0, 1).
    """

    url: str
    secret: str | Sequence[str]
    timeout: float = 15.0
    schedule: Sequence[float] = DEFAULT_SCHEDULE
    in_process_window: float = 60.0
    headers: Mapping[str, str] = field(default_factory=dict)
    jitter: float = DEFAULT_JITTER

    def __post_init__(self) -> None:
        validate_url(self.url)
        if not isinstance(self.secret, (str, Sequence)):
            raise ValueError("webhook secret must be a string or a sequence of strings")
        secrets = _as_tuple(self.secret)
        if not secrets:
            raise ValueError("at least one webhook secret is required")
        for i, s in enumerate(secrets):
            if not isinstance(s, str):
                raise ValueError(f"webhook secret #{i + 1} must be a string")
            try:
                validate_secret(s)
            except ValueError as e:
                raise ValueError(f"webhook secret #{i + 1}: {e}") from None
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise ValueError(f"timeout must be > 0 and <= {MAX_TIMEOUT:g} seconds")
        if not self.schedule or any(not 0 <= d < float("inf") for d in self.schedule):
            raise ValueError("schedule must be a non-empty sequence of finite delays >= 0")
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

    def delivery(self) -> dict[str, Any]:
        """What a relay needs to deliver a report like this agent would, stored with each
        outbox row: the schedule, jitter, request timeout and the key ids of the secrets
        (`key_id`) — never the secrets themselves."""
        return {
            "schedule": list(self.schedule),
            "jitter": self.jitter,
            "timeout": self.timeout,
            "keys": [key_id(s) for s in self.secrets],
        }


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
