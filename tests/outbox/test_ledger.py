"""The room ledger and the reconciler on both backends (SQLite and PostgreSQL), and the
outbox's per-attempt log."""

from __future__ import annotations

from conftest import Clock

from endcall import protocol
from endcall.ledger import Ledger, LedgerEvent
from endcall.outbox.base import SqlOutbox
from endcall.reconcile import Reconciler
from endcall.webhook import Webhook

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
