"""Settings of the fallback server, from the environment and/or explicit values.

Environment variables (every one has a matching ``endcall serve`` flag):

=============================  ===========================================================
``LIVEKIT_URL``                LiveKit server URL (``wss://…`` or ``https://…``), required
``LIVEKIT_API_KEY``            API key, required
``LIVEKIT_API_SECRET``         API secret, required
``ENDCALL_ALLOWED_ORIGINS``    CORS origins, comma/space separated (``*`` for any); none
``ENDCALL_ACK_TIMEOUT``        seconds to wait for the agent's ack (3)
``ENDCALL_ESCALATION``         ``delete_room`` (default) or ``none``
``ENDCALL_RATE_LIMIT``         default for both limits below, ``N/PERIOD`` (``10/60``)
``ENDCALL_RATE_LIMIT_IDENTITY`` per token identity (room + identity); ``off`` disables
``ENDCALL_RATE_LIMIT_ADDRESS`` per client address; ``off`` disables
``ENDCALL_TOKEN_LEEWAY``       seconds of clock skew allowed on tokens (60)
``ENDCALL_LIVEKIT_TIMEOUT``    seconds for each LiveKit API call (2)
``ENDCALL_POLL_INTERVAL``      longest pause between ack polls, seconds (0.1)
``ENDCALL_RETRY_AFTER``        Retry-After seconds sent with 502 (2)
``ENDCALL_IDEMPOTENCY_TTL``    seconds an answer is kept for its request id (600)
``ENDCALL_OUTBOX``             the outbox: relay leftover reports, keep the room ledger
``ENDCALL_WEBHOOK_URL``        where ``session.missing`` events go (the reports' receiver)
``ENDCALL_RECONCILE_AFTER``    seconds after ``room_finished`` before a room without a
                               report gets ``session.missing`` (300)
``ENDCALL_IDLE_TIMEOUT``       seconds a client gets to send a request's head (from
                               connecting or from the previous answer) and, apart, its
                               body (else 408); a connection idle longer is closed (30)
=============================  ===========================================================

A rate is ``N/PERIOD`` where PERIOD is seconds or a unit: ``10/60``, ``10/minute``, ``5/s``,
``100/h``; ``off``, ``none`` or ``0`` disable the limit.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from endcall.reports.heartbeats import HEARTBEAT, TAKEOVER_QUIET
from endcall.reports.relay import secrets_from_env
from endcall.reports.webhook import SECRET_ENV, validate_secret, validate_url

__all__ = ["Escalation", "RateLimit", "Settings"]

Escalation = Literal["delete_room", "none"]
_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?|[a-z]+)\s*$")


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` requests per ``period`` seconds (a token bucket of ``count``)."""

    count: int
    period: float

    def __post_init__(self) -> None:
        if self.count < 1 or not math.isfinite(self.period) or self.period <= 0:
            raise ValueError("a rate limit needs count >= 1 and a positive period")

    @classmethod
    def parse(cls, text: str) -> RateLimit | None:
        """``"10/60"``, ``"10/minute"``, ``"5/s"``; ``"off"``/``"none"``/``"0"`` → None."""
        value = text.strip().lower()
        if value in ("off", "none", "0", "disabled", ""):
            return None
        match = _RATE_RE.match(value)
        if match is None:
            raise ValueError(f"invalid rate {text!r}: expected N/PERIOD such as 10/60 or 10/minute")
        count = int(match.group(1))
        if count == 0:
            return None
        unit = match.group(2)
        if unit[0].isdigit():
            period = float(unit)
        else:
            unit = unit[:-1] if unit.endswith("s") and unit[:-1] in _UNITS else unit
            if unit not in _UNITS:
                raise ValueError(f"invalid rate {text!r}: unknown unit {unit!r}")
            period = _UNITS[unit]
        return cls(count, period)

    def __str__(self) -> str:
        return f"{self.count}/{self.period:g}"


_DEFAULT_RATE = RateLimit(10, 60.0)


