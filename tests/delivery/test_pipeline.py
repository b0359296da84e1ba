"""ReportPipeline: group commit under concurrency, outbox failing mid-session, drafts."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path
from typing import Any

from support import Action, Receiver

from endcall.outbox import SqliteOutbox
from endcall.pipeline import GroupCommit, ReportPipeline
from endcall.relay import Relay
from endcall.webhook import Webhook

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


async def test_outbox_failing_at_store_time_delivers_from_memory_and_settles_draft(
    receiver: Receiver, secret: str, outbox_path: Path
) -> None:
    inner = SqliteOutbox(outbox_path)
    pipe = ReportPipeline(
        Webhook(url=receiver.url, secret=secret, schedule=FAST),
        FailingStores(inner),  # type: ignore[arg-type]
    )
    await pipe.save_draft("m1", b'{"complete":false}')
    assert await pipe.store("m1", b'{"complete":true}') is False
    out = await pipe.deliver("m1")
    assert out.delivered
    await pipe.aclose()
    # the stale draft is settled: a relay finds nothing to send
    rec = inner.get("m1")
    assert rec is not None and rec.status == "delivered"
    relay = Relay(inner, [secret])
    assert (await relay.run_once()).claimed == 0
    await relay.aclose()
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
