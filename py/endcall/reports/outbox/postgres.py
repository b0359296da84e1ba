"""PostgreSQL outbox for fleets of workers sharing one database (extra ``endcall[postgres]``).

Same semantics as the SQLite outbox. Claims select due rows with
``FOR UPDATE SKIP LOCKED`` and lease them, so any number of relays on any hosts can work the
same table without sending a report twice at the same time; a crashed sender's rows come back
when its lease expires. Every lease and due time is measured on the server's clock
(``clock_timestamp()``), so hosts whose clocks disagree never take over each other's live rows.
Uses psycopg 3 (one connection, serialised by a lock). A connection the server dropped (a
restart, a failover) is replaced at the next transaction: a transaction that finds it dead
before running anything opens a new one; one that loses it midway raises, and the next one
reconnects.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from endcall.reports.outbox.base import TABLE, Clock
from endcall.reports.outbox.schema import Tx, to_pyformat
from endcall.reports.outbox.sql import SqlOutbox
from endcall.reports.redact import redact

logger = logging.getLogger("endcall")

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
            import psycopg  # noqa: F401 - the extra is installed
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(
                "PostgresOutbox needs psycopg 3: pip install 'endcall[postgres]'"
            ) from e
        self.dsn = dsn
        self._connect_timeout = connect_timeout
        self._closed = False
        self._conn = self._connect()
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

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.dsn, autocommit=True, connect_timeout=self._connect_timeout)
        except psycopg.Error as e:  # a malformed DSN is quoted in the message: no password
            raise type(e)(redact(str(e))) from None

    def _reconnect(self) -> Any:
        """A new connection in place of one a restart or failover dropped."""
        with contextlib.suppress(Exception):
            self._conn.close()
        self._conn = self._connect()
        logger.info("endcall: reconnected to the PostgreSQL outbox")
        return self._conn

    @contextlib.contextmanager
    def _tx(self, *, write: bool) -> Iterator[Tx]:
        import psycopg

        if self._closed:
            raise psycopg.OperationalError("the outbox is closed")
        conn = self._conn
        if conn.closed or conn.broken:
            conn = self._reconnect()
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(conn.transaction())
        except psycopg.OperationalError:
            # the server dropped the connection since its last use (a restart, a failover,
            # pg_terminate_backend): nothing ran in this transaction yet, so open a new one
            conn = self._reconnect()
            stack.enter_context(conn.transaction())
        with stack:
            yield _PgTx(conn)

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._closed = True
            self._conn.close()

    def __repr__(self) -> str:
        return "PostgresOutbox(...)"
