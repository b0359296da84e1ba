"""``endcall doctor``: check a host's setup for everything that would lose session reports.

Each check returns a `Check`: a name, whether it passed, what was found and, when it failed,
what to do. `run_checks` runs them in order; a check whose input is missing fails and says
which variable to set. The checks:

- ``outbox-reachable``: the outbox exists and opens (never created here);
- ``outbox-writable``: a row can be written and removed;
- ``outbox-durable``: a SQLite outbox is not on overlay/tmpfs (gone with the container) or a
  network filesystem;
- ``webhook-config``: ``ENDCALL_WEBHOOK_URL`` and ``ENDCALL_WEBHOOK_SECRET`` are well-formed;
- ``receiver-ping``: the receiver answers a signed ``endcall.ping`` with 2xx and refuses one
  with a wrong signature (it verifies signatures);
- ``livekit-credentials``: ``ListRooms`` works with ``LIVEKIT_URL``/key/secret;
- ``ledger-recent``: LiveKit's webhooks reached ``endcall serve`` recently (the room ledger);
- ``outbox-backlog``: no dead rows, and no pending row older than ``max_pending_age``;
- ``agent-timeouts``: the in-process delivery window plus one request fits in
  ``session_end_timeout``, and ``shutdown_process_timeout`` leaves time for the last steps;
- ``server-ready`` (with ``server_url``): a running ``endcall serve`` answers ``/readyz`` 200;
  its whole answer is the check's ``data`` (``endcall doctor --json``).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets as _secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from endcall.reports.outbox.base import OUTBOX_ENV, Outbox, Status, default_outbox_path
from endcall.reports.outbox.sql import SqlOutbox
from endcall.reports.redact import redact
from endcall.reports.storage import MOUNTINFO, storage_warning
from endcall.reports.webhook import (
    SECRET_ENV,
    parse_secrets,
    signed_headers,
    validate_secret,
    validate_url,
)

__all__ = ["Check", "DoctorOptions", "ping_body", "run_checks"]

URL_ENV = "ENDCALL_WEBHOOK_URL"
#: the base URL of a running ``endcall serve`` whose readiness the doctor asks
SERVER_ENV = "ENDCALL_SERVER_URL"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's answer."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    data: dict[str, Any] | None = None
    """What the check read, whole (``server-ready``: the server's ``/readyz`` answer)."""

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}
        if self.data is not None:
            out["data"] = self.data
        return out

    def line(self) -> str:
        mark = "✓" if self.ok else "✗"
        text = f"{mark} {self.name}: {self.detail}"
        return text + (f"\n    → {self.fix}" if self.fix and not self.ok else "")


