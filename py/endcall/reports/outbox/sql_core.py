"""`SqlCore`: transactions, the database's clock, one row and the attempt log: what the
outbox's queries share."""

from __future__ import annotations

import contextlib
import secrets as _secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

from endcall.reports.outbox.base import ATTEMPTS_TABLE, TABLE, Clock, OutboxRecord
from endcall.reports.outbox.schema import (
    COLUMNS,
    MIGRATED_INDEXES,
    MIGRATIONS,
    SCHEMA,
    Tx,
    row_record,
)
from endcall.reports.outbox.versions import Component, Step, ensure_schema


class SqlCore(ABC):
    """What every outbox query stands on: a ``Tx`` factory (the dialect supplies it), the
    database's clock and reading one row.

    ``clock`` stands in for the database's clock (tests); by default SQLite reads the host's
    clock and PostgreSQL the server's."""

    #: appended to the claim's SELECT (PostgreSQL: ``FOR UPDATE SKIP LOCKED``)
    claim_lock = ""
    #: run first in a schema transaction (PostgreSQL: an advisory lock; SQLite's write
    #: transaction is the lock already)
    schema_lock_sql = ""
    #: the column type of report bodies
    blob_type = "BLOB"

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

    @contextlib.contextmanager
    def schema_transaction(self) -> Iterator[Tx]:
        """A write transaction holding the schema lock: where tables are created and migrated
        (`endcall.reports.outbox.versions`), one process at a time."""
        with self._t() as tx:
            if self.schema_lock_sql:
                tx.run(self.schema_lock_sql)
            yield tx

    def _open_schema(self) -> None:
        """Create or migrate the outbox's tables (once, however many processes open it)."""

        def create(tx: Tx) -> None:
            for stmt in SCHEMA.replace("{blob}", self.blob_type).split(";"):
                if stmt.strip():
                    tx.run(stmt)

        def add_column(name: str, decl: str) -> Step:
            def step(tx: Tx) -> None:
                if name not in self._columns(tx):
                    tx.run(f"ALTER TABLE {TABLE} ADD COLUMN {name} {decl}")
                if name in MIGRATED_INDEXES:
                    tx.run(MIGRATED_INDEXES[name])

            return step

        outbox = Component("outbox", create, [add_column(n, d) for n, d in MIGRATIONS])
        with self.schema_transaction() as tx:
            ensure_schema(tx, outbox)

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
        rows = tx.run(f"SELECT {COLUMNS} FROM {TABLE} WHERE end_id = :id", {"id": end_id})
        return row_record(rows[0]) if rows else None

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
