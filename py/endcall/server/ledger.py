"""The room ledger: what LiveKit's own webhooks said about each room, next to the outbox.

``endcall serve`` records every verified LiveKit webhook about a room here — ``room_started``,
``participant_joined`` / ``participant_left`` (with the participant's kind: did an agent
join? did the customer?) and ``room_finished`` — in two tables of the outbox's database
(SQLite or PostgreSQL, the same ``ENDCALL_OUTBOX``): ``endcall_room_events`` (one row per
event, keyed by LiveKit's event id, plus the hash of the token it came with so a replayed
request is refused) and ``endcall_rooms`` (one row per room sid with its start, finish and
the reconciler's verdict: ``report`` or ``missing``).

The outbox knows nothing of rooms; this module only borrows its database connection
(`SqlOutbox.transaction`). Reconciling the ledger with the outbox is `endcall.server.reconcile`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from endcall.reports.outbox.schema import Tx
from endcall.reports.outbox.sql import SqlOutbox
from endcall.reports.outbox.versions import Component, ensure_schema

__all__ = [
    "EVENTS",
    "EVENTS_TABLE",
    "ROOMS_TABLE",
    "Ledger",
    "LedgerEvent",
    "Room",
    "Verdict",
]

ROOMS_TABLE = "endcall_rooms"
EVENTS_TABLE = "endcall_room_events"
#: the LiveKit webhook events the ledger keeps (the others are acknowledged and ignored)
EVENTS = ("room_started", "participant_joined", "participant_left", "room_finished")
Verdict = Literal["report", "missing"]

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {ROOMS_TABLE} (
    room_sid TEXT PRIMARY KEY,
    room_name TEXT NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    verdict TEXT,
    verdict_at DOUBLE PRECISION,
    first_seen DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS {ROOMS_TABLE}_due ON {ROOMS_TABLE} (verdict, finished_at);
CREATE INDEX IF NOT EXISTS {ROOMS_TABLE}_name ON {ROOMS_TABLE} (room_name);
CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (
    event_id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    room_sid TEXT NOT NULL,
    room_name TEXT NOT NULL,
    identity TEXT,
    participant_sid TEXT,
    kind TEXT,
    at DOUBLE PRECISION NOT NULL,
    received_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS {EVENTS_TABLE}_room ON {EVENTS_TABLE} (room_sid, at);
"""


def _create(tx: Tx) -> None:
    for stmt in _SCHEMA.split(";"):
        if stmt.strip():
            tx.run(stmt)


#: the ledger's tables, versioned next to the outbox's (`endcall.reports.outbox.versions`)
LEDGER_SCHEMA = Component("ledger", _create)


_EVENT_COLS = (
    "event_id, event, room_sid, room_name, identity, participant_sid, kind, at, received_at"
)
_ROOM_COLS = "room_sid, room_name, started_at, finished_at, verdict, verdict_at, first_seen"


@dataclass(frozen=True)
class LedgerEvent:
    """One LiveKit webhook event about a room (``identity``/``kind`` for participant events;
    ``kind`` is LiveKit's participant kind in lower case: ``standard``, ``agent``, ``sip``…)."""

    event_id: str
    event: str
    room_sid: str
    room_name: str
    at: float
    identity: str | None = None
    participant_sid: str | None = None
    kind: str | None = None
    received_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event": self.event,
            "room_sid": self.room_sid,
            "room_name": self.room_name,
            "identity": self.identity,
            "participant_sid": self.participant_sid,
            "kind": self.kind,
            "at": self.at,
            "received_at": self.received_at,
        }


@dataclass(frozen=True)
class Room:
    """A room as the ledger knows it."""

    room_sid: str
    room_name: str
    started_at: float | None
    finished_at: float | None
    verdict: Verdict | None
    verdict_at: float | None
    first_seen: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "room_sid": self.room_sid,
            "room_name": self.room_name,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "verdict": self.verdict,
            "verdict_at": self.verdict_at,
            "first_seen": self.first_seen,
        }


def _event(r: Sequence[Any]) -> LedgerEvent:
    return LedgerEvent(
        event_id=r[0],
        event=r[1],
        room_sid=r[2],
        room_name=r[3],
        identity=r[4],
        participant_sid=r[5],
        kind=r[6],
        at=float(r[7]),
        received_at=float(r[8]),
    )


def _room(r: Sequence[Any]) -> Room:
    return Room(
        room_sid=r[0],
        room_name=r[1],
        started_at=None if r[2] is None else float(r[2]),
        finished_at=None if r[3] is None else float(r[3]),
        verdict=r[4],
        verdict_at=None if r[5] is None else float(r[5]),
        first_seen=float(r[6]),
    )


