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

This module holds the dialect-neutral SQL; ``sqlite.py`` and ``postgres.py`` supply connections.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets as _secrets
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
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


def default_outbox_path() -> Path:
    """``$ENDCALL_OUTBOX`` if set, else ``<user data dir>/endcall/outbox.sqlite3``."""
    env = os.environ.get(OUTBOX_ENV)
    if env:
        return Path(env)
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
    ) -> bool:
        """Insert or refresh the session's crash draft and renew its lease; False (nothing
        written) if a final report is stored or a relay took the draft over."""
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


_COLS = (
    "end_id, status, is_draft, url, headers, body, attempts, next_attempt_at, last_error,"
    " last_status, lease_owner, lease_expires_at, created_at, updated_at, delivered_at,"
    " delivery, ending"
)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    end_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    is_draft INTEGER NOT NULL DEFAULT 0,
    url TEXT NOT NULL,
    headers TEXT NOT NULL DEFAULT '{{}}',
    body {{blob}} NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    last_error TEXT,
    last_status INTEGER,
    lease_owner TEXT,
    lease_expires_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    delivered_at DOUBLE PRECISION,
    delivery TEXT NOT NULL DEFAULT '{{}}',
    ending TEXT
);
CREATE INDEX IF NOT EXISTS {TABLE}_due ON {TABLE} (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS {ATTEMPTS_TABLE} (
    end_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS {ATTEMPTS_TABLE}_key ON {ATTEMPTS_TABLE} (end_id, attempt);
"""

#: columns added after the first release: ``ALTER TABLE ... ADD COLUMN`` on older tables
MIGRATIONS: tuple[tuple[str, str], ...] = (
    ("delivery", "TEXT NOT NULL DEFAULT '{}'"),
    ("ending", "TEXT"),
)

#: a draft row whose session has a final report: never sent (any more)
_NO_FINAL = (
    f" AND NOT (is_draft = 1 AND EXISTS (SELECT 1 FROM {TABLE} f"
    f" WHERE f.end_id = substr({TABLE}.end_id, 1, length({TABLE}.end_id) - {len(DRAFT_SUFFIX)})))"
)


def _row(r: Sequence[Any]) -> OutboxRecord:
    return OutboxRecord(
        end_id=r[0],
        status=r[1],
        is_draft=bool(r[2]),
        url=r[3],
        headers=json.loads(r[4] or "{}"),
        body=bytes(r[5]),
        attempts=int(r[6]),
        next_attempt_at=float(r[7]),
        last_error=r[8],
        last_status=r[9],
        lease_owner=r[10],
        lease_expires_at=None if r[11] is None else float(r[11]),
        created_at=float(r[12]),
        updated_at=float(r[13]),
        delivered_at=None if r[14] is None else float(r[14]),
        delivery=json.loads(r[15] or "{}"),
        ending=None if r[16] is None else json.loads(r[16]),
    )


def _json(value: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(value or {}), separators=(",", ":"), ensure_ascii=True)


class Tx(ABC):
    """One open transaction: run SQL written with ``:name`` parameters."""

    @abstractmethod
    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]: ...


class SqlOutbox(ABC):
    """Dialect-neutral implementation of `Outbox` over a ``Tx`` factory.

    ``clock`` stands in for the database's clock (tests); by default SQLite reads the host's
    clock and PostgreSQL the server's."""

    #: appended to the claim's SELECT (PostgreSQL: ``FOR UPDATE SKIP LOCKED``)
    claim_lock = ""

    def __init__(self, clock: Clock | None = None) -> None:
        self._injected_clock = clock
        self._clock: Clock = clock or time.time
        self._lock = threading.RLock()

    @abstractmethod
    def _tx(self, *, write: bool) -> contextlib.AbstractContextManager[Tx]: ...

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    @abstractmethod
    def _columns(self, tx: Tx) -> set[str]:
        """The columns the outbox table has now."""

    def _now(self, tx: Tx) -> float:
        """The database's clock: what every lease and due time is measured on."""
        return self._clock()

    def _migrate(self, tx: Tx) -> None:
        have = self._columns(tx)
        for name, decl in MIGRATIONS:
            if name not in have:
                tx.run(f"ALTER TABLE {TABLE} ADD COLUMN {name} {decl}")

    @contextlib.contextmanager
    def _t(self, write: bool = True) -> Iterator[Tx]:
        with self._lock, self._tx(write=write) as tx:
            yield tx

    def transaction(self, write: bool = True) -> contextlib.AbstractContextManager[Tx]:
        """A transaction on the outbox's database, for modules that keep their own tables
        next to it (the room ledger); ``:name`` parameters, as in this module."""
        return self._t(write)

    def db_now(self, tx: Tx) -> float:
        """The database's clock inside ``tx`` (PostgreSQL's, or the SQLite host's)."""
        return self._now(tx)

    def _get(self, tx: Tx, end_id: str) -> OutboxRecord | None:
        rows = tx.run(f"SELECT {_COLS} FROM {TABLE} WHERE end_id = :id", {"id": end_id})
        return _row(rows[0]) if rows else None

    def get(self, end_id: str) -> OutboxRecord | None:
        with self._t(write=False) as tx:
            return self._get(tx, end_id)

    def probe(self) -> None:
        """Write a row and remove it in one transaction: raises when the outbox cannot be
        written (read-only file or database, full disk, no permission)."""
        key = "endcall-probe-" + _secrets.token_hex(6)
        with self._t() as tx:
            now = self._now(tx)
            tx.run(
                f"INSERT INTO {TABLE} (end_id, status, url, body, next_attempt_at, created_at,"
                " updated_at) VALUES (:k, 'dead', '', :b, :now, :now, :now)",
                {"k": key, "b": b"", "now": now},
            )
            tx.run(f"DELETE FROM {TABLE} WHERE end_id = :k", {"k": key})

    def _upsert_draft(
        self, tx: Tx, end_id: str, params: dict[str, Any], body_sql: str, ending_sql: str
    ) -> bool:
        """Insert the draft row or update it while it is still a draft, never once the
        session's final report exists."""
        if self._get(tx, end_id) is not None:
            return False
        key = draft_key(end_id)
        rows = tx.run(
            f"INSERT INTO {TABLE} (end_id, status, is_draft, url, headers, body, attempts,"
            " next_attempt_at, lease_owner, lease_expires_at, created_at, updated_at, delivery,"
            " ending) VALUES (:key, 'draft', 1, :url, :h, :b, 0, :now, :o, :exp, :now, :now,"
            " :d, :ending)"
            f" ON CONFLICT (end_id) DO UPDATE SET url = :url, headers = :h, {body_sql}"
            f" lease_owner = :o, lease_expires_at = :exp, updated_at = :now, delivery = :d"
            f"{ending_sql} WHERE {TABLE}.status = 'draft' RETURNING end_id",
            {"key": key, **params},
        )
        return bool(rows)

    def _draft_params(
        self,
        tx: Tx,
        url: str,
        body: bytes,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None,
        delivery: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        now = self._now(tx)
        return {
            "url": url,
            "h": _json(headers),
            "b": body,
            "now": now,
            "o": owner,
            "exp": now + lease,
            "d": _json(delivery),
            "ending": None,
        }

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
    ) -> bool:
        with self._t() as tx:
            p = self._draft_params(tx, url, body, owner, lease, headers, delivery)
            return self._upsert_draft(tx, end_id, p, "body = :b,", "")

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
    ) -> bool:
        with self._t() as tx:
            p = self._draft_params(tx, url, body, owner, lease, headers, delivery)
            p["ending"] = _json(ending)
            return self._upsert_draft(tx, end_id, p, "", ", ending = :ending")

    def discard_draft(self, end_id: str) -> bool:
        with self._t() as tx:
            rows = tx.run(
                f"DELETE FROM {TABLE} WHERE end_id = :key AND status = 'draft' RETURNING end_id",
                {"key": draft_key(end_id)},
            )
        return bool(rows)

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
        return self.store_many(
            [(end_id, url, body)], owner=owner, lease=lease, headers=headers, delivery=delivery
        )[0]

    def store_many(
        self,
        items: Sequence[tuple[str, str, bytes]],
        *,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None = None,
        delivery: Mapping[str, Any] | None = None,
    ) -> list[StoreResult]:
        return self.write_many(
            items, (), owner=owner, lease=lease, headers=headers, delivery=delivery
        )

    def write_many(
        self,
        stores: Sequence[tuple[str, str, bytes]],
        delivered: Sequence[tuple[str, int]],
        *,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None = None,
        delivery: Mapping[str, Any] | None = None,
    ) -> list[StoreResult]:
        """`store_many` and `mark_delivered_many` in one transaction: one durable commit (one
        fsync with SQLite) for a sender's new reports and its finished deliveries together.
        Returns the store results.

        A batch costs a constant number of statements (one multi-row insert and one draft
        delete per chunk, one update per distinct status code), not a few per report: each
        statement is a round trip into the database and, from a worker thread, a fight for
        the GIL with the event loop."""
        h, d = _json(headers), _json(delivery)
        out: list[StoreResult] = []
        with self._t() as tx:
            now = self._now(tx)
            if stores:
                out = self._store_rows(tx, stores, h, d, owner, now, now + lease)
            by_code: dict[int, list[str]] = {}
            for end_id, code in delivered:
                by_code.setdefault(code, []).append(end_id)
            for code, ids in by_code.items():
                for part in _chunks(ids):
                    sql_in, params = _in_list(part)
                    rows = tx.run(
                        f"UPDATE {TABLE} SET status = 'delivered', attempts = attempts + 1,"
                        " last_status = :s, last_error = NULL, lease_owner = NULL,"
                        " lease_expires_at = NULL, delivered_at = :now, updated_at = :now"
                        f" WHERE end_id IN {sql_in} AND status <> 'delivered'"
                        " RETURNING end_id, attempts",
                        {"s": code, "now": now, **params},
                    )
                    self._log_attempts(tx, rows, now, "delivered", code, None)
        return out

    def _store_rows(
        self,
        tx: Tx,
        items: Sequence[tuple[str, str, bytes]],
        h: str,
        d: str,
        owner: str,
        now: float,
        exp: float,
    ) -> list[StoreResult]:
        """Insert final reports with one insert per chunk and delete their untaken drafts; an
        end_id already stored is left as it was (``"exists"``, also for a repeat within the
        batch)."""
        first: dict[str, int] = {}
        for i, (end_id, _, _) in enumerate(items):
            first.setdefault(end_id, i)
        stored: set[str] = set()
        order = list(first.values())
        for part in _chunks(order, 100):
            params: dict[str, Any] = {"h": h, "d": d, "now": now, "o": owner, "exp": exp}
            values = []
            drafts = {}
            for j, i in enumerate(part):
                end_id, url, body = items[i]
                params[f"i{j}"], params[f"u{j}"], params[f"b{j}"] = end_id, url, body
                drafts[f"k{j}"] = draft_key(end_id)
                values.append(
                    f"(:i{j}, 'pending', 0, :u{j}, :h, :b{j}, 0, :now, :o, :exp, :now, :now, :d)"
                )
            rows = tx.run(
                f"INSERT INTO {TABLE} (end_id, status, is_draft, url, headers, body, attempts,"
                " next_attempt_at, lease_owner, lease_expires_at, created_at, updated_at,"
                f" delivery) VALUES {', '.join(values)}"
                " ON CONFLICT (end_id) DO NOTHING RETURNING end_id",
                params,
            )
            stored.update(r[0] for r in rows)
            tx.run(
                f"DELETE FROM {TABLE} WHERE status = 'draft'"
                f" AND end_id IN ({', '.join(':' + k for k in drafts)})",
                drafts,
            )
        out: list[StoreResult] = []
        for i, (end_id, _, _) in enumerate(items):
            out.append("stored" if end_id in stored and first[end_id] == i else "exists")
        return out

    def renew(self, end_id: str, owner: str, lease: float) -> OutboxRecord | None:
        with self._t() as tx:
            now = self._now(tx)
            rows = tx.run(
                f"UPDATE {TABLE} SET status = 'delivering', lease_owner = :o,"
                " lease_expires_at = :exp, updated_at = :now"
                " WHERE end_id = :id AND status IN ('pending', 'delivering')"
                " AND (lease_owner IS NULL OR lease_owner = :o OR lease_expires_at <= :now)"
                f"{_NO_FINAL} RETURNING {_COLS}",
                {"id": end_id, "o": owner, "exp": now + lease, "now": now},
            )
        return _row(rows[0]) if rows else None

    def claim(self, owner: str, *, limit: int, lease: float) -> list[OutboxRecord]:
        with self._t() as tx:
            now = self._now(tx)
            rows = tx.run(
                f"SELECT end_id FROM {TABLE}"
                " WHERE status IN ('draft', 'pending', 'delivering')"
                " AND next_attempt_at <= :now"
                " AND (lease_owner IS NULL OR lease_expires_at <= :now)"
                f"{_NO_FINAL} ORDER BY next_attempt_at LIMIT :lim" + self.claim_lock,
                {"now": now, "lim": limit},
            )
            out: list[OutboxRecord] = []
            for (end_id,) in rows:
                upd = tx.run(
                    f"UPDATE {TABLE} SET status = 'delivering', lease_owner = :o,"
                    " lease_expires_at = :exp, updated_at = :now WHERE end_id = :id"
                    f" RETURNING {_COLS}",
                    {"o": owner, "exp": now + lease, "now": now, "id": end_id},
                )
                out.extend(_row(u) for u in upd)
        return out

    def mark_delivered(self, end_id: str, owner: str, status_code: int) -> None:
        self.mark_delivered_many([(end_id, status_code)], owner)

    def mark_delivered_many(self, items: Sequence[tuple[str, int]], owner: str) -> None:
        self.write_many((), items, owner=owner, lease=0.0)

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
        keep = keep_lease is not None
        with self._t() as tx:
            now = self._now(tx)
            rows = tx.run(
                f"UPDATE {TABLE} SET status = :st, attempts = attempts + 1,"
                " last_status = :s, last_error = :e, next_attempt_at = :nxt,"
                " lease_owner = :lo, lease_expires_at = :le, updated_at = :now"
                " WHERE end_id = :id AND status IN ('pending', 'delivering')"
                " AND (lease_owner IS NULL OR lease_owner = :o) RETURNING end_id, attempts",
                {
                    "id": end_id,
                    "st": "dead" if dead else "pending",
                    "s": status_code,
                    "e": error[:2000],
                    "nxt": next_attempt_at,
                    "lo": owner if keep and not dead else None,
                    "le": now + keep_lease if keep_lease is not None and not dead else None,
                    "now": now,
                    "o": owner,
                },
            )
            outcome = "dead" if dead else "failed"
            self._log_attempts(tx, rows, now, outcome, status_code, error[:2000])
        return bool(rows)

    def _log_attempts(
        self,
        tx: Tx,
        rows: Sequence[Sequence[Any]],
        now: float,
        outcome: str,
        code: int | None,
        error: str | None,
    ) -> None:
        """One attempts-table row per ``(end_id, attempts)`` in ``rows`` (one statement)."""
        if not rows:
            return
        params: dict[str, Any] = {"now": now, "o": outcome, "s": code, "e": error}
        values = []
        for j, (key, n) in enumerate(rows):
            params[f"k{j}"], params[f"n{j}"] = key, int(n)
            values.append(f"(:k{j}, :n{j}, :now, :o, :s, :e)")
        tx.run(
            f"INSERT INTO {ATTEMPTS_TABLE} (end_id, attempt, at, outcome, status_code, error)"
            f" VALUES {', '.join(values)}",
            params,
        )

    def attempts(self, end_id: str) -> list[dict[str, Any]]:
        """Every recorded delivery attempt of one row, oldest first: ``attempt``, ``at``,
        ``outcome`` (``delivered``/``failed``/``dead``), ``status_code``, ``error``."""
        with self._t(write=False) as tx:
            rows = tx.run(
                f"SELECT attempt, at, outcome, status_code, error FROM {ATTEMPTS_TABLE}"
                " WHERE end_id = :id ORDER BY at, attempt",
                {"id": end_id},
            )
        keys = ("attempt", "at", "outcome", "status_code", "error")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def defer(self, end_id: str, owner: str, *, until: float, error: str) -> bool:
        with self._t() as tx:
            now = self._now(tx)
            rows = tx.run(
                f"UPDATE {TABLE} SET status = 'pending', last_error = :e, next_attempt_at = :nxt,"
                " lease_owner = NULL, lease_expires_at = NULL, updated_at = :now"
                " WHERE end_id = :id AND status IN ('pending', 'delivering')"
                " AND (lease_owner IS NULL OR lease_owner = :o) RETURNING end_id",
                {"id": end_id, "o": owner, "e": error[:2000], "nxt": until, "now": now},
            )
        return bool(rows)

    def release(self, end_id: str, owner: str) -> None:
        with self._t() as tx:
            now = self._now(tx)
            tx.run(
                f"UPDATE {TABLE} SET lease_owner = NULL, lease_expires_at = NULL,"
                " status = CASE WHEN status = 'delivering' THEN 'pending' ELSE status END,"
                " updated_at = :now WHERE end_id = :id AND lease_owner = :o"
                " AND status <> 'draft'",
                {"id": end_id, "o": owner, "now": now},
            )

    def records(
        self, status: Status | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[OutboxRecord]:
        where = "" if status is None else " WHERE status = :st"
        with self._t(write=False) as tx:
            rows = tx.run(
                f"SELECT {_COLS} FROM {TABLE}{where}"
                " ORDER BY created_at DESC, end_id LIMIT :lim OFFSET :off",
                {"st": status, "lim": limit, "off": offset},
            )
        return [_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._t(write=False) as tx:
            rows = tx.run(f"SELECT status, COUNT(*) FROM {TABLE} GROUP BY status")
        out: dict[str, int] = dict.fromkeys(STATUSES, 0)
        out.update({r[0]: int(r[1]) for r in rows})
        return out

    def replay(self, end_id: str) -> bool:
        with self._t() as tx:
            now = self._now(tx)
            rows = tx.run(
                f"UPDATE {TABLE} SET status = 'pending', attempts = 0, next_attempt_at = :now,"
                " lease_owner = NULL, lease_expires_at = NULL, delivered_at = NULL,"
                " updated_at = :now WHERE end_id = :id AND status IN ('delivered', 'dead',"
                " 'pending') RETURNING end_id",
                {"id": end_id, "now": now},
            )
        return bool(rows)

    def make_due(self) -> int:
        """Make every pending report that waits for a later attempt due now (its attempt
        count unchanged; drafts and leased rows untouched). Returns how many."""
        with self._t() as tx:
            now = self._now(tx)
            rows = tx.run(
                f"UPDATE {TABLE} SET next_attempt_at = :now, updated_at = :now"
                " WHERE status = 'pending' AND next_attempt_at > :now"
                " AND (lease_owner IS NULL OR lease_expires_at <= :now) RETURNING end_id",
                {"now": now},
            )
        return len(rows)

    def replay_dead(self, since: float | None = None) -> list[str]:
        with self._t() as tx:
            now = self._now(tx)
            rows = tx.run(
                f"UPDATE {TABLE} SET status = 'pending', attempts = 0, next_attempt_at = :now,"
                " lease_owner = NULL, lease_expires_at = NULL, updated_at = :now"
                " WHERE status = 'dead' AND updated_at >= :since RETURNING end_id",
                {"now": now, "since": 0.0 if since is None else since},
            )
        return sorted(r[0] for r in rows)

    def purge(self, delivered_before: float) -> int:
        with self._t() as tx:
            rows = tx.run(
                f"DELETE FROM {TABLE} WHERE status = 'delivered' AND delivered_at < :t"
                " RETURNING end_id",
                {"t": delivered_before},
            )
            for part in _chunks([r[0] for r in rows]):
                sql_in, params = _in_list(part)
                tx.run(f"DELETE FROM {ATTEMPTS_TABLE} WHERE end_id IN {sql_in}", params)
        return len(rows)


def _chunks(xs: Sequence[T], size: int = 200) -> Iterator[Sequence[T]]:
    """Slices of at most ``size`` (keeps statements under the bound-parameter limits)."""
    for i in range(0, len(xs), size):
        yield xs[i : i + size]


def _in_list(ids: Sequence[str]) -> tuple[str, dict[str, str]]:
    """``"(:i0, :i1, ...)"`` and its parameters, for ``end_id IN ...``."""
    params = {f"i{j}": end_id for j, end_id in enumerate(ids)}
    return "(" + ", ".join(":" + k for k in params) + ")", params


_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def to_pyformat(sql: str) -> str:
    """``:name`` → ``%(name)s`` (for psycopg); literal ``%`` doubled."""
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))
