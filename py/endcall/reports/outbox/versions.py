"""Schema versions: tables created and migrated once, safely, however many processes start.

Each component that keeps tables in the outbox's database (the outbox itself, the room ledger)
has a row in ``endcall_schema``: its name and the version of its tables. `ensure_schema` runs
inside one write transaction that first takes the schema lock (`SqlCore.schema_transaction`:
a PostgreSQL advisory lock, or SQLite's write lock), so twenty processes opening a fresh
database at once create the tables once and migrate once, and the others find them ready. A
database whose version is *newer* than this code knows is refused (`SchemaTooNew`): rolling
upgrades go old → new, and old code never writes a table shaped by newer code.

A database from before versions existed (tables, no row) is treated as version 0: the
idempotent creation and every migration run, then the row is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from endcall.reports.outbox.schema import Tx

__all__ = ["SCHEMA_TABLE", "Component", "SchemaTooNew", "ensure_schema", "version_of"]

SCHEMA_TABLE = "endcall_schema"

#: any statement that creates or alters a table: run once, under the schema lock
Step = Callable[[Tx], None]


class SchemaTooNew(RuntimeError):
    """The database was set up by a newer endcall than this one."""


@dataclass(frozen=True)
class Component:
    """A set of tables: ``create`` makes the current shape (idempotently, ``IF NOT EXISTS``);
    ``migrations[i]`` brings version ``i + 1`` to ``i + 2`` (each idempotent too, so a database
    from before versions existed can run them all); the current version is their count + 1."""

    name: str
    create: Step
    migrations: Sequence[Step] = ()

    @property
    def version(self) -> int:
        return len(self.migrations) + 1


def _create_schema_table(tx: Tx) -> None:
    tx.run(
        f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} ("
        " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )


def version_of(tx: Tx, component: str) -> int | None:
    """The version recorded for ``component`` (None: never recorded)."""
    _create_schema_table(tx)
    rows = tx.run(f"SELECT version FROM {SCHEMA_TABLE} WHERE component = :c", {"c": component})
    return int(rows[0][0]) if rows else None


def ensure_schema(tx: Tx, component: Component) -> int:
    """Create or migrate ``component``'s tables to its version inside ``tx`` (which holds the
    schema lock); the version found before. Raises `SchemaTooNew`."""
    found = version_of(tx, component.name)
    if found is not None and found > component.version:
        raise SchemaTooNew(
            f"the {component.name} tables in this database are at schema version {found}, "
            f"newer than this endcall knows ({component.version}): upgrade endcall here too "
            "(a rolling upgrade goes old → new; old code never writes newer tables)"
        )
    if found == component.version:
        return found
    component.create(tx)
    for step in component.migrations[max(0, (found or 1) - 1) :]:
        step(tx)
    if found is None:
        tx.run(
            f"INSERT INTO {SCHEMA_TABLE} (component, version) VALUES (:c, :v)",
            {"c": component.name, "v": component.version},
        )
    else:
        tx.run(
            f"UPDATE {SCHEMA_TABLE} SET version = :v WHERE component = :c",
            {"c": component.name, "v": component.version},
        )
    return found or 0
