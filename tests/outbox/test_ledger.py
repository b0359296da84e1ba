"""The room ledger and the reconciler on both backends (SQLite and PostgreSQL), and the
outbox's per-attempt log."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from conftest import Clock

from endcall import protocol
from endcall.reports.outbox.sql import SqlOutbox
from endcall.reports.webhook import Webhook
from endcall.server.ledger import Ledger, LedgerEvent, Room
from endcall.server.reconcile import Reconciler

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def ev(eid: str, name: str, at: float, **kw: str) -> LedgerEvent:
    return LedgerEvent(eid, name, "RM_1", "room-1", at=at, **kw)


def test_ledger_records_once_and_knows_replayed_tokens(outbox: SqlOutbox, clock: Clock) -> None:
    ledger = Ledger(outbox)
    t = clock.now - 100
    assert ledger.record(ev("E1", "room_started", t), "tok1")
    assert not ledger.record(ev("E1", "room_started", t), "tok1b")  # retried event
    assert ledger.seen_token("tok1") and not ledger.seen_token("tok-new")
    joined = ev("E2", "participant_joined", t + 1, identity="a", participant_sid="PA", kind="agent")
    assert ledger.record(joined, "tok2")
    assert ledger.record(ev("E3", "room_finished", t + 5), "tok3")
    (room,) = ledger.rooms("room-1")
    assert (room.started_at, room.finished_at, room.verdict) == (t, t + 5, None)
    assert [e.event for e in ledger.events("RM_1")] == [
        "room_started",
        "participant_joined",
        "room_finished",
    ]
    assert ledger.count() == 3 and ledger.last_received_at() is not None
    assert [r.room_sid for r in ledger.due(clock.now)] == ["RM_1"]


def test_reconciler_stores_one_missing_event_per_room(outbox: SqlOutbox, clock: Clock) -> None:
    ledger = Ledger(outbox)
    t = clock.now - 100
    ledger.record(ev("E1", "room_started", t), "tok1")
    ledger.record(ev("E3", "room_finished", t + 5), "tok3")
    webhook = Webhook(url="https://backend.test/hook", secret=SECRET)
    assert Reconciler(outbox, webhook, after=10, clock=clock).run_once() == [("RM_1", "missing")]
    with outbox.transaction() as tx:
        tx.run("UPDATE endcall_rooms SET verdict = NULL")  # as if it crashed before the verdict
    assert Reconciler(outbox, webhook, after=10, clock=clock).run_once() == [("RM_1", "missing")]
    assert outbox.counts()["pending"] == 1
    row = outbox.get("RM_1.missing")
    assert row is not None
    assert protocol.parse_missing(row.body).cause == "agent-never-joined"


def test_every_attempt_is_logged(outbox: SqlOutbox, clock: Clock) -> None:
    outbox.store("e_1", "https://b.test", b"{}", owner="o", lease=60)
    outbox.mark_failed("e_1", "o", dead=False, next_attempt_at=0, status_code=503, error="busy")
    outbox.renew("e_1", "o", 60)
    outbox.mark_delivered("e_1", "o", 204)
    log = outbox.attempts("e_1")
    assert [(a["attempt"], a["outcome"], a["status_code"]) for a in log] == [
        (1, "failed", 503),
        (2, "delivered", 204),
    ]
    assert log[0]["error"] == "busy"
    assert outbox.purge(clock.now + 1) == 1 and outbox.attempts("e_1") == []


class Lister:
    """LiveKit's ListRooms for the sweep: which of the asked rooms are still listed."""

    def __init__(self, live: set[str] | None = None, *, fail: bool = False) -> None:
        self.live = live or set()
        self.fail = fail
        self.asked: list[list[str]] = []

    def __call__(self, rooms: Sequence[Room]) -> set[str]:
        self.asked.append([r.room_sid for r in rooms])
        if self.fail:
            raise ConnectionError("ListRooms: connection refused")
        return self.live & {r.room_sid for r in rooms}


def _open_room(outbox: SqlOutbox, clock: Clock) -> Ledger:
    ledger = Ledger(outbox)
    ledger.record(ev("E1", "room_started", clock.now), "tok1")
    agent = ev("E2", "participant_joined", clock.now + 1, identity="a", kind="agent")
    ledger.record(agent, "tok2")
    return ledger


def test_a_room_gone_without_room_finished_is_swept_then_reconciled(
    outbox: SqlOutbox, clock: Clock
) -> None:
    ledger = _open_room(outbox, clock)
    lister = Lister()
    webhook = Webhook(url="https://backend.test/hook", secret=SECRET)
    rec = Reconciler(outbox, webhook, after=10, live_rooms=lister, sweep=30, clock=clock)
    assert rec.run_once() == [] and lister.asked == []  # too young to be asked about
    clock.now += 31
    gone_at = clock.now
    assert rec.run_once() == []  # marked finished now; settled `after` seconds later
    assert lister.asked == [["RM_1"]]
    (room,) = ledger.rooms("RM_1")
    assert room.finished_at == gone_at and room.verdict is None
    clock.now += 11
    assert rec.run_once() == [("RM_1", "missing")]
    row = outbox.get("RM_1.missing")
    assert row is not None
    missing = protocol.parse_missing(row.body)
    assert (missing.cause, missing.finished_at) == ("no-report-from-agent", gone_at)


def test_a_room_livekit_still_lists_stays_open_and_is_asked_once_per_sweep(
    outbox: SqlOutbox, clock: Clock
) -> None:
    ledger = _open_room(outbox, clock)
    lister = Lister({"RM_1"})
    webhook = Webhook(url="https://backend.test/hook", secret=SECRET)
    rec = Reconciler(outbox, webhook, after=10, live_rooms=lister, sweep=30, clock=clock)
    clock.now += 31
    for _ in range(3):
        assert rec.run_once() == []
        clock.now += 10
    assert lister.asked == [["RM_1"]]  # 30 s between sweeps
    clock.now += 1
    assert rec.run_once() == [] and len(lister.asked) == 2
    (room,) = ledger.rooms("RM_1")
    assert room.finished_at is None and outbox.get("RM_1.missing") is None


def test_a_sweep_that_cannot_ask_livekit_marks_nothing(
    outbox: SqlOutbox, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = _open_room(outbox, clock)
    webhook = Webhook(url="https://backend.test/hook", secret=SECRET)
    rec = Reconciler(outbox, webhook, after=0, live_rooms=Lister(fail=True), sweep=1, clock=clock)
    clock.now += 5
    with caplog.at_level(logging.WARNING, logger="endcall.reconcile"):
        assert rec.run_once() == []
    assert "cannot ask LiveKit" in caplog.text and "connection refused" in caplog.text
    (room,) = ledger.rooms("RM_1")
    assert room.finished_at is None


def test_a_late_room_finished_replaces_the_swept_time(outbox: SqlOutbox, clock: Clock) -> None:
    ledger = _open_room(outbox, clock)
    started = clock.now
    webhook = Webhook(url="https://backend.test/hook", secret=SECRET)
    rec = Reconciler(outbox, webhook, after=60, live_rooms=Lister(), sweep=1, clock=clock)
    clock.now += 5
    rec.run_once()
    assert ledger.rooms("RM_1")[0].finished_at == clock.now
    assert ledger.record(ev("E9", "room_finished", started + 3), "tok9")  # LiveKit's, late
    assert ledger.rooms("RM_1")[0].finished_at == started + 3
    assert not ledger.mark_gone("RM_1", clock.now)  # finished: a sweep changes nothing
    assert ledger.open_rooms(clock.now) == []
