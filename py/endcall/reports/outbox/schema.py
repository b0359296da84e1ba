"""The outbox's tables, their columns and migrations, and the SQL helpers every query uses.

Queries are written once, with ``:name`` parameters (`Tx.run`); `to_pyformat` turns them into
psycopg's style.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from endcall.reports.outbox.base import ATTEMPTS_TABLE, DRAFT_SUFFIX, TABLE, OutboxRecord, T

COLUMNS = (
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
    ending TEXT,
    scope TEXT
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
    ("scope", "TEXT"),  # what a crash draft belongs to, opaque here (the agent: its room sid)
)
#: indexes of columns added by `MIGRATIONS` (created by their step, on fresh tables too: a
#: pre-version table gets ``create`` — which must not name a newer column — then every step)
MIGRATED_INDEXES = {"scope": f"CREATE INDEX IF NOT EXISTS {TABLE}_scope ON {TABLE} (scope)"}

#: a draft row whose session has a final report: never sent (any more)
NO_FINAL = (
    f" AND NOT (is_draft = 1 AND EXISTS (SELECT 1 FROM {TABLE} f"
    f" WHERE f.end_id = substr({TABLE}.end_id, 1, length({TABLE}.end_id) - {len(DRAFT_SUFFIX)})))"
)


def row_record(r: Sequence[Any]) -> OutboxRecord:
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


def json_text(value: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(value or {}), separators=(",", ":"), ensure_ascii=True)


class Tx(ABC):
    """One open transaction: run SQL written with ``:name`` parameters."""

    @abstractmethod
    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]: ...


def chunks(xs: Sequence[T], size: int = 200) -> Iterator[Sequence[T]]:
    """Slices of at most ``size`` (keeps statements under the bound-parameter limits)."""
    for i in range(0, len(xs), size):
        yield xs[i : i + size]


def in_list(ids: Sequence[str]) -> tuple[str, dict[str, str]]:
    """``"(:i0, :i1, ...)"`` and its parameters, for ``end_id IN ...``."""
    params = {f"i{j}": end_id for j, end_id in enumerate(ids)}
    return "(" + ", ".join(":" + k for k in params) + ")", params


_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def to_pyformat(sql: str) -> str:
    """``:name`` → ``%(name)s`` (for psycopg); literal ``%`` doubled."""
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))
