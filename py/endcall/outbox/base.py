"""The outbox contract: one durable row per session report, shared by SQLite and PostgreSQL.

A row moves ``draft`` → ``pending`` ⇄ ``delivering`` → ``delivered`` | ``dead``:

- ``draft``: a crash checkpoint of a running session (its body is already a ``complete: false``,
  ``agent-crashed`` report). It is only sent when its owner is gone: lease expired, or (same
  host) the owner's pid no longer alive. A final report with the same ``end_id`` replaces the
  draft in place, so a draft is never delivered alongside its final report.
- ``pending``: committed, waiting for ``next_attempt_at``.
- ``delivering``: claimed by a sender holding the lease (``lease_owner``/``lease_expires_at``).
- ``delivered`` / ``dead``: final; dead rows stay until purged and can be replayed.

The body is written once and never changes afterwards (except a draft being superseded), so
every attempt sends the same bytes. Owners are ``"<hostname>:<pid>:<token>"`` strings.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import platformdirs

Status = Literal["draft", "pending", "delivering", "delivered", "dead"]
STATUSES: tuple[Status, ...] = ("draft", "pending", "delivering", "delivered", "dead")
StoreResult = Literal["stored", "exists", "taken"]
OUTBOX_ENV = "ENDCALL_OUTBOX"
TABLE = "endcall_outbox"

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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] != b"Z"
    except (OSError, ValueError):
        return True


def owner_gone(owner: str) -> bool:
    """True when ``owner`` names a process on this host that is no longer alive."""
    parts = owner.split(":")
    if len(parts) < 3:
        return False
    host = ":".join(parts[:-2])
    try:
        pid = int(parts[-2])
    except ValueError:
        return False
    return host == socket.gethostname() and not _pid_alive(pid)


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
        }


@runtime_checkable
class Outbox(Protocol):
    """Durable store of reports. All methods are synchronous and thread-safe; async callers
    run them in a worker thread. Every write is durable when the method returns."""

    def save_draft(
        self,
        end_id: str,
        url: str,
        body: bytes,
        *,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None = None,
    ) -> bool:
        """Insert or refresh the crash draft and renew its lease; False if a final report exists."""
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
    ) -> StoreResult:
        """Commit the final report (replacing a draft of the same end_id), leased to ``owner``.

        ``"stored"``: committed now; ``"exists"``: a final report with this end_id was already
        stored (kept as it was); ``"taken"``: a relay already took over the crash draft, which
        stays (its body may have been sent already)."""
        ...

    def store_many(
        self,
        items: Sequence[tuple[str, str, bytes]],
        *,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None = None,
    ) -> list[StoreResult]:
        """`store` for several ``(end_id, url, body)`` in one transaction (group commit)."""
        ...

    def mark_delivered_many(self, items: Sequence[tuple[str, int]], owner: str) -> None:
        """`mark_delivered` for several ``(end_id, status_code)`` in one transaction."""
        ...

    def get(self, end_id: str) -> OutboxRecord | None: ...

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

    def purge(self, delivered_before: float) -> int:
        """Delete delivered rows delivered before the given Unix time; returns the count."""
        ...

    def close(self) -> None: ...


_COLS = (
    "end_id, status, is_draft, url, headers, body, attempts, next_attempt_at, last_error,"
    " last_status, lease_owner, lease_expires_at, created_at, updated_at, delivered_at"
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
    delivered_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS {TABLE}_due ON {TABLE} (status, next_attempt_at);
"""


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
    )


class Tx(ABC):
    """One open transaction: run SQL written with ``:name`` parameters."""

    @abstractmethod
    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]: ...


