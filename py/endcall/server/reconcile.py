"""Reconcile: every finished room gets its report or a signed ``session.missing`` event.

A room the ledger saw finish (`endcall.server.ledger`) is looked at ``after`` seconds later
(``ENDCALL_RECONCILE_AFTER``, default `DEFAULT_AFTER`). If the outbox holds a report of that
room sid — final or crash draft, in any state — the room is settled as ``report``. Otherwise a
``session.missing`` event (protocol.md §7) is committed to the outbox with ``webhook-id``
``<room_sid>.missing`` and delivered by the relays exactly like a report (same signing, same
retry schedule). The store is keyed by the room sid, so a reconciler restarted between the
store and the verdict, or two reconcilers on one database, still make one event per room.

LiveKit's webhooks are best effort: a ``room_finished`` may never come. Given ``live_rooms``
(which of some rooms LiveKit still lists; ``endcall serve`` asks ListRooms), the reconciler
sweeps the rooms the ledger still thinks open, at most every ``sweep`` seconds: a room LiveKit
no longer lists counts as finished when the sweep found it gone, and is settled like any other
``after`` seconds later. When LiveKit cannot be asked, nothing is marked.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from endcall.protocol import (
    MISSING_WEBHOOK_SUFFIX,
    MissingParticipant,
    SessionMissing,
    encode_missing,
    missing_webhook_id,
)
from endcall.reports.loop_health import LoopHealth
from endcall.reports.metrics import STORED
from endcall.reports.outbox.base import OutboxRecord, make_owner
from endcall.reports.outbox.sql import SqlOutbox
from endcall.reports.redact import redact
from endcall.reports.webhook import Webhook
from endcall.server.ledger import Ledger, LedgerEvent, Room
from endcall.server.metrics import SESSION_MISSING

__all__ = [
    "DEFAULT_AFTER",
    "DEFAULT_SWEEP",
    "SEARCH_MARGIN",
    "BackgroundReconciler",
    "LiveRooms",
    "Reconciler",
    "missing_event",
    "report_of_room",
]

#: seconds after ``room_finished`` before a room without a report is declared missing
DEFAULT_AFTER = 300.0
#: reports stored this long before the room started still count (clock skew between hosts)
SEARCH_MARGIN = 600.0
#: seconds between two sweeps for rooms whose ``room_finished`` never came; a room is swept
#: once it was first seen this long ago
DEFAULT_SWEEP = 60.0

#: the sids, among these rooms, of those LiveKit still lists (raises when it cannot be asked)
LiveRooms = Callable[[Sequence[Room]], Collection[str]]

logger = logging.getLogger("endcall.reconcile")


def _room_of(rec: OutboxRecord) -> tuple[str | None, str | None]:
    try:
        doc: Any = json.loads(rec.body)
    except ValueError:
        return None, None
    room = doc.get("room") if isinstance(doc, dict) else None
    if not isinstance(room, dict) or doc.get("type") != "session.ended":
        return None, None
    name, sid = room.get("name"), room.get("sid")
    return (name if isinstance(name, str) else None), (sid if isinstance(sid, str) else None)


def report_of_room(outbox: SqlOutbox, room: Room, page: int = 200) -> OutboxRecord | None:
    """A report (final or draft, any status) of ``room`` in the outbox, or None. Looks at rows
    created since the room started (less `SEARCH_MARGIN`); a report without a room sid counts
    when its room name matches."""
    since = (room.started_at or room.first_seen) - SEARCH_MARGIN
    offset = 0
    while True:
        batch = outbox.records(limit=page, offset=offset)
        for rec in batch:
            if rec.created_at < since:
                return None
            if rec.end_id.endswith(MISSING_WEBHOOK_SUFFIX):
                continue
            name, sid = _room_of(rec)
            if sid == room.room_sid or (sid is None and name == room.room_name):
                return rec
        if len(batch) < page:
            return None
        offset += page


def missing_event(room: Room, events: list[LedgerEvent], detected_at: float) -> SessionMissing:
    """The ``session.missing`` event of ``room`` from its ledger events."""
    people: dict[str, dict[str, Any]] = {}
    for ev in events:
        if ev.event not in ("participant_joined", "participant_left") or not ev.identity:
            continue
        key = ev.participant_sid or ev.identity
        p = people.setdefault(
            key,
            {"identity": ev.identity, "sid": ev.participant_sid, "kind": ev.kind or "standard"},
        )
        if ev.event == "participant_joined":
            p["joined_at"] = ev.at
        else:
            p["left_at"] = ev.at
        if ev.kind:
            p["kind"] = ev.kind
    participants = []
    for p in people.values():
        joined, left = p.get("joined_at"), p.get("left_at")
        if joined is not None and left is not None and left < joined:
            left = joined
        participants.append(
            MissingParticipant(
                identity=p["identity"], kind=p["kind"], sid=p["sid"], joined_at=joined, left_at=left
            )
        )
    agent = any(p.kind == "agent" for p in participants)
    finished = room.finished_at if room.finished_at is not None else detected_at
    started = room.started_at
    if started is not None and started > finished:
        started = finished
    return SessionMissing(
        room_name=room.room_name,
        room_sid=room.room_sid,
        cause="no-report-from-agent" if agent else "agent-never-joined",
        agent_joined=agent,
        finished_at=finished,
        detected_at=max(detected_at, finished),
        started_at=started,
        participants=tuple(participants),
    )


class Reconciler:
    """Settles finished rooms: ``run_once()`` sweeps for rooms gone without a
    ``room_finished`` (when ``live_rooms`` is given and a sweep is due), looks at every room
    due and returns the verdicts it reached, ``[(room_sid, "report" | "missing")]``."""

    def __init__(
        self,
        outbox: SqlOutbox,
        webhook: Webhook,
        *,
        after: float = DEFAULT_AFTER,
        live_rooms: LiveRooms | None = None,
        sweep: float = DEFAULT_SWEEP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.ledger = Ledger(outbox)
        self.webhook = webhook
        self.after = after
        self.live_rooms = live_rooms
        self.sweep_every = sweep
        self.clock = clock
        self.owner = make_owner("reconcile")
        self._last_sweep: float | None = None

    def sweep(self, now: float) -> list[str]:
        """Mark the rooms LiveKit no longer lists as finished ``now``; their sids."""
        if self.live_rooms is None:
            return []
        open_rooms = self.ledger.open_rooms(now - self.sweep_every)
        if not open_rooms:
            return []
        try:
            live = set(self.live_rooms(open_rooms))
        except Exception as e:
            logger.warning(
                "endcall reconcile: cannot ask LiveKit which rooms are open (%s);"
                " no room is marked finished",
                redact(str(e)),
            )
            return []
        gone = []
        for room in open_rooms:
            if room.room_sid not in live and self.ledger.mark_gone(room.room_sid, now):
                gone.append(room.room_sid)
                logger.warning(
                    "endcall: room %s (%s) is gone but its room_finished webhook never came;"
                    " it counts as finished now",
                    room.room_name,
                    room.room_sid,
                )
        return gone

    def run_once(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        now = self.clock()
        if self._last_sweep is None or now - self._last_sweep >= self.sweep_every:
            self._last_sweep = now
            self.sweep(now)
        for room in self.ledger.due(now - self.after):
            found = report_of_room(self.outbox, room)
            if found is not None:
                self.ledger.settle(room.room_sid, "report")
                out.append((room.room_sid, "report"))
                continue
            event = missing_event(room, self.ledger.events(room.room_sid), now)
            key = missing_webhook_id(room.room_sid)
            result = self.outbox.store(
                key,
                self.webhook.url,
                encode_missing(event),
                owner=self.owner,
                lease=0.0,
                headers=self.webhook.headers,
                delivery=self.webhook.delivery(),
            )
            self.ledger.settle(room.room_sid, "missing")
            out.append((room.room_sid, "missing"))
            if result == "stored":
                STORED.labels("missing").inc()
                SESSION_MISSING.labels(event.cause).inc()
                logger.warning(
                    "endcall: no report of room %s (%s): session.missing (%s) stored as %s",
                    room.room_name,
                    room.room_sid,
                    event.cause,
                    key,
                )
        return out


class BackgroundReconciler:
    """`Reconciler.run_once` every ``poll`` seconds in a daemon thread, on its own connection
    to the outbox at ``target`` (what ``endcall serve`` runs while it is up)."""

    def __init__(
        self,
        target: str,
        webhook: Webhook,
        *,
        after: float = DEFAULT_AFTER,
        poll: float | None = None,
        live_rooms: LiveRooms | None = None,
        sweep: float = DEFAULT_SWEEP,
    ) -> None:
        self.target = target
        self.webhook = webhook
        self.after = after
        self.live_rooms = live_rooms
        self.sweep = sweep
        self.poll = poll if poll is not None else min(10.0, max(0.2, after / 4), sweep)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._main, name="endcall-reconcile", daemon=True)
        self.health = LoopHealth("reconcile", self.poll, alive=self.thread.is_alive)

    def start(self) -> BackgroundReconciler:
        self.thread.start()
        return self

    def _main(self) -> None:
        from endcall.reports.outbox import open_outbox

        outbox: Any = None
        reconciler: Reconciler | None = None
        failing = False
        while not self._stop.is_set():
            self.health.begin()
            try:
                if reconciler is None:
                    outbox = open_outbox(self.target)
                    reconciler = Reconciler(
                        outbox,
                        self.webhook,
                        after=self.after,
                        live_rooms=self.live_rooms,
                        sweep=self.sweep,
                    )
                reconciler.run_once()
            except Exception as e:
                self.health.failed(redact(f"{type(e).__name__}: {e}"))
                if not failing:  # once per state change, not once per pass
                    logger.warning("endcall reconcile passes fail: %s; retrying", redact(str(e)))
                failing = True
                if reconciler is None and outbox is not None:
                    outbox.close()
                    outbox = None
            else:
                self.health.passed()
                if failing:
                    logger.info("endcall reconcile passes work again")
                failing = False
            self._stop.wait(self.poll)
        if outbox is not None:
            outbox.close()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.thread.join(timeout)
