"""The outbox contract: one durable row per report to send, shared by SQLite and PostgreSQL.

Rows are keyed by the report's ``webhook-id``: a session's final report by its ``end_id``, its
crash draft by ``<end_id>.draft`` (`draft_key`; protocol.md §6). A row moves ``draft`` →
``pending`` ⇄ ``delivering`` → ``delivered`` | ``dead``:

- ``draft``: a crash checkpoint of a running session (a ``complete: false`` report), leased
  to the agent process writing it, which renews the lease with every checkpoint. It is only
  sent when that lease has expired and no final report of the session is stored. When an end
  is accepted its reason, initiator, request id and meta are written to the row (``ending``)
  at once; whoever sends the draft writes them into the body (`protocol.with_ending`).
- storing the final report deletes the session's draft in the same transaction unless a relay
  already took it over; a draft is never written once a final report exists, and a taken
  draft is not retried once it does (receivers keep the final one, protocol.md §6).
- ``pending``: committed, waiting for ``next_attempt_at``.
- ``delivering``: claimed by a sender holding the lease (``lease_owner``/``lease_expires_at``).
- ``delivered`` / ``dead``: final; dead rows stay until purged and can be replayed.

Ownership is a lease and nothing else: no guess from process ids or host names (a sidecar
shares the host name but not the PID namespace) and no comparison of one host's clock with
another's. Lease times are read from the database's clock — PostgreSQL's ``clock_timestamp()``
(the same for every host of a fleet); a SQLite file lives on one host, whose clock every
process sharing it reads. A sender's lease always covers its request timeout plus a margin.

The body is written once and never changes afterwards (except a draft being rewritten before it
is taken), so every attempt sends the same bytes. Each row also carries ``delivery``: what a
relay needs to send it as the agent would (retry schedule, jitter, request timeout and the key
ids of the signing secrets — never a secret).

This module is the contract (`Outbox`, `OutboxRecord`); `schema` holds the table and `sql` the
dialect-neutral queries; ``sqlite.py`` and ``postgres.py`` supply connections.
"""

from __future__ import annotations

import os
import secrets as _secrets
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import platformdirs

Status = Literal["draft", "pending", "delivering", "delivered", "dead"]
STATUSES: tuple[Status, ...] = ("draft", "pending", "delivering", "delivered", "dead")
StoreResult = Literal["stored", "exists"]
OUTBOX_ENV = "ENDCALL_OUTBOX"
TABLE = "endcall_outbox"
#: one row per delivery attempt: its outcome, HTTP status and error (`SqlOutbox.attempts`)
ATTEMPTS_TABLE = "endcall_outbox_attempts"
DRAFT_SUFFIX = ".draft"

Clock = Callable[[], float]
T = TypeVar("T")


def default_outbox_path() -> str | Path:
    """``$ENDCALL_OUTBOX`` if set — a ``postgresql://`` URL as the string it is (a `Path` would
    fold its ``//`` into ``/`` and make it a file name), a SQLite path as a `Path` — else
    ``<user data dir>/endcall/outbox.sqlite3``."""
    env = os.environ.get(OUTBOX_ENV)
    if env:
        return env if "://" in env else Path(env)
    return Path(platformdirs.user_data_dir("endcall", appauthor=False)) / "outbox.sqlite3"


def make_owner(token: str | None = None) -> str:
    """An owner id naming this host and process: ``"<hostname>:<pid>:<token>"``."""
    return f"{socket.gethostname()}:{os.getpid()}:{token or _secrets.token_hex(4)}"


def draft_key(end_id: str) -> str:
    """The row key (and ``webhook-id``) of a session's crash draft: ``<end_id>.draft``."""
    return end_id + DRAFT_SUFFIX


def session_of(key: str) -> str:
    """The session's ``end_id`` of a row key (a draft key or a final report's)."""
    return key[: -len(DRAFT_SUFFIX)] if key.endswith(DRAFT_SUFFIX) else key


@dataclass(frozen=True)
class Backlog:
    """What an outbox holds now: rows by status, and the oldest undelivered report."""

    counts: dict[str, int] = field(default_factory=dict)
    oldest_pending_age: float | None = None
    """Seconds since the oldest pending or delivering report was stored (None: none)."""