@dataclass(frozen=True)
class Settings:
    """Everything :func:`endcall.server.create_app` needs. Build with :meth:`from_env`."""

    livekit_url: str
    api_key: str
    api_secret: str
    allowed_origins: tuple[str, ...] = ()
    ack_timeout: float = 3.0
    escalation: Escalation = "delete_room"
    rate_limit_identity: RateLimit | None = field(default=_DEFAULT_RATE)
    rate_limit_address: RateLimit | None = field(default=_DEFAULT_RATE)
    token_leeway: float = 60.0
    livekit_timeout: float = 2.0
    poll_interval: float = 0.1
    retry_after: int = 2
    idempotency_ttl: float = 600.0
    idempotency_max_entries: int = 10_000
    relay_outbox: str | None = None
    """Outbox (SQLite path or ``postgresql://`` DSN) whose leftover reports this server
    delivers in the background (``ENDCALL_OUTBOX``); needs ``relay_secrets``."""
    relay_secrets: tuple[str, ...] = ()
    """Webhook signing secrets for the relay (``ENDCALL_WEBHOOK_SECRET``, then the secrets named
    in ``ENDCALL_WEBHOOK_SECRETS``)."""
    relay_poll: float = 30.0
    webhook_url: str | None = None
    """Where ``session.missing`` events are sent (``ENDCALL_WEBHOOK_URL``): the receiver of
    the reports. Without it the ledger is kept but no room is reconciled."""
    reconcile_after: float = 300.0
    """Seconds after ``room_finished`` before a room without a report is declared missing
    (``ENDCALL_RECONCILE_AFTER``)."""
    reconcile_sweep: float = 60.0
    """Seconds between two ListRooms sweeps for rooms LiveKit no longer lists though their
    ``room_finished`` never came (``ENDCALL_RECONCILE_SWEEP``)."""
    takeover_quiet: float = TAKEOVER_QUIET
    """When LiveKit says a room's agent left (``participant_left`` of an agent, or
    ``room_finished``), its crash draft may be delivered once the agent has not renewed it for
    this many seconds, instead of when its lease runs out (``ENDCALL_TAKEOVER_QUIET``; a live
    agent renews every 5 s)."""
    idle_timeout: float = 30.0
    """Seconds a client gets to send a whole request head, counted from when it connects or
    from the previous answer (else the connection is closed: ``endcall serve``'s edge), and,
    apart, to send a request's body (else 408) (``ENDCALL_IDLE_TIMEOUT``)."""

    def __post_init__(self) -> None:
        if not self.livekit_url:
            raise ValueError("LIVEKIT_URL is required")
        if not self.api_key or not self.api_secret:
            raise ValueError("LIVEKIT_API_KEY and LIVEKIT_API_SECRET are required")
        if self.escalation not in ("delete_room", "none"):
            raise ValueError("ENDCALL_ESCALATION must be delete_room or none")
        for name, value in (
            ("ENDCALL_ACK_TIMEOUT", self.ack_timeout),
            ("ENDCALL_LIVEKIT_TIMEOUT", self.livekit_timeout),
            ("ENDCALL_POLL_INTERVAL", self.poll_interval),
            ("ENDCALL_IDEMPOTENCY_TTL", self.idempotency_ttl),
            ("ENDCALL_IDLE_TIMEOUT", self.idle_timeout),
        ):
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        if not math.isfinite(self.token_leeway) or self.token_leeway < 0:
            raise ValueError("ENDCALL_TOKEN_LEEWAY must be >= 0")
        if self.retry_after < 1:
            raise ValueError("ENDCALL_RETRY_AFTER must be >= 1")
        if self.idempotency_max_entries < 1:
            raise ValueError("the idempotency cache needs at least one entry")
        if self.relay_outbox and not self.relay_secrets:
            raise ValueError(
                "ENDCALL_OUTBOX is set but ENDCALL_WEBHOOK_SECRET is not: the relay cannot sign"
            )
        for i, secret in enumerate(self.relay_secrets):
            try:
                validate_secret(secret)
            except ValueError as e:
                raise ValueError(f"{SECRET_ENV}: secret #{i + 1} is not usable: {e}") from None
        if not math.isfinite(self.relay_poll) or self.relay_poll <= 0:
            raise ValueError("ENDCALL_RELAY_POLL must be a positive number of seconds")
        if not math.isfinite(self.reconcile_after) or self.reconcile_after < 0:
            raise ValueError("ENDCALL_RECONCILE_AFTER must be a number of seconds >= 0")
        if not math.isfinite(self.takeover_quiet) or self.takeover_quiet < 2 * HEARTBEAT:
            raise ValueError(
                f"ENDCALL_TAKEOVER_QUIET must be at least {2 * HEARTBEAT:g} seconds (two of the"
                " agent's heartbeats): a live agent must never look silent"
            )
        if not math.isfinite(self.reconcile_sweep) or self.reconcile_sweep <= 0:
            raise ValueError("ENDCALL_RECONCILE_SWEEP must be a positive number of seconds")
        if self.webhook_url is not None:
            try:
                validate_url(self.webhook_url)
            except ValueError as e:
                raise ValueError(f"ENDCALL_WEBHOOK_URL: {e}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the environment (``os.environ`` by default); ``overrides`` win over it.

        Raises ``ValueError`` naming the variable when a value is missing or invalid.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "livekit_url": env.get("LIVEKIT_URL", ""),
            "api_key": env.get("LIVEKIT_API_KEY", ""),
            "api_secret": env.get("LIVEKIT_API_SECRET", ""),
        }
        if "ENDCALL_ALLOWED_ORIGINS" in env:
            values["allowed_origins"] = parse_origins(env["ENDCALL_ALLOWED_ORIGINS"])
        if env.get("ENDCALL_ESCALATION"):
            values["escalation"] = env["ENDCALL_ESCALATION"].strip().lower()
        floats = {
            "ENDCALL_ACK_TIMEOUT": "ack_timeout",
            "ENDCALL_TOKEN_LEEWAY": "token_leeway",
            "ENDCALL_LIVEKIT_TIMEOUT": "livekit_timeout",
            "ENDCALL_POLL_INTERVAL": "poll_interval",
            "ENDCALL_IDEMPOTENCY_TTL": "idempotency_ttl",
            "ENDCALL_RELAY_POLL": "relay_poll",
            "ENDCALL_RECONCILE_AFTER": "reconcile_after",
            "ENDCALL_RECONCILE_SWEEP": "reconcile_sweep",
            "ENDCALL_IDLE_TIMEOUT": "idle_timeout",
            "ENDCALL_TAKEOVER_QUIET": "takeover_quiet",
        }
        for var, name in floats.items():
            if env.get(var):
                values[name] = _float(var, env[var])
        if env.get("ENDCALL_OUTBOX"):
            values["relay_outbox"] = env["ENDCALL_OUTBOX"].strip()
            # its own secret and the named ones jobs pick (`webhook_secret_id`)
            values["relay_secrets"] = secrets_from_env(environ=env)
        if env.get("ENDCALL_WEBHOOK_URL"):
            values["webhook_url"] = env["ENDCALL_WEBHOOK_URL"].strip()
        if env.get("ENDCALL_RETRY_AFTER"):
            values["retry_after"] = int(_float("ENDCALL_RETRY_AFTER", env["ENDCALL_RETRY_AFTER"]))
        both = env.get("ENDCALL_RATE_LIMIT")
        for var, name in (
            ("ENDCALL_RATE_LIMIT_IDENTITY", "rate_limit_identity"),
            ("ENDCALL_RATE_LIMIT_ADDRESS", "rate_limit_address"),
        ):
            text = env.get(var, both)
            if text is not None:
                try:
                    values[name] = RateLimit.parse(text)
                except ValueError as exc:
                    raise ValueError(
                        f"{var if var in env else 'ENDCALL_RATE_LIMIT'}: {exc}"
                    ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def parse_origins(text: str) -> tuple[str, ...]:
    """``"https://a.example, https://b.example"`` → a tuple; trailing slashes dropped."""
    return tuple(o.rstrip("/") for o in re.split(r"[,\s]+", text.strip()) if o)


def _float(var: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{var} must be a number, not {text!r}") from None
    return value
