"""PostgreSQL outbox for fleets of workers sharing one database (extra ``endcall[postgres]``).

Same semantics as the SQLite outbox. Claims select due rows with
``FOR UPDATE SKIP LOCKED`` and lease them, so any number of relays on any hosts can work the
same table without sending a report twice at the same time; a crashed sender's rows come back
when its lease expires. Every lease and due time is measured on the server's clock
(``clock_timestamp()``), so hosts whose clocks disagree never take over each other's live rows.
Uses psycopg 3 (one connection, serialised by a lock).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from endcall.reports.outbox.base import TABLE, Clock
from endcall.reports.outbox.schema import Tx, to_pyformat
from endcall.reports.outbox.sql import SqlOutbox
from endcall.reports.redact import redact

__all__ = ["SCHEMA_LOCK_KEY", "PostgresOutbox"]

#: the advisory lock key of endcall's schema changes ("endcall" in ASCII)
SCHEMA_LOCK_KEY = 0x656E6463616C6C


class _PgTx(Tx):
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        cur = self._conn.execute(to_pyformat(sql), dict(params or {}))
        if cur.description is None:
            return []
        return list(cur.fetchall())


class PostgresOutbox(SqlOutbox):
    """Outbox in PostgreSQL table ``endcall_outbox`` (created if missing).

    ``dsn`` is a libpq connection string or URL (``postgresql://user@host:port/db``).
    Raises ``ImportError`` without psycopg and ``psycopg.Error`` when the database is down.
    """

    claim_lock = " FOR UPDATE SKIP LOCKED"
    # one schema change at a time across the fleet (released when its transaction ends)
    schema_lock_sql = f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})"
    blob_type = "BYTEA"

    def __init__(self, dsn: str, *, clock: Clock | None = None, connect_timeout: int = 10) -> None:
        super().__init__(clock)
        try:
            import psycopg
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(
                "PostgresOutbox needs psycopg 3: pip install 'endcall[postgres]'"
            ) from e
        self.dsn = dsn
        try:
            self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout)
        except psycopg.Error as e:  # a malformed DSN is quoted in the message: no password
            raise type(e)(redact(str(e))) from None
        try:
            self._open_schema()
        except BaseException:
            self._conn.close()
            raise

    def _columns(self, tx: Tx) -> set[str]:
        rows = tx.run(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = :t AND table_schema = current_schema()",
            {"t": TABLE},
        )
        return {r[0] for r in rows}

    def _now(self, tx: Tx) -> float:
        if self._injected_clock is not None:
            return self._injected_clock()
        return float(tx.run("SELECT extract(epoch FROM clock_timestamp())::float8")[0][0])

    @contextlib.contextmanager
    def _tx(self, *, write: bool) -> Iterator[Tx]:
        with self._conn.transaction():
            yield _PgTx(self._conn)

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._conn.close()

    def __repr__(self) -> str:
        return "PostgresOutbox(...)"
