"""PostgreSQL outbox for fleets of workers sharing one database (extra ``endcall[postgres]``).

Same semantics as the SQLite outbox. Claims select due rows with
``FOR UPDATE SKIP LOCKED`` and lease them, so any number of relays on any hosts can work the
same table without sending a report twice at the same time; a crashed sender's rows come back
when its lease expires. Uses psycopg 3 (one connection, serialised by a lock).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from ..redact import redact
from .base import SCHEMA, Clock, SqlOutbox, Tx, to_pyformat

__all__ = ["PostgresOutbox"]


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
            with self._t() as tx:
                for stmt in SCHEMA.replace("{blob}", "BYTEA").split(";"):
                    if stmt.strip():
                        tx.run(stmt)
        except BaseException:
            self._conn.close()
            raise

    @contextlib.contextmanager
    def _tx(self, *, write: bool) -> Iterator[Tx]:
        with self._conn.transaction():
            yield _PgTx(self._conn)

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._conn.close()

    def __repr__(self) -> str:
        return "PostgresOutbox(...)"
