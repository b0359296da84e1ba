"""`job_config(ctx.job.metadata)`: where one job's report goes and what it carries, from its
dispatch metadata — without trusting the metadata with secrets or destinations.

A job's metadata is set by whoever dispatched it, and the worker cannot tell who that was: a
server-side `CreateAgentDispatchRequest`, or a participant's access token
(`RoomConfiguration(agents=[RoomAgentDispatch(metadata=...)])`), which the browser holding it
can read — and set, when the token route copies the client's room configuration. So:

- **a secret is named, never carried**: `"webhook_secret_id": "acme"` picks a secret from the
  worker's `ENDCALL_WEBHOOK_SECRETS` (`acme=whsec_… globex=whsec_…`; an id given twice has two
  secrets, for rotation) or from `secrets=` (a mapping, or a function id → secret(s) or None).
  A `webhook_secret` in the metadata is refused: it has leaked to every holder of the token.
- **a per-job `webhook_url` must be allowed**: it matches the worker's allow-list
  (`ENDCALL_WEBHOOK_URL_ALLOW` plus `allow_urls=`; an entry is a URL prefix,
  `https://hooks.example.com/endcall/`, or an https host, `hooks.example.com`,
  `*.hooks.example.com`), or it comes in a **dispatch claim** the backend signed.
- **a dispatch claim** is `"endcall_dispatch": "<JWT>"` in the metadata: HS256 with
  `ENDCALL_DISPATCH_KEY` (a key only the backend and the workers hold, at least 32 bytes, never
  the LiveKit API secret), audience `endcall.dispatch`, an `exp`, and any of `webhook_url`,
  `webhook_secret_id`, `webhook_schedule`, `report_meta`, `room` (then only a job in that room
  may use it). `dispatch_metadata(...)` makes the metadata text. A JWT is signed, not
  encrypted: it carries no secret either. When a claim verifies, it decides the destination
  (`webhook_url`, `webhook_secret_id`, `webhook_schedule` outside it are ignored) and its
  `report_meta` fields win over plain ones.
- **`webhook_schedule`** (the retry delays) is honoured only in a claim: a candidate could
  otherwise push their report's retries out of reach.
- **`report_meta`** is kept either way, but a `ReportMeta` that knows its source: the report's
  `annotations_source` is `"unsigned"` while any plain-metadata field is in it (protocol.md §6),
  so the backend never files a report under a company id the candidate chose.

**What "refused" means.** Nothing the metadata says can lose the report or send it where the
browser chose: a refused part is not used, an ERROR is logged naming it and the fix, and the
report goes to the worker's **default destination** (`ENDCALL_WEBHOOK_URL` signed with
`ENDCALL_WEBHOOK_SECRET`, or `default_url=` / `default_secret=`), with every refusal listed in
its `end.config_refused`. A refused URL or secret id makes the whole destination the default
(URL, secrets and schedule together). `JobConfigError` (a `ValueError`) is raised only when
there is no default destination to fall back to, when `strict=True` (any refusal), or when the
worker's own configuration is wrong (a malformed `ENDCALL_WEBHOOK_SECRETS`, allow-list entry
or dispatch key): those fail every job alike, at its start.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt

from endcall.agent.annotations import Annotations, ReportMeta
from endcall.reports.webhook import (
    SECRET_ENV,
    SECRETS_ENV,
    Webhook,
    parse_named_secrets,
    parse_secrets,
    validate_secret,
    validate_url,
)

__all__ = [
    "CLAIM_AUDIENCE",
    "CLAIM_KEY",
    "DISPATCH_KEY_ENV",
    "URL_ALLOW_ENV",
    "JobConfig",
    "JobConfigError",
    "SecretResolver",
    "dispatch_metadata",
    "job_config",
]

logger = logging.getLogger("endcall")

URL_ENV = "ENDCALL_WEBHOOK_URL"
#: allowed per-job webhook URLs: URL prefixes or https hosts, comma or whitespace separated
URL_ALLOW_ENV = "ENDCALL_WEBHOOK_URL_ALLOW"
#: the HS256 key of dispatch claims (the backend signs, the workers verify)
DISPATCH_KEY_ENV = "ENDCALL_DISPATCH_KEY"
#: the metadata field holding a dispatch claim, and the claim's audience
CLAIM_KEY = "endcall_dispatch"
CLAIM_AUDIENCE = "endcall.dispatch"
MIN_KEY_BYTES = 32
DEFAULT_CLAIM_TTL = 900.0
#: clock skew tolerated between the backend that signs and the worker that verifies
CLAIM_LEEWAY = 30.0
_SECRET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HOST_ENTRY = re.compile(r"(\*\.)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?")
_DESTINATION = ("webhook_url", "webhook_secret_id", "webhook_schedule")

#: resolves a `webhook_secret_id` to its secret(s); None when the id is unknown
SecretResolver = Callable[[str], str | Sequence[str] | None]


class JobConfigError(ValueError):
    """The job cannot be configured safely: nothing to fall back to, `strict=True`, or the
    worker's own configuration is wrong. The message names the problem and the fix."""


