"""Schema creation and migrations under concurrency (issue 20): many processes opening a fresh
database at once all succeed; a database set up by a newer endcall is refused; a database from
before schema versions is migrated. On a real PostgreSQL and on SQLite."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pgcluster
import pytest

from endcall.reports.outbox import SqliteOutbox
from endcall.reports.outbox.base import TABLE
from endcall.reports.outbox.sql import SqlOutbox
from endcall.reports.outbox.versions import SCHEMA_TABLE, SchemaTooNew
from endcall.server.ledger import Ledger

OUTBOX_VERSION = 4  # the table, + delivery, + ending, + scope

Opener = Callable[[], SqlOutbox]


def _postgres() -> Opener:
    dsn = pgcluster.database_or_skip()

    def open_pg() -> SqlOutbox:
        from endcall.reports.outbox import PostgresOutbox

        return PostgresOutbox(dsn)

    return open_pg


def _sqlite(path: Path) -> Opener:
    return lambda: SqliteOutbox(path)


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    return _sqlite(tmp_path / "o.sqlite3") if request.param == "sqlite" else _postgres()


def _versions(ob: SqlOutbox) -> dict[str, int]:
    with ob.transaction(write=False) as tx:
        return {r[0]: int(r[1]) for r in tx.run(f"SELECT component, version FROM {SCHEMA_TABLE}")}


def test_twenty_concurrent_first_opens_all_succeed(opener: Opener) -> None:
    """What a fleet does at its first start: 20 workers open the fresh outbox (and the room
    ledger next to it) at the same moment. Without the schema lock, PostgreSQL's concurrent
    `CREATE TABLE IF NOT EXISTS` fails most of them (UniqueViolation)."""
    start = threading.Barrier(20)
    errors: list[BaseException] = []
    opened: list[SqlOutbox] = []
    lock = threading.Lock()

    def open_one() -> None:
        start.wait()
        try:
            ob = opener()
            Ledger(ob)
            with lock:
                opened.append(ob)
        except BaseException as e:
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert errors == [], f"{len(errors)} of 20 opens failed: {errors[:3]}"
        assert len(opened) == 20
        assert _versions(opened[0]) == {"outbox": OUTBOX_VERSION, "ledger": 1}
    finally:
        for ob in opened:
            ob.close()


def test_a_newer_schema_is_refused_clearly(opener: Opener) -> None:
    ob = opener()
    with ob.transaction() as tx:
        tx.run(f"UPDATE {SCHEMA_TABLE} SET version = 99 WHERE component = 'outbox'")
    ob.close()
    with pytest.raises(SchemaTooNew, match=r"schema version 99, newer than this endcall knows"):
        opener()


def test_reopening_changes_nothing(opener: Opener) -> None:
    first = opener()
    first.close()
    again = opener()
    try:
        assert _versions(again) == {"outbox": OUTBOX_VERSION}
    finally:
        again.close()


def test_a_database_from_before_schema_versions_is_migrated(tmp_path: Path) -> None:
    """The first release's table (no `delivery`, no `ending`, no version row) is brought to
    the current version and keeps its rows."""
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(
        f"""
        CREATE TABLE {TABLE} (
            end_id TEXT PRIMARY KEY, status TEXT NOT NULL, is_draft INTEGER NOT NULL DEFAULT 0,
            url TEXT NOT NULL, headers TEXT NOT NULL DEFAULT '{{}}', body BLOB NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at DOUBLE PRECISION NOT NULL,
            last_error TEXT, last_status INTEGER, lease_owner TEXT,
            lease_expires_at DOUBLE PRECISION, created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL, delivered_at DOUBLE PRECISION
        );
        INSERT INTO {TABLE} (end_id, status, url, body, next_attempt_at, created_at, updated_at)
        VALUES ('e_old', 'pending', 'https://r.example/end', x'7b7d', 0, 0, 0);
        """
    )
    conn.close()
    ob = SqliteOutbox(path)
    try:
        assert _versions(ob) == {"outbox": OUTBOX_VERSION}
        record = ob.get("e_old")
        assert record is not None and record.delivery == {} and record.ending is None
    finally:
        ob.close()


def test_postgres_schema_changes_take_the_advisory_lock() -> None:
    """The lock is what makes concurrent opens safe: while another session holds it, an open
    waits rather than racing the DDL."""
    import psycopg

    from endcall.reports.outbox.postgres import SCHEMA_LOCK_KEY, PostgresOutbox

    dsn = pgcluster.database_or_skip()
    with psycopg.connect(dsn, autocommit=True) as holder:
        holder.execute(f"SELECT pg_advisory_lock({SCHEMA_LOCK_KEY})")
        done = threading.Event()
        result: list[SqlOutbox] = []

        def open_it() -> None:
            result.append(PostgresOutbox(dsn))
            done.set()

        opener = threading.Thread(target=open_it)
        opener.start()
        assert not done.wait(1.0)  # it waits for the schema lock
        holder.execute(f"SELECT pg_advisory_unlock({SCHEMA_LOCK_KEY})")
        assert done.wait(60)
        opener.join()
    result[0].close()