@dataclass(frozen=True)
class OutboxRecord:
    """One report in the outbox."""

    end_id: str
    status: Status
    is_draft: bool
    url: str
    headers: Mapping[str, str]
    body: bytes
    attempts: int
    next_attempt_at: float
    last_error: str | None
    last_status: int | None
    lease_owner: str | None
    lease_expires_at: float | None
    created_at: float
    updated_at: float
    delivered_at: float | None
    #: how to deliver it: ``schedule``, ``jitter``, ``timeout``, ``keys`` (`Webhook.delivery`)
    delivery: Mapping[str, Any] = field(default_factory=dict)
    #: a draft's accepted end (``ended_reason``, ``initiator``, ``request_id``, ``meta``...)
    ending: Mapping[str, Any] | None = None

    @property
    def session_end_id(self) -> str:
        """The session's ``end_id`` (``end_id`` is the row key: ``<end_id>.draft`` for a draft)."""
        return session_of(self.end_id)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly view without the body."""
        return {
            "end_id": self.end_id,
            "status": self.status,
            "draft": self.is_draft,
            "url": self.url,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "lease_owner": self.lease_owner,
            "lease_expires_at": self.lease_expires_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "delivered_at": self.delivered_at,
            "size": len(self.body),
            "delivery": dict(self.delivery),
            "ending": None if self.ending is None else dict(self.ending),
        }


@runtime_checkable
class Outbox(Protocol):
    """Durable store of reports. All methods are synchronous and thread-safe; async callers
    run them in a worker thread. Every write is durable when the method returns. ``lease`` is
    in seconds from the database's clock. ``end_id`` arguments name the session; drafts are
    keyed ``<end_id>.draft`` internally (`draft_key`)."""

    def save_draft(
        self,
        end_id: str,
        url: str,
        body: bytes,
        *,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None = None,
        delivery: Mapping[str, Any] | None = None,
        scope: str | None = None,
    ) -> bool:
        """Insert or refresh the session's crash draft and renew its lease; False (nothing
        written) if a final report is stored or a relay took the draft over. ``scope`` names
        what the draft belongs to (opaque here; the agent gives ``<room sid>/<its identity>``)
        for `release_scope`."""
        ...

    def renew_draft(self, end_id: str, owner: str, lease: float) -> bool:
        """Extend the lease on the session's crash draft (a heartbeat of its running owner);
        False when it is no longer ours or no longer a draft."""
        ...

    def release_scope(self, scope: str, quiet: float) -> float | None:
        """The drafts of ``scope`` lost their owner (LiveKit says the agent is gone): each may
        be taken over once its owner has been silent for ``quiet`` seconds; returns the
        earliest time one becomes claimable (database clock), None when none is held.
        Scopes nest with ``/``: releasing ``a`` releases ``a`` and ``a/…`` (a room and each of
        its agents), releasing ``a/b`` only that one."""
        ...

    def silent_scopes(self, quiet: float, limit: int = 50) -> list[str]:
        """The scopes of drafts still held under a lease whose owner has not renewed them for
        ``quiet`` seconds (dead or stalled): what to ask LiveKit about (`release_scope`)."""
        ...

    def mark_ending(
        self,
        end_id: str,
        ending: Mapping[str, Any],
        *,
        url: str,
        body: bytes,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None = None,
        delivery: Mapping[str, Any] | None = None,
        scope: str | None = None,
    ) -> bool:
        """Record an accepted end on the session's draft (creating it with ``body`` if there
        is none yet) and renew its lease; False if the draft can no longer change."""
        ...

    def discard_draft(self, end_id: str) -> bool:
        """Delete the session's draft unless a relay took it; True if it was deleted."""
        ...

    def store(
        self,
        end_id: str,
        url: str,
        body: bytes,
        *,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None = None,
        delivery: Mapping[str, Any] | None = None,
    ) -> StoreResult:
        """Commit the final report, leased to ``owner``, and drop the session's draft unless a
        relay already took it (then both exist; receivers keep the final one).

        ``"stored"``: committed now; ``"exists"``: a final report with this end_id was already
        stored (kept as it was)."""
        ...

    def store_many(
        self,
        items: Sequence[tuple[str, str, bytes]],
        *,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None = None,
        delivery: Mapping[str, Any] | None = None,
    ) -> list[StoreResult]:
        """`store` for several ``(end_id, url, body)`` in one transaction (group commit)."""
        ...

    def mark_delivered_many(self, items: Sequence[tuple[str, int]], owner: str) -> None:
        """`mark_delivered` for several ``(end_id, status_code)`` in one transaction."""
        ...

    def get(self, end_id: str) -> OutboxRecord | None:
        """The row with this key (a final report's end_id, or `draft_key` for a draft)."""
        ...

    def renew(self, end_id: str, owner: str, lease: float) -> OutboxRecord | None:
        """Take/extend the lease for an attempt (status ``delivering``) if free, ours or
        expired; returns the updated row, or None (someone else holds it, or not sendable)."""
        ...

    def claim(self, owner: str, *, limit: int, lease: float) -> list[OutboxRecord]:
        """Lease up to ``limit`` due rows (pending, stale delivering, abandoned drafts)."""
        ...

    def mark_delivered(self, end_id: str, owner: str, status_code: int) -> None: ...

    def mark_failed(
        self,
        end_id: str,
        owner: str,
        *,
        dead: bool,
        next_attempt_at: float,
        status_code: int | None,
        error: str,
        keep_lease: float | None = None,
    ) -> bool:
        """Record a failed attempt; False if another owner holds the lease (nothing written)."""
        ...

    def defer(self, end_id: str, owner: str, *, until: float, error: str) -> bool:
        """Give a leased row back without an attempt (e.g. this relay lacks its secret):
        pending again at ``until``, ``last_error`` set, attempts unchanged."""
        ...

    def release(self, end_id: str, owner: str) -> None:
        """Drop our lease so relays may take the row when it is due."""
        ...

    def records(
        self, status: Status | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[OutboxRecord]: ...

    def counts(self) -> dict[str, int]: ...

    def replay(self, end_id: str) -> bool:
        """Make a delivered or dead row pending again (due now, attempts reset)."""
        ...

    def replay_dead(self, since: float | None = None) -> list[str]:
        """`replay` every dead row (that went dead at or after ``since``); their keys."""
        ...

    def purge(self, delivered_before: float) -> int:
        """Delete delivered rows delivered before the given Unix time; returns the count."""
        ...

    def close(self) -> None: ...