@dataclass(frozen=True)
class JobConfig:
    """One job's report settings. Pass `webhook` and `report_meta` (as it is: a `ReportMeta`)
    to `EndCall`."""

    webhook: Webhook = field(repr=False)  # its repr would show the secrets
    report_meta: ReportMeta
    #: a dispatch claim verified (its fields are `"signed"`)
    signed: bool = False
    #: the report goes to the default destination (`ENDCALL_WEBHOOK_URL`)
    default_destination: bool = True
    #: what was refused, one message each (also in the report's `end.config_refused`)
    refused: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """Where the report goes."""
        return self.webhook.url


def _short(value: object, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------ the allow-list


def _port(parts: urllib.parse.SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def _check_allow_entry(entry: str) -> str:
    if "://" in entry:
        try:
            validate_url(entry)
        except ValueError as e:
            raise JobConfigError(
                f"{URL_ALLOW_ENV} / allow_urls: entry {entry!r} is not a URL prefix: {e}"
            ) from None
        if urllib.parse.urlsplit(entry).query:
            raise JobConfigError(
                f"{URL_ALLOW_ENV} / allow_urls: entry {entry!r} must not have a ?query"
            )
    elif not _HOST_ENTRY.fullmatch(entry):
        raise JobConfigError(
            f"{URL_ALLOW_ENV} / allow_urls: entry {entry!r} is neither a URL prefix "
            "(https://host/path/) nor a host (host, host:port, *.domain)"
        )
    return entry


def _dot_segments(path: str) -> bool:
    return any(seg in (".", "..") for seg in urllib.parse.unquote(path).split("/"))


def url_allowed(url: str, entries: Sequence[str]) -> bool:
    """Whether `url` (already a valid webhook URL) matches an allow-list entry: a URL prefix
    (same scheme, host and port; the path equal to the prefix's or below it, on a `/`
    boundary) or an https host (`host`, `host:port`, `*.domain` for its subdomains)."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if _dot_segments(parts.path):
        return False
    for entry in entries:
        if "://" in entry:
            prefix = urllib.parse.urlsplit(entry)
            if (
                prefix.scheme.lower() != parts.scheme.lower()
                or (prefix.hostname or "").lower() != host
                or _port(prefix) != _port(parts)
            ):
                continue
            want, path = prefix.path or "/", parts.path or "/"
            if path == want or path.startswith(want if want.endswith("/") else want + "/"):
                return True
        else:
            wildcard = entry.startswith("*.")
            name, _, port = entry.removeprefix("*.").rpartition(":")
            if not name or "]" in port:  # no port given (or an IPv6 address's last group)
                name, port = entry.removeprefix("*."), ""
            name = name.lower().strip("[]")
            if parts.scheme != "https" or _port(parts) != (int(port) if port else 443):
                continue
            if host.endswith("." + name) if wildcard else host == name:
                return True
    return False


# ------------------------------------------------------------------ the claim


def _dispatch_key(key: str | None) -> bytes | None:
    text = key if key is not None else os.environ.get(DISPATCH_KEY_ENV) or None
    if text is None:
        return None
    raw = text.encode()
    if len(raw) < MIN_KEY_BYTES:
        raise JobConfigError(f"{DISPATCH_KEY_ENV} must be at least {MIN_KEY_BYTES} bytes")
    if text == os.environ.get("LIVEKIT_API_SECRET"):
        raise JobConfigError(
            f"{DISPATCH_KEY_ENV} must not be the LiveKit API secret: that key signs the access "
            "tokens browsers hold; use a key only the backend and the workers have"
        )
    return raw


def _verify_claim(token: object, key: bytes | None, room: str | None) -> dict[str, Any]:
    """The claim's fields; raises `ValueError` saying why it is refused."""
    if key is None:
        raise ValueError(
            f"the metadata has a dispatch claim ({CLAIM_KEY}) but the worker has no "
            f"{DISPATCH_KEY_ENV} to verify it; the claim is ignored"
        )
    if not isinstance(token, str):
        raise ValueError(f"{CLAIM_KEY} must be a JWT string; the claim is ignored")
    try:
        claim = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            audience=CLAIM_AUDIENCE,
            leeway=CLAIM_LEEWAY,
            # exp decides; an iat a little ahead (the backend's clock) is no reason to refuse
            options={"require": ["exp", "aud"], "verify_iat": False},
        )
    except jwt.ExpiredSignatureError:
        raise ValueError("the dispatch claim has expired; the claim is ignored") from None
    except jwt.InvalidSignatureError:
        raise ValueError(
            f"the dispatch claim's signature does not verify with {DISPATCH_KEY_ENV} (signed "
            "with another key, or altered); the claim is ignored"
        ) from None
    except jwt.InvalidTokenError as e:
        raise ValueError(f"the dispatch claim is not valid ({e}); the claim is ignored") from None
    bound = claim.get("room")
    if bound is not None and bound != room:
        where = "was not told the job's room (room=)" if room is None else f"runs in {room!r}"
        raise ValueError(
            f"the dispatch claim is for room {_short(bound)} but this job {where}; the claim "
            "is ignored"
        )
    return dict(claim)


def dispatch_metadata(
    *,
    webhook_url: str | None = None,
    webhook_secret_id: str | None = None,
    report_meta: Mapping[str, Any] | None = None,
    webhook_schedule: Sequence[float] | None = None,
    room: str | None = None,
    key: str | None = None,
    ttl: float = DEFAULT_CLAIM_TTL,
    extra: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """The job metadata (JSON text) for `CreateAgentDispatchRequest(metadata=...)`: a dispatch
    claim signed with `key` (default `$ENDCALL_DISPATCH_KEY`) carrying the given fields,
    valid for `ttl` seconds (until the job starts) and, with `room`, only in that room;
    `extra` adds plain fields beside it. For the backend; raises `ValueError` for bad input."""
    raw = _dispatch_key(key)
    if raw is None:
        raise ValueError(f"no dispatch key: pass key= or set {DISPATCH_KEY_ENV}")
    if not 0 < ttl < math.inf:
        raise ValueError("ttl must be a positive number of seconds")
    issued = time.time() if now is None else now
    claim: dict[str, Any] = {"aud": CLAIM_AUDIENCE, "iat": int(issued), "exp": int(issued + ttl)}
    if webhook_url is not None:
        claim["webhook_url"] = validate_url(webhook_url)
    if webhook_secret_id is not None:
        if not _SECRET_ID.fullmatch(webhook_secret_id):
            raise ValueError(f"webhook_secret_id {webhook_secret_id!r} is not a secret id")
        claim["webhook_secret_id"] = webhook_secret_id
    if report_meta is not None:
        Annotations(report_meta)  # JSON values, at most 4,096 bytes
        claim["report_meta"] = dict(report_meta)
    if webhook_schedule is not None:
        claim["webhook_schedule"] = list(_schedule(list(webhook_schedule)))
    if room is not None:
        claim["room"] = room
    plain = dict(extra or {})
    if "webhook_secret" in plain or CLAIM_KEY in plain:
        raise ValueError(f"extra must not carry webhook_secret or {CLAIM_KEY}")
    token = jwt.encode(claim, raw, algorithm="HS256")
    return json.dumps({**plain, CLAIM_KEY: token})


# ------------------------------------------------------------------ the job's settings


def _schedule(value: object) -> tuple[float, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(d, int | float) and not isinstance(d, bool) for d in value)
        or not all(0 <= d < math.inf for d in value)
    ):
        raise ValueError("webhook_schedule must be a non-empty list of seconds (>= 0)")
    return tuple(float(d) for d in value)


def _secret_tuple(value: object, secret_id: str) -> tuple[str, ...]:
    found = parse_secrets(value) if isinstance(value, str) else value
    if not isinstance(found, Sequence) or not found or not all(isinstance(s, str) for s in found):
        raise JobConfigError(f"the secret of webhook_secret_id {secret_id!r} is not whsec_…")
    for s in found:
        try:
            validate_secret(s)
        except ValueError as e:
            raise JobConfigError(f"the secret of webhook_secret_id {secret_id!r}: {e}") from None
    return tuple(found)


class _Reader:
    """One `job_config` call: the refusals, and the worker's own settings."""

    def __init__(
        self,
        secrets: Mapping[str, str | Sequence[str]] | SecretResolver | None,
        allow_urls: Sequence[str],
        default_url: str | None,
    ) -> None:
        self.refused: list[str] = []
        if secrets is None:
            try:
                secrets = parse_named_secrets(os.environ.get(SECRETS_ENV, ""))
            except ValueError as e:
                raise JobConfigError(str(e)) from None
        self.secrets = secrets
        env_allow = parse_secrets(os.environ.get(URL_ALLOW_ENV, ""))  # the same separators
        self.allow = [_check_allow_entry(e) for e in (*env_allow, *allow_urls)]
        self.default_url = default_url

    def refuse(self, message: str) -> None:
        self.refused.append(message)

    def resolve(self, secret_id: object) -> tuple[str, ...] | None:
        if not isinstance(secret_id, str) or not _SECRET_ID.fullmatch(secret_id):
            self.refuse(f"webhook_secret_id {_short(secret_id)} is not a secret id")
            return None
        try:
            if callable(self.secrets):
                found: object = self.secrets(secret_id)
            else:
                found = self.secrets.get(secret_id)
        except Exception as e:
            self.refuse(f"webhook_secret_id {secret_id!r} could not be resolved ({e!r})")
            return None
        if found is None:
            self.refuse(
                f"webhook_secret_id {secret_id!r} is unknown to this worker: add "
                f"{secret_id}=whsec_… to {SECRETS_ENV} (or to the secrets= given to job_config)"
            )
            return None
        return _secret_tuple(found, secret_id)

    def url(self, url: object, signed: bool) -> str | None:
        try:
            checked = validate_url(url)
        except ValueError as e:
            self.refuse(f"webhook_url {_short(url)} is not usable: {e}")
            return None
        if signed or checked == self.default_url or url_allowed(checked, self.allow):
            return checked
        self.refuse(
            f"webhook_url {_short(checked)} is not allowed: a job's metadata may be set by the "
            f"candidate's browser. Add it (a URL prefix or host) to {URL_ALLOW_ENV}, or send it "
            f"in a dispatch claim signed with {DISPATCH_KEY_ENV} (endcall.dispatch_metadata)"
        )
        return None

    def destination(self, fields: Mapping[str, Any], signed: bool) -> dict[str, Any] | None:
        """`Webhook` arguments of the job's own destination, or None for the default."""
        if not any(k in fields for k in _DESTINATION):
            return None
        out: dict[str, Any] = {}
        if fields.get("webhook_url") is not None:
            out["url"] = self.url(fields["webhook_url"], signed)
        if fields.get("webhook_secret_id") is not None:
            out["secret"] = self.resolve(fields["webhook_secret_id"])
        if fields.get("webhook_schedule") is not None:
            if not signed:
                self.refuse(
                    "webhook_schedule is honoured only in a dispatch claim (a candidate could "
                    "push the retries out of reach); the default schedule is used"
                )
            else:
                try:
                    out["schedule"] = _schedule(fields["webhook_schedule"])
                except ValueError as e:
                    self.refuse(str(e))
        refused = out.get("url", "") is None or out.get("secret", ()) is None
        if refused or "webhook_secret" in fields:
            return {}  # a refused URL or secret: the whole destination is the default
        return {k: v for k, v in out.items() if v is not None}

    def report_meta(self, value: object, source: str) -> ReportMeta:
        if value is None:
            return ReportMeta(source="code")
        try:
            if not isinstance(value, dict):
                raise ValueError("it is not a JSON object")
            Annotations(value)
        except ValueError as e:
            self.refuse(f"report_meta in the {source} is not usable ({e}); it is ignored")
            return ReportMeta(source="code")
        return ReportMeta(value, source="signed" if source == "dispatch claim" else "unsigned")


def _load(metadata: str | None, reader: _Reader) -> dict[str, Any]:
    if metadata is None or not metadata.strip():
        return {}
    try:
        doc = json.loads(metadata)
    except ValueError as e:
        reader.refuse(f"the job metadata is not JSON ({e}); it is ignored")
        return {}
    if not isinstance(doc, dict):
        reader.refuse("the job metadata is not a JSON object; it is ignored")
        return {}
    return doc


def job_config(
    metadata: str | None,
    *,
    room: str | None = None,
    secrets: Mapping[str, str | Sequence[str]] | SecretResolver | None = None,
    allow_urls: Sequence[str] = (),
    dispatch_key: str | None = None,
    default_url: str | None = None,
    default_secret: str | Sequence[str] | None = None,
    strict: bool = False,
) -> JobConfig:
    """Read one job's metadata (`ctx.job.metadata`; pass `room=ctx.job.room.name` so claims
    bound to a room are checked) into its `Webhook` and `ReportMeta` — see the module doc for
    the rules. `secrets` replaces `$ENDCALL_WEBHOOK_SECRETS`, `allow_urls` adds to
    `$ENDCALL_WEBHOOK_URL_ALLOW`, `dispatch_key` replaces `$ENDCALL_DISPATCH_KEY`,
    `default_url` / `default_secret` replace `$ENDCALL_WEBHOOK_URL` /
    `$ENDCALL_WEBHOOK_SECRET`. Refusals are logged at ERROR and listed in `refused`; raises
    `JobConfigError` as the module doc says."""
    url = default_url or os.environ.get(URL_ENV) or None
    reader = _Reader(secrets, allow_urls, url)
    key = _dispatch_key(dispatch_key)
    own_secret = default_secret if default_secret is not None else os.environ.get(SECRET_ENV, "")
    fallback = parse_secrets(own_secret) if isinstance(own_secret, str) else tuple(own_secret)
    plain = _load(metadata, reader)
    claim: dict[str, Any] | None = None
    if CLAIM_KEY in plain:
        try:
            claim = _verify_claim(plain[CLAIM_KEY], key, room)
        except ValueError as e:
            reader.refuse(str(e))
    for where, doc in (("job metadata", plain), ("dispatch claim", claim or {})):
        if "webhook_secret" in doc:
            reader.refuse(
                f"the {where} carries a webhook_secret: it is readable by whoever holds the "
                f"token or the claim, so it is never used — rotate that secret, put it in "
                f"{SECRETS_ENV} and name it with webhook_secret_id"
            )
    signed = claim is not None
    dest_fields = claim if claim is not None and any(k in claim for k in _DESTINATION) else plain
    if dest_fields is claim and any(k in plain for k in _DESTINATION):
        logger.warning("endcall: the dispatch claim decides the destination; plain fields ignored")
    destination = reader.destination(dest_fields, signed=dest_fields is claim)
    meta = reader.report_meta(plain.get("report_meta"), "job metadata")
    if claim is not None:
        meta = meta | reader.report_meta(claim.get("report_meta"), "dispatch claim")
    try:
        Annotations(meta)
    except ValueError as e:
        reader.refuse(f"report_meta in the job metadata is not usable with the claim's ({e})")
        meta = reader.report_meta(claim.get("report_meta") if claim else None, "dispatch claim")
    refused = tuple(reader.refused)
    for message in refused:
        logger.error("endcall: job configuration refused (room %s): %s", room or "?", message)
    if refused and strict:
        raise JobConfigError("job configuration refused: " + "; ".join(refused))
    args = dict(destination or {})
    args.setdefault("url", url)
    args.setdefault("secret", fallback)
    if not args["url"] or not args["secret"]:
        missing = "URL" if not args["url"] else "secret"
        raise JobConfigError(
            f"no webhook {missing} for this job: set {URL_ENV} and {SECRET_ENV} (the default "
            "destination), or send a webhook_url/webhook_secret_id in a dispatch claim"
            + (f" (refused: {'; '.join(refused)})" if refused else "")
        )
    try:
        webhook = Webhook(**args)
    except ValueError as e:
        raise JobConfigError(f"the job's webhook is not usable: {e}") from None
    is_default = "url" not in (destination or {}) and "secret" not in (destination or {})
    asked = any(k in plain for k in (*_DESTINATION, "webhook_secret", CLAIM_KEY))
    if refused and asked and is_default:
        logger.error("endcall: this job's report goes to the default destination %s", url)
    return JobConfig(
        webhook=webhook,
        report_meta=meta.with_refusals(refused),
        signed=signed,
        default_destination=is_default,
        refused=refused,
    )
