"""Two relays working one PostgreSQL outbox: every report delivered, none twice at once."""

from __future__ import annotations

import asyncio
import random
import time

from support import Action, Receiver

from endcall.reports.delivery import RetryPolicy
from endcall.reports.outbox import PostgresOutbox, make_owner
from endcall.reports.pipeline import ReportPipeline
from endcall.reports.relay import Relay
from endcall.reports.webhook import Webhook

FAST = RetryPolicy((0, 0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1), jitter=0)


async def test_two_relays_share_one_postgres_outbox(
    pg_dsn: str, receiver: Receiver, secret: str
) -> None:
    rng = random.Random(7)
    receiver.plan = lambda e, n: Action(503) if rng.random() < 0.3 else Action(200)
    seed = PostgresOutbox(pg_dsn)
    ids = [f"pg-{i}" for i in range(200)]
    bodies = {e: f'{{"end_id":"{e}"}}'.encode() for e in ids}
    for e in ids:
        assert seed.store(e, receiver.url, bodies[e], owner=make_owner(), lease=0) == "stored"
    a, b = PostgresOutbox(pg_dsn), PostgresOutbox(pg_dsn)
    ra = Relay(a, [secret], owner="host-a:1:a", timeout=2, policy=FAST, batch=16)
    rb = Relay(b, [secret], owner="host-b:1:b", timeout=2, policy=FAST, batch=16)
    claimed = {"a": 0, "b": 0}

    async def loop(name: str, relay: Relay) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            claimed[name] += (await relay.run_once()).claimed
            if seed.counts()["delivered"] == len(ids):
                return
            await asyncio.sleep(0.02)

    await asyncio.gather(loop("a", ra), loop("b", rb))
    await ra.aclose()
    await rb.aclose()
    assert seed.counts()["delivered"] == len(ids)
    assert claimed["a"] > 0 and claimed["b"] > 0
    receiver.assert_invariants(bodies)
    # SKIP LOCKED + leases: no report was accepted twice
    assert all(len(v) == 1 for v in receiver.accepted().values())
    for ob in (seed, a, b):
        ob.close()


async def test_pipeline_on_postgres(pg_dsn: str, receiver: Receiver, secret: str) -> None:
    ob = PostgresOutbox(pg_dsn)
    pipe = ReportPipeline(Webhook(url=receiver.url, secret=secret), ob)
    await pipe.save_draft("p1", b'{"complete":false}')
    assert await pipe.store("p1", b'{"complete":true}')
    out = await pipe.deliver("p1")
    assert out.delivered and out.attempts == 1
    await pipe.aclose()
    receiver.assert_invariants({"p1": b'{"complete":true}'})
    ob.close()
