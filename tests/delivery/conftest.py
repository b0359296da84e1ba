"""Fixtures for delivery tests: secrets, a real receiver, an outbox file, a PostgreSQL DSN."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "outbox"))

import pgcluster
from support import Receiver, new_secret


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def receiver(secret: str) -> Iterator[Receiver]:
    r = Receiver([secret]).start()
    yield r
    r.stop()


@pytest.fixture
def outbox_path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite3"


@pytest.fixture
def pg_dsn() -> str:
    return pgcluster.database_or_skip()
