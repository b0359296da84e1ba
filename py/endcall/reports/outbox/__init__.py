"""Durable outbox of session reports: SQLite by default, PostgreSQL for fleets.

``open_outbox(target)`` picks the backend: a ``postgres://``/``postgresql://`` URL opens a
`PostgresOutbox`, anything else is a SQLite file path. See ``base.py`` for the row lifecycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from endcall.reports.outbox.base import (
    OUTBOX_ENV,
    STATUSES,
    Outbox,
    OutboxRecord,
    Status,
    StoreResult,
    default_outbox_path,
    draft_key,
    make_owner,
    session_of,
)
from endcall.reports.outbox.sqlite import SqliteOutbox

if TYPE_CHECKING:
    from endcall.reports.outbox.postgres import PostgresOutbox

__all__ = [
    "OUTBOX_ENV",
    "STATUSES",
    "Outbox",
    "OutboxRecord",
    "PostgresOutbox",
    "SqliteOutbox",
    "Status",
    "StoreResult",
    "default_outbox_path",
    "draft_key",
    "make_owner",
    "open_outbox",
    "session_of",
]


def __getattr__(name: str) -> Any:
    if name == "PostgresOutbox":  # lazy: psycopg is an optional extra
        from endcall.reports.outbox.postgres import PostgresOutbox

        return PostgresOutbox
    raise AttributeError(name)


def open_outbox(target: str | Path | None = None) -> Outbox:
    """Open the outbox at ``target`` (default: `default_outbox_path`)."""
    if target is None:
        target = default_outbox_path()
    s = str(target)
    if s.startswith(("postgres://", "postgresql://")):
        from endcall.reports.outbox.postgres import PostgresOutbox

        return PostgresOutbox(s)
    if s.startswith(("postgres:", "postgresql:")):
        # a URL that went through Path() ("postgresql:/host/db"): never a SQLite file by
        # that name in the working directory, which no other process would ever find
        raise ValueError(
            f"{s.split('@')[-1]!r} looks like a PostgreSQL URL with its '//' lost (passed"
            " through a path?): give the outbox as postgresql://user@host/db"
        )
    return SqliteOutbox(s)