class Ledger:
    """The room ledger in ``outbox``'s database (tables created if missing)."""

    def __init__(self, outbox: SqlOutbox) -> None:
        self.outbox = outbox
        with outbox.schema_transaction() as tx:
            ensure_schema(tx, LEDGER_SCHEMA)

    def seen_token(self, token_hash: str) -> bool:
        """True when a request with this token was already recorded (a replay)."""
        with self.outbox.transaction(write=False) as tx:
            rows = tx.run(f"SELECT 1 FROM {EVENTS_TABLE} WHERE token_hash = :h", {"h": token_hash})
        return bool(rows)

    def record(self, event: LedgerEvent, token_hash: str) -> bool:
        """Store ``event`` and update its room; False (nothing written) when an event with
        this id was recorded before (LiveKit retried it)."""
        with self.outbox.transaction() as tx:
            now = self.outbox.db_now(tx)
            rows = tx.run(
                f"INSERT INTO {EVENTS_TABLE} ({_EVENT_COLS}, token_hash) VALUES (:id, :ev,"
                " :sid, :name, :who, :psid, :kind, :at, :now, :h)"
                " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                {
                    "id": event.event_id,
                    "ev": event.event,
                    "sid": event.room_sid,
                    "name": event.room_name,
                    "who": event.identity,
                    "psid": event.participant_sid,
                    "kind": event.kind,
                    "at": event.at,
                    "now": now,
                    "h": token_hash,
                },
            )
            if not rows:
                return False
            started = event.at if event.event == "room_started" else None
            finished = event.at if event.event == "room_finished" else None
            tx.run(
                f"INSERT INTO {ROOMS_TABLE} (room_sid, room_name, started_at, finished_at,"
                " first_seen, updated_at) VALUES (:sid, :name, :st, :fin, :now, :now)"
                " ON CONFLICT (room_sid) DO UPDATE SET"
                f" started_at = COALESCE({ROOMS_TABLE}.started_at, excluded.started_at),"
                f" finished_at = COALESCE(excluded.finished_at, {ROOMS_TABLE}.finished_at),"
                " updated_at = excluded.updated_at",
                {
                    "sid": event.room_sid,
                    "name": event.room_name,
                    "st": started,
                    "fin": finished,
                    "now": now,
                },
            )
        return True

    def _select_rooms(self, where_and_order: str, params: dict[str, Any]) -> list[Room]:
        with self.outbox.transaction(write=False) as tx:
            rows = tx.run(f"SELECT {_ROOM_COLS} FROM {ROOMS_TABLE} WHERE {where_and_order}", params)
        return [_room(r) for r in rows]

    def due(self, finished_before: float, *, limit: int = 100) -> list[Room]:
        """Finished rooms without a verdict that finished at or before ``finished_before``."""
        return self._select_rooms(
            "verdict IS NULL AND finished_at IS NOT NULL AND finished_at <= :t"
            " ORDER BY finished_at LIMIT :lim",
            {"t": finished_before, "lim": limit},
        )

    def open_rooms(self, seen_before: float, *, limit: int = 100) -> list[Room]:
        """Rooms not finished as far as the ledger knows (no ``room_finished``, no verdict),
        first seen at or before ``seen_before``, the longest-open first."""
        return self._select_rooms(
            "verdict IS NULL AND finished_at IS NULL AND first_seen <= :t"
            " ORDER BY first_seen LIMIT :lim",
            {"t": seen_before, "lim": limit},
        )

    def mark_gone(self, room_sid: str, at: float) -> bool:
        """Record that LiveKit no longer lists the room, its ``room_finished`` never having
        arrived: the room counts as finished ``at`` (a ``room_finished`` arriving later
        replaces that time). False when the room had finished meanwhile."""
        with self.outbox.transaction() as tx:
            now = self.outbox.db_now(tx)
            rows = tx.run(
                f"UPDATE {ROOMS_TABLE} SET finished_at = :at, updated_at = :now"
                " WHERE room_sid = :sid AND finished_at IS NULL RETURNING room_sid",
                {"at": at, "now": now, "sid": room_sid},
            )
        return bool(rows)

    def settle(self, room_sid: str, verdict: Verdict) -> None:
        """Record the reconciler's verdict on a room (it is not looked at again)."""
        with self.outbox.transaction() as tx:
            now = self.outbox.db_now(tx)
            tx.run(
                f"UPDATE {ROOMS_TABLE} SET verdict = :v, verdict_at = :now, updated_at = :now"
                " WHERE room_sid = :sid",
                {"v": verdict, "now": now, "sid": room_sid},
            )

    def rooms(self, name_or_sid: str) -> list[Room]:
        """The rooms with this sid or this name (a name may be reused), newest first."""
        return self._select_rooms(
            "room_sid = :k OR room_name = :k ORDER BY first_seen DESC", {"k": name_or_sid}
        )

    def events(self, room_sid: str) -> list[LedgerEvent]:
        """Every recorded event of one room, oldest first."""
        with self.outbox.transaction(write=False) as tx:
            rows = tx.run(
                f"SELECT {_EVENT_COLS} FROM {EVENTS_TABLE} WHERE room_sid = :sid"
                " ORDER BY at, received_at",
                {"sid": room_sid},
            )
        return [_event(r) for r in rows]

    def last_received_at(self) -> float | None:
        """When the newest event arrived (None when none ever did)."""
        with self.outbox.transaction(write=False) as tx:
            rows = tx.run(f"SELECT MAX(received_at) FROM {EVENTS_TABLE}")
        value = rows[0][0] if rows else None
        return None if value is None else float(value)

    def count(self) -> int:
        """How many events are recorded."""
        with self.outbox.transaction(write=False) as tx:
            rows = tx.run(f"SELECT COUNT(*) FROM {EVENTS_TABLE}")
        return int(rows[0][0])