class SqlOutbox(ABC):
    """Dialect-neutral implementation of `Outbox` over a ``Tx`` factory."""

    #: appended to the claim's SELECT (PostgreSQL: ``FOR UPDATE SKIP LOCKED``)
    claim_lock = ""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or time.time
        self._lock = threading.RLock()
        self._host_prefix = socket.gethostname() + ":"

    @abstractmethod
    def _tx(self, *, write: bool) -> contextlib.AbstractContextManager[Tx]: ...

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    @contextlib.contextmanager
    def _t(self, write: bool = True) -> Iterator[Tx]:
        with self._lock, self._tx(write=write) as tx:
            yield tx

    def _get(self, tx: Tx, end_id: str) -> OutboxRecord | None:
        rows = tx.run(f"SELECT {_COLS} FROM {TABLE} WHERE end_id = :id", {"id": end_id})
        return _row(rows[0]) if rows else None

    def get(self, end_id: str) -> OutboxRecord | None:
        with self._t(write=False) as tx:
            return self._get(tx, end_id)

    def save_draft(
        self,
        end_id: str,
        url: str,
        body: bytes,
        *,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None = None,
    ) -> bool:
        now = self._clock()
        p = {
            "id": end_id,
            "url": url,
            "h": json.dumps(dict(headers or {})),
            "b": body,
            "now": now,
            "o": owner,
            "exp": now + lease,
        }
        with self._t() as tx:
            tx.run(
                f"INSERT INTO {TABLE} (end_id, status, is_draft, url, headers, body, attempts,"
                " next_attempt_at, lease_owner, lease_expires_at, created_at, updated_at)"
                " VALUES (:id, 'draft', 1, :url, :h, :b, 0, :now, :o, :exp, :now, :now)"
                " ON CONFLICT (end_id) DO UPDATE SET url = :url, headers = :h, body = :b,"
                " lease_owner = :o, lease_expires_at = :exp, updated_at = :now"
                f" WHERE {TABLE}.status = 'draft'",
                p,
            )
            rec = self._get(tx, end_id)
        return rec is not None and rec.status == "draft"

    def store(
        self,
        end_id: str,
        url: str,
        body: bytes,
        *,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None = None,
    ) -> StoreResult:
        return self.store_many([(end_id, url, body)], owner=owner, lease=lease, headers=headers)[0]

    def store_many(
        self,
        items: Sequence[tuple[str, str, bytes]],
        *,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None = None,
    ) -> list[StoreResult]:
        return self.write_many(items, (), owner=owner, lease=lease, headers=headers)

    def write_many(
        self,
        stores: Sequence[tuple[str, str, bytes]],
        delivered: Sequence[tuple[str, int]],
        *,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None = None,
    ) -> list[StoreResult]:
        """`store_many` and `mark_delivered_many` in one transaction: one durable commit (one
        fsync with SQLite) for a sender's new reports and its finished deliveries together.
        Returns the store results.

        A batch costs a constant number of statements (one multi-row upsert, one update per
        distinct status code), not a few per report: each statement is a round trip into the
        database and, from a worker thread, a fight for the GIL with the event loop."""
        now = self._clock()
        h = json.dumps(dict(headers or {}))
        out: list[StoreResult] = []
        with self._t() as tx:
            if stores:
                out = self._store_rows(tx, stores, h, owner, now, now + lease)
            by_code: dict[int, list[str]] = {}
            for end_id, code in delivered:
                by_code.setdefault(code, []).append(end_id)
            for code, ids in by_code.items():
                for part in _chunks(ids):
                    sql_in, params = _in_list(part)
                    tx.run(
                        f"UPDATE {TABLE} SET status = 'delivered', attempts = attempts + 1,"
                        " last_status = :s, last_error = NULL, lease_owner = NULL,"
                        " lease_expires_at = NULL, delivered_at = :now, updated_at = :now"
                        f" WHERE end_id IN {sql_in} AND status <> 'delivered'",
                        {"s": code, "now": now, **params},
                    )
        return out

    def _store_rows(
        self,
        tx: Tx,
        items: Sequence[tuple[str, str, bytes]],
        h: str,
        owner: str,
        now: float,
        exp: float,
    ) -> list[StoreResult]:
        """Insert final reports (replacing drafts) with one upsert per chunk; an end_id already
        final is left as it was: ``"taken"`` if it was a draft a relay took, else ``"exists"``
        (also for a repeat of an end_id within the batch)."""
        first: dict[str, int] = {}
        for i, (end_id, _, _) in enumerate(items):
            first.setdefault(end_id, i)
        stored: set[str] = set()
        order = list(first.values())
        for part in _chunks(order, 100):
            params: dict[str, Any] = {"h": h, "now": now, "o": owner, "exp": exp}
            values = []
            for j, i in enumerate(part):
                end_id, url, body = items[i]
                params[f"i{j}"], params[f"u{j}"], params[f"b{j}"] = end_id, url, body
                values.append(
                    f"(:i{j}, 'pending', 0, :u{j}, :h, :b{j}, 0, :now, :o, :exp, :now, :now)"
                )
            rows = tx.run(
                f"INSERT INTO {TABLE} (end_id, status, is_draft, url, headers, body, attempts,"
                " next_attempt_at, lease_owner, lease_expires_at, created_at, updated_at)"
                f" VALUES {', '.join(values)}"
                " ON CONFLICT (end_id) DO UPDATE SET status = 'pending', is_draft = 0,"
                " url = excluded.url, headers = excluded.headers, body = excluded.body,"
                " attempts = 0, next_attempt_at = excluded.next_attempt_at,"
                " lease_owner = excluded.lease_owner,"
                " lease_expires_at = excluded.lease_expires_at, updated_at = excluded.updated_at"
                f" WHERE {TABLE}.status = 'draft' RETURNING end_id",
                params,
            )
            stored.update(r[0] for r in rows)
        kept = [e for e in first if e not in stored]
        was_draft: dict[str, bool] = {}
        for ids in _chunks(kept):  # rare: final reports that were already there
            sql_in, params = _in_list(ids)
            rows = tx.run(f"SELECT end_id, is_draft FROM {TABLE} WHERE end_id IN {sql_in}", params)
            was_draft.update((r[0], bool(r[1])) for r in rows)
        out: list[StoreResult] = []
        for i, (end_id, _, _) in enumerate(items):
            if end_id in stored and first[end_id] == i:
                out.append("stored")
            elif end_id in stored:
                out.append("exists")
            else:
                out.append("taken" if was_draft.get(end_id) else "exists")
        return out

    def renew(self, end_id: str, owner: str, lease: float) -> OutboxRecord | None:
        now = self._clock()
        with self._t() as tx:
            rows = tx.run(
                f"UPDATE {TABLE} SET status = 'delivering', lease_owner = :o,"
                " lease_expires_at = :exp, updated_at = :now"
                " WHERE end_id = :id AND status IN ('pending', 'delivering')"
                " AND (lease_owner IS NULL OR lease_owner = :o OR lease_expires_at <= :now)"
                f" RETURNING {_COLS}",
                {"id": end_id, "o": owner, "exp": now + lease, "now": now},
            )
        return _row(rows[0]) if rows else None

    def _dead_owners(self, tx: Tx, now: float) -> list[str]:
        rows = tx.run(
            f"SELECT DISTINCT lease_owner FROM {TABLE}"
            " WHERE status IN ('draft', 'pending', 'delivering')"
            " AND substr(lease_owner, 1, :n) = :host"
            " AND lease_expires_at > :now",
            {"host": self._host_prefix, "n": len(self._host_prefix), "now": now},
        )
        return [r[0] for r in rows if r[0] and owner_gone(r[0])]

    def claim(self, owner: str, *, limit: int, lease: float) -> list[OutboxRecord]:
        now = self._clock()
        with self._t() as tx:
            dead = self._dead_owners(tx, now)
            params: dict[str, Any] = {"now": now, "lim": limit}
            dead_sql = ""
            if dead:
                names = []
                for i, d in enumerate(dead[:50]):
                    params[f"d{i}"] = d
                    names.append(f":d{i}")
                dead_sql = f" OR lease_owner IN ({', '.join(names)})"
            rows = tx.run(
                f"SELECT end_id FROM {TABLE}"
                " WHERE status IN ('draft', 'pending', 'delivering')"
                " AND next_attempt_at <= :now"
                f" AND (lease_owner IS NULL OR lease_expires_at <= :now{dead_sql})"
                " ORDER BY next_attempt_at LIMIT :lim" + self.claim_lock,
                params,
            )
            ids = [r[0] for r in rows]
            out: list[OutboxRecord] = []
            for end_id in ids:
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
        now = self._clock()
        keep = keep_lease is not None
        with self._t() as tx:
            rows = tx.run(
                f"UPDATE {TABLE} SET status = :st, attempts = attempts + 1,"
                " last_status = :s, last_error = :e, next_attempt_at = :nxt,"
                " lease_owner = :lo, lease_expires_at = :le, updated_at = :now"
                " WHERE end_id = :id AND status IN ('pending', 'delivering')"
                " AND (lease_owner IS NULL OR lease_owner = :o) RETURNING end_id",
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
        return bool(rows)

    def release(self, end_id: str, owner: str) -> None:
        now = self._clock()
        with self._t() as tx:
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
        now = self._clock()
        with self._t() as tx:
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
        now = self._clock()
        with self._t() as tx:
            rows = tx.run(
                f"UPDATE {TABLE} SET next_attempt_at = :now, updated_at = :now"
                " WHERE status = 'pending' AND next_attempt_at > :now"
                " AND (lease_owner IS NULL OR lease_expires_at <= :now) RETURNING end_id",
                {"now": now},
            )
        return len(rows)

    def purge(self, delivered_before: float) -> int:
        with self._t() as tx:
            rows = tx.run(
                f"DELETE FROM {TABLE} WHERE status = 'delivered' AND delivered_at < :t"
                " RETURNING end_id",
                {"t": delivered_before},
            )
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