@dataclass
class DoctorOptions:
    """What to check; `from_env` fills it from the environment."""

    outbox: str
    webhook_url: str | None = None
    secrets: tuple[str, ...] = ()
    livekit_url: str | None = None
    api_key: str | None = None
    api_secret: str | None = None
    ledger_max_age: float = 86400.0
    max_pending_age: float = 3600.0
    session_end_timeout: float = 300.0
    shutdown_process_timeout: float = 10.0
    in_process_window: float = 60.0
    webhook_timeout: float = 15.0
    ping_timeout: float = 10.0
    mountinfo: str = MOUNTINFO
    server_url: str | None = None
    """A running ``endcall serve`` (its base URL): its ``/readyz`` is one more check."""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> DoctorOptions:
        e = os.environ if env is None else env
        values: dict[str, Any] = {
            "outbox": e.get(OUTBOX_ENV) or str(default_outbox_path()),
            "webhook_url": e.get(URL_ENV) or None,
            "secrets": parse_secrets(e.get(SECRET_ENV, "")),
            "livekit_url": e.get("LIVEKIT_URL") or None,
            "api_key": e.get("LIVEKIT_API_KEY") or None,
            "api_secret": e.get("LIVEKIT_API_SECRET") or None,
            "server_url": e.get(SERVER_ENV) or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _is_url(target: str) -> bool:
    return target.startswith(("postgres://", "postgresql://"))


def _open(opts: DoctorOptions) -> tuple[Outbox | None, Check]:
    shown = redact(opts.outbox)
    if not _is_url(opts.outbox) and not Path(opts.outbox).is_file():
        return None, Check(
            "outbox-reachable",
            False,
            f"no outbox at {shown}",
            f"set {OUTBOX_ENV} to the outbox your agents write (a file on a volume, or"
            " postgresql://…), the same for the worker, relays and endcall serve",
        )
    from endcall.reports.outbox import open_outbox

    try:
        outbox = open_outbox(opts.outbox)
    except Exception as e:
        return None, Check(
            "outbox-reachable",
            False,
            redact(f"cannot open {opts.outbox}: {type(e).__name__}: {e}"),
            "check the path's permissions, or that PostgreSQL is up and the DSN is right",
        )
    return outbox, Check("outbox-reachable", True, f"{shown} opens")


def _writable(outbox: Outbox) -> Check:
    try:
        probe = getattr(outbox, "probe", None)
        if callable(probe):
            probe()
    except Exception as e:
        return Check(
            "outbox-writable",
            False,
            redact(f"a row cannot be written: {type(e).__name__}: {e}"),
            "give the agent's user write access (file and directory), or free disk space",
        )
    return Check("outbox-writable", True, "a row was written and removed")


def _durable(opts: DoctorOptions) -> Check:
    if _is_url(opts.outbox):
        return Check("outbox-durable", True, "PostgreSQL: outlives the process and the pod")
    why = storage_warning(opts.outbox, opts.mountinfo)
    if why is not None:
        return Check(
            "outbox-durable",
            False,
            why.split(":")[0],
            "mount a volume and point ENDCALL_OUTBOX at it, or use PostgreSQL",
        )
    return Check("outbox-durable", True, "on storage that outlives the process")


def _webhook(opts: DoctorOptions) -> Check:
    problems = []
    if not opts.webhook_url:
        problems.append(f"{URL_ENV} is not set")
    else:
        try:
            validate_url(opts.webhook_url)
        except ValueError as e:
            problems.append(f"{URL_ENV}: {e}")
    if not opts.secrets:
        problems.append(f"{SECRET_ENV} is not set")
    for i, s in enumerate(opts.secrets):
        try:
            validate_secret(s)
        except ValueError as e:
            problems.append(f"{SECRET_ENV} secret #{i + 1}: {e}")
    if problems:
        return Check(
            "webhook-config",
            False,
            "; ".join(problems),
            "set an absolute http(s) URL and whsec_ secrets (`endcall secret new`)",
        )
    return Check(
        "webhook-config", True, f"{opts.webhook_url}, {len(opts.secrets)} secret(s) well-formed"
    )


def ping_body() -> bytes:
    """A fresh ``endcall.ping`` (protocol.md §8)."""
    doc = {"type": "endcall.ping", "v": 1, "sent_at": int(time.time() * 1000)}
    return json.dumps(doc, separators=(",", ":")).encode()


def _ping(opts: DoctorOptions, transport: httpx.BaseTransport | None) -> Check:
    name = "receiver-ping"
    if not opts.webhook_url or not opts.secrets:
        return Check(name, False, "not tried: no webhook URL or secret", "fix webhook-config")
    body = ping_body()
    wid = "ping_" + _secrets.token_hex(8)
    now = int(time.time())
    try:
        good = signed_headers(wid, body, opts.secrets, now)
        forged = signed_headers(wid, body, ["whsec_" + "A" * 43], now)
        with httpx.Client(timeout=opts.ping_timeout, transport=transport) as client:
            r = client.post(opts.webhook_url, content=body, headers=good)
            if not 200 <= r.status_code < 300:
                return Check(
                    name,
                    False,
                    f"the signed endcall.ping got HTTP {r.status_code}",
                    "the receiver must answer 2xx to a correctly signed endcall.ping (and store"
                    " nothing); check its URL and that it has the same secret",
                )
            r2 = client.post(opts.webhook_url, content=body, headers=forged)
    except (httpx.HTTPError, ValueError) as e:
        return Check(
            name,
            False,
            f"the receiver cannot be reached: {type(e).__name__}: {e}",
            "check the URL, DNS and firewall from this host",
        )
    if 200 <= r2.status_code < 300:
        return Check(
            name,
            False,
            f"answered 2xx to the signed ping and also to a forged one (HTTP {r2.status_code})",
            "the receiver must verify webhook-signature on the raw body (Standard Webhooks)",
        )
    return Check(name, True, f"2xx to the signed ping, HTTP {r2.status_code} to a wrong signature")


def _livekit(opts: DoctorOptions) -> Check:
    name = "livekit-credentials"
    if not (opts.livekit_url and opts.api_key and opts.api_secret):
        return Check(
            name,
            False,
            "LIVEKIT_URL, LIVEKIT_API_KEY or LIVEKIT_API_SECRET is not set",
            "set the LiveKit project's URL and an API key pair",
        )
    import aiohttp
    from livekit import api

    async def list_rooms() -> int:
        assert opts.livekit_url and opts.api_key and opts.api_secret
        url = opts.livekit_url.replace("wss://", "https://").replace("ws://", "http://")
        lk = api.LiveKitAPI(url, opts.api_key, opts.api_secret, timeout=aiohttp.ClientTimeout(5))
        try:
            return len((await lk.room.list_rooms(api.ListRoomsRequest())).rooms)
        finally:
            await lk.aclose()

    try:
        n = asyncio.run(list_rooms())
    except Exception as e:
        return Check(
            name,
            False,
            f"ListRooms failed: {type(e).__name__}: {e}",
            "check LIVEKIT_URL and that the key pair belongs to that project/server",
        )
    return Check(name, True, f"ListRooms answered ({n} room(s))")


def _ledger(outbox: Outbox, opts: DoctorOptions) -> Check:
    name = "ledger-recent"
    fix = (
        "point LiveKit's webhooks (Cloud: project settings → Webhooks; self-hosted:"
        " webhook.urls) at endcall serve's /v1/livekit/webhook, with the same ENDCALL_OUTBOX"
    )
    if not isinstance(outbox, SqlOutbox):  # pragma: no cover - open_outbox gives SqlOutboxes
        return Check(name, False, "the outbox keeps no ledger", fix)
    from endcall.server.ledger import Ledger

    try:
        last = Ledger(outbox).last_received_at()
    except Exception as e:
        return Check(name, False, redact(f"the ledger cannot be read: {e}"), fix)
    if last is None:
        return Check(name, False, "no LiveKit webhook was ever recorded", fix)
    age = time.time() - last
    if age > opts.ledger_max_age:
        return Check(name, False, f"the newest LiveKit webhook is {age:.0f} s old", fix)
    return Check(name, True, f"the newest LiveKit webhook is {age:.0f} s old")


def _server(opts: DoctorOptions, transport: httpx.BaseTransport | None) -> Check | None:
    """``server-ready``: the running ``endcall serve``'s own ``/readyz``, part by part."""
    if not opts.server_url:
        return None
    name = "server-ready"
    url = opts.server_url.rstrip("/") + "/readyz"
    try:
        with httpx.Client(timeout=opts.ping_timeout, transport=transport) as client:
            resp = client.get(url)
        doc = resp.json()
        parts = doc["parts"]
    except Exception as e:
        return Check(
            name,
            False,
            f"{url}: {type(e).__name__}: {e}",
            f"start endcall serve, or point --server / {SERVER_ENV} at it",
        )
    failing = sorted(
        k for k, v in parts.items() if v.get("enabled", True) and not v.get("ok", True)
    )
    if resp.status_code == 200 and not failing:
        return Check(name, True, f"{url} is ready", data=doc)
    why = "; ".join(f"{k}: {parts[k].get('error') or 'not ok'}" for k in failing)
    return Check(
        name,
        False,
        f"{url} answers {resp.status_code}: {why or doc.get('status')}",
        "see the failing parts: the database (ENDCALL_OUTBOX), LiveKit (LIVEKIT_URL), or a"
        " background loop's error in endcall serve's log",
        data=doc,
    )


def _backlog(outbox: Outbox, opts: DoctorOptions) -> Check:
    name = "outbox-backlog"
    if isinstance(outbox, SqlOutbox):
        backlog = outbox.backlog()
        counts, age = backlog.counts, backlog.oldest_pending_age
    else:  # pragma: no cover - open_outbox gives SqlOutboxes
        counts = outbox.counts()
        oldest: float | None = None
        statuses: tuple[Status, ...] = ("pending", "delivering")
        for status in statuses:
            for rec in outbox.records(status, limit=100000):
                oldest = rec.created_at if oldest is None else min(oldest, rec.created_at)
        age = None if oldest is None else time.time() - oldest
    detail = (
        f"pending {counts.get('pending', 0)}, delivering {counts.get('delivering', 0)},"
        f" dead {counts.get('dead', 0)}, drafts {counts.get('draft', 0)}"
        + ("" if age is None else f"; oldest pending {age:.0f} s")
    )
    if counts.get("dead", 0):
        return Check(
            name,
            False,
            detail,
            "dead reports never reached the backend: fix the receiver, then"
            " `endcall outbox replay --dead`",
        )
    if age is not None and age > opts.max_pending_age:
        return Check(
            name,
            False,
            detail,
            "no relay is delivering: run `endcall outbox deliver --forever`, endcall serve with"
            " this outbox, or setup_fnc=endcall.prewarm; and check the receiver",
        )
    return Check(name, True, detail)


def _timeouts(opts: DoctorOptions) -> Check:
    name = "agent-timeouts"
    need = opts.in_process_window + opts.webhook_timeout
    detail = (
        f"in-process window {opts.in_process_window:g} s + request timeout"
        f" {opts.webhook_timeout:g} s vs session_end_timeout {opts.session_end_timeout:g} s;"
        f" shutdown_process_timeout {opts.shutdown_process_timeout:g} s"
    )
    if need >= opts.session_end_timeout:
        return Check(
            name,
            False,
            detail,
            "livekit-agents cuts on_session_end off first: lower Webhook(in_process_window=…)"
            " or raise session_end_timeout on AgentServer",
        )
    if opts.shutdown_process_timeout < 5:
        return Check(
            name,
            False,
            detail,
            "the job process is killed before its last steps (room deletion, outbox close):"
            " keep shutdown_process_timeout at 5 s or more (default 10)",
        )
    return Check(name, True, detail)


def run_checks(opts: DoctorOptions, *, transport: httpx.BaseTransport | None = None) -> list[Check]:
    """Every check, in order (see the module doc)."""
    checks: list[Check] = []
    outbox, reach = _open(opts)
    checks.append(reach)
    try:
        if outbox is not None:
            checks.append(_writable(outbox))
            checks.append(_durable(opts))
        checks.append(_webhook(opts))
        checks.append(_ping(opts, transport))
        checks.append(_livekit(opts))
        if outbox is not None:
            checks.append(_ledger(outbox, opts))
            checks.append(_backlog(outbox, opts))
        checks.append(_timeouts(opts))
        server = _server(opts, transport)
        if server is not None:
            checks.append(server)
    finally:
        if outbox is not None:
            outbox.close()
    return checks
