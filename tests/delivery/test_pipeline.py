"""ReportPipeline: group commit under concurrency, outbox failing mid-session, drafts."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

from support import Action, Receiver

from endcall.reports.outbox import SqliteOutbox
from endcall.reports.pipeline import GroupCommit, ReportPipeline
from endcall.reports.relay import Relay
from endcall.reports.webhook import Webhook

FAST = (0.0, 0.02, 0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1)


async def test_concurrent_session_ends_all_durable_and_delivered(
    receiver: Receiver, secret: str, outbox_path: Path
) -> None:
    rng = random.Random(3)
    receiver.plan = lambda e, n: Action(500) if rng.random() < 0.3 else Action(200)
    ob = SqliteOutbox(outbox_path)
    pipe = ReportPipeline(Webhook(url=receiver.url, secret=secret, schedule=FAST), ob)
    bodies = {f"c{i}": f'{{"i":{i}}}'.encode() for i in range(150)}

    async def end(e: str) -> None:
        await pipe.save_draft(e, b'{"complete":false}')
        assert await pipe.store(e, bodies[e])
        out = await pipe.deliver(e)
        assert out.delivered, out

    await asyncio.gather(*(end(e) for e in bodies))
    await pipe.aclose()
    assert ob.counts()["delivered"] == 150
    receiver.assert_invariants(bodies)
    ob.close()


async def test_group_commit_batches_and_propagates_errors() -> None:
    calls: list[list[int]] = []

    def many(items: list[int]) -> list[int]:
        calls.append(items)
        if any(i >= 100 for i in items):
            raise OSError("disk full")
        return [i * 2 for i in items]

    gc: GroupCommit[int, int] = GroupCommit(many)
    res = await asyncio.gather(*(gc.submit(i) for i in range(10)), return_exceptions=True)
    assert res == [i * 2 for i in range(10)]
    assert len(calls) < 10  # batched
    # a failed batch fails every waiter in it; later batches are unaffected
    res = await asyncio.gather(*(gc.submit(100 + i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in res)
    assert len(calls[-1]) > 1  # the waiters queued behind the first one shared a batch
    assert await gc.submit(7) == 14


class FailingStores:
    """A real outbox whose final-report writes fail (disk full), drafts still work."""

    def __init__(self, inner: SqliteOutbox) -> None:
        self.inner = inner

    def store_many(self, *a: Any, **k: Any) -> Any:
        raise sqlite3.OperationalError("database or disk is full")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_outbox_failing_at_store_time_delivers_from_memory_and_keeps_the_draft(
    receiver: Receiver, secret: str, outbox_path: Path
) -> None:
    """Final-report writes keep failing (disk full): the report goes out from memory. The
    draft is not deleted behind the report's back: it is what tells the reconciler the room
    reported (no false session.missing), and a receiver drops a draft that comes after the
    final report (protocol.md §6 rule 3). Once the outbox takes writes again, the report is
    written as delivered and the draft goes (tests/delivery/test_store_heals.py)."""
    inner = SqliteOutbox(outbox_path)
    pipe = ReportPipeline(
        Webhook(url=receiver.url, secret=secret, schedule=FAST),
        FailingStores(inner),  # type: ignore[arg-type]
    )
    pipe.settle_at_close = 0.3
    await pipe.save_draft("m1", b'{"complete":false}')
    assert await pipe.store("m1", b'{"complete":true}') is False
    out = await pipe.deliver("m1")
    assert out.delivered
    await pipe.aclose()
    draft = inner.get("m1.draft")
    assert draft is not None and draft.status == "draft" and inner.get("m1") is None
    receiver.assert_invariants({"m1": b'{"complete":true}'})
    inner.close()


async def test_deliver_within_zero_leaves_it_for_relays(
    receiver: Receiver, secret: str, outbox_path: Path
) -> None:
    ob = SqliteOutbox(outbox_path)
    pipe = ReportPipeline(Webhook(url=receiver.url, secret=secret), ob)
    assert await pipe.store("z", b"{}")
    out = await pipe.deliver("z", within=0)
    assert not out.delivered and out.attempts == 0
    rec = ob.get("z")
    assert rec is not None and rec.status == "pending" and rec.lease_owner is None
    relay = Relay(ob, [secret])
    assert (await relay.run_once()).delivered == 1
    await relay.aclose()
    await pipe.aclose()
    again = ReportPipeline(Webhook(url=receiver.url, secret=secret), ob)
    assert (await again.deliver("z")).delivered  # already delivered: no new attempt
    await again.aclose()
    assert len(receiver.requests) == 1
    ob.close()


class FlakyStores:
    """A real outbox whose first final-report write fails (a full disk that was cleaned up)."""

    def __init__(self, inner: SqliteOutbox, failures: int = 1) -> None:
        self.inner = inner
        self.failures = failures

    def store_many(self, *a: Any, **k: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return self.inner.store_many(*a, **k)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Now:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_final_report_wins_when_the_outbox_fails_at_the_final_store(
    receiver: Receiver, secret: str, outbox_path: Path
) -> None:
    """Issue 11 point 5: the final store failed, the receiver was down during the in-process
    window, and later a relay delivered only the stale crash draft. Now the store is retried
    and the final report is what the receiver ends with."""
    clock = Now()
    inner = SqliteOutbox(outbox_path, clock=clock)
    receiver.plan = lambda e, n: Action(503)  # the receiver is down
    hook = Webhook(url=receiver.url, secret=secret, schedule=FAST, in_process_window=0.3)
    pipe = ReportPipeline(hook, FlakyStores(inner))  # type: ignore[arg-type]
    draft, final = b'{"complete":false}', b'{"complete":true}'
    await pipe.save_draft("m2", draft)
    assert await pipe.store("m2", final) is False  # kept in memory, logged
    out = await pipe.deliver("m2")
    assert not out.delivered
    await pipe.aclose()
    rec = inner.get("m2")
    assert rec is not None and rec.body == final and rec.status == "pending"
    assert inner.get("m2.draft") is None
    receiver.plan = lambda e, n: Action(200)  # the receiver is back
    clock.now += 3600  # every lease has long expired
    relay = Relay(inner, [secret])
    for _ in range(50):
        await relay.run_once()
        if inner.counts()["delivered"]:
            break
        clock.now += 3600
    await relay.aclose()
    assert receiver.kept() == {"m2": final}
    receiver.assert_invariants({"m2": final})
    inner.close()
