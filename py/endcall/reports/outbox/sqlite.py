"""SQLite outbox: one file, durable commits, safe across processes on one host.

WAL journal with ``synchronous=FULL`` (a commit survives power loss and OS crashes; NORMAL
would not), ``busy_timeout`` so several processes (agent jobs, the CLI relay, the fallback
server) can share the file, and ``BEGIN IMMEDIATE`` for every write so claims never race.

A SQLite outbox belongs to **one host**: every process using it reads the same (host) clock for
leases, and SQLite's locking is not safe over network filesystems. Several hosts (or pods)
share a PostgreSQL outbox instead.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from endcall.reports.outbox.base import TABLE, Clock
from endcall.reports.outbox.schema import Tx
from endcall.reports.outbox.sql import SqlOutbox

__all__ = ["SqliteOutbox"]


class _SqliteTx(Tx):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, dict(params or {})).fetchall()


class SqliteOutbox(SqlOutbox):
    """Outbox in a SQLite file (created with its parent directory if missing).

    Raises ``sqlite3.Error``/``OSError`` when the file cannot be opened or written.
    """

    def __init__(
        self, path: str | Path, *, clock: Clock | None = None, busy_timeout: float = 30.0
    ) -> None:
        super().__init__(clock)
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout
        )
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._wal(busy_timeout)
            self._conn.execute("PRAGMA synchronous = FULL")
            self._open_schema()
        except BaseException:
            self._conn.close()
            raise

    def _wal(self, busy_timeout: float) -> None:
        """Switch to WAL. Switching needs an exclusive lock for which SQLite does not always
        wait (a fleet's first start: many processes open one fresh file at once), so a busy
        answer is retried for up to ``busy_timeout`` seconds."""
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as e:
                busy = "locked" in str(e) or "busy" in str(e)
                if not busy or time.monotonic() >= deadline:
                    raise
            time.sleep(random.uniform(0.005, 0.05))

    def _columns(self, tx: Tx) -> set[str]:
        return {r[1] for r in tx.run(f"PRAGMA table_info({TABLE})")}

    @contextlib.contextmanager
    def _tx(self, *, write: bool) -> Iterator[Tx]:
        self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield _SqliteTx(self._conn)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._conn.close()

    def __repr__(self) -> str:
        return f"SqliteOutbox({str(self.path)!r})"
