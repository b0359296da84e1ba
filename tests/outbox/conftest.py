"""Fixtures for outbox tests: both backends (PostgreSQL skipped, with the reason, if absent)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pgcluster

from endcall.reports.outbox import SqliteOutbox
from endcall.reports.outbox.sql import SqlOutbox


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgres"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[SqlOutbox]:
    ob: SqlOutbox
    if request.param == "sqlite":
        ob = SqliteOutbox(tmp_path / "o.sqlite3", clock=clock)
    else:
        dsn = pgcluster.database_or_skip()
        from endcall.reports.outbox import PostgresOutbox

        ob = PostgresOutbox(dsn, clock=clock)
    yield ob
    ob.close()
