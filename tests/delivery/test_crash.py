"""Crashes: SIGTERM/SIGKILL of a delivering subprocess at random points, then restart and
replay; crash drafts delivered as agent-crashed once their lease expired, and a receiver
following protocol.md §6 always ends with the final report."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import Action, Receiver

from endcall.reports.delivery import RetryPolicy
from endcall.reports.outbox import SqliteOutbox
from endcall.reports.pipeline import ReportPipeline
from endcall.reports.relay import Relay
from endcall.reports.webhook import Webhook

HERE = Path(__file__).resolve().parent
PY = str(HERE.parents[1] / "py")
FAST = RetryPolicy((0, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1), jitter=0)


def spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": PY + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, str(HERE / "sender_proc.py"), *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


async def relay_until_done(ob: SqliteOutbox, secret: str, limit: float = 60.0) -> None:
    relay = Relay(ob, [secret], timeout=0.5, policy=FAST)
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            await relay.run_once()
            c = ob.counts()
            if c["pending"] == c["delivering"] == c["draft"] == 0:
                return
            await asyncio.sleep(0.05)
    finally:
        await relay.aclose()
    raise AssertionError(f"relay did not finish: {ob.counts()}")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
@pytest.mark.parametrize("round_", range(2))
async def test_killed_sender_then_replay_loses_nothing(
    sig: signal.Signals, round_: int, receiver: Receiver, secret: str, outbox_path: Path
) -> None:
    seed = random.randrange(10**9)
    rng = random.Random(seed)
    plan_rng = random.Random(seed + 1)

    def plan(e: str, n: int) -> Action:
        x = plan_rng.random()
        if x < 0.30:
            return Action(500)
        if x < 0.35:
            return Action(200, delay=0.8)  # slower than the sender's 0.5 s timeout
        return Action(200)

    receiver.plan = plan
    SqliteOutbox(outbox_path).close()  # create the schema before the child starts
    p = spawn(str(outbox_path), receiver.url, secret, "120", f"k{round_}")
    kill_after = rng.uniform(0.2, 1.2)
    await asyncio.sleep(kill_after)
    p.send_signal(sig)
    out, _ = await asyncio.to_thread(p.communicate, timeout=30)
    stored = [line.split()[1] for line in out.splitlines() if line.startswith("STORED")]
    assert "DONE" not in out, "the sender finished before it was killed"
    assert p.returncode == -sig
    print(f"seed={seed} killed after {kill_after:.2f}s with {len(stored)} stored")
    ob = SqliteOutbox(outbox_path)
    # restart: a relay takes over once the killed sender's leases have expired
    await relay_until_done(ob, secret)
    rows = {r.end_id: r for r in ob.records(limit=1000)}
    assert set(stored) <= set(rows), f"seed={seed}: acknowledged report missing from outbox"
    assert all(r.status == "delivered" for r in rows.values()), (seed, ob.counts())
    expected = {e: r.body for e, r in rows.items() if not r.is_draft}
    drafts = {e: r.body for e, r in rows.items() if r.is_draft}
    receiver.assert_invariants({**expected, **drafts})
    for e, body in drafts.items():  # only sessions that never stored a final report
        assert e.removesuffix(".draft") not in stored
        assert json.loads(body)["ended_reason"] == "agent-crashed"
    kept = receiver.kept()
    for e in stored:
        assert json.loads(rows[e].body)["complete"] is True
        assert kept[e] == rows[e].body
    ob.close()


async def test_crashed_session_draft_delivered_as_agent_crashed(
    receiver: Receiver, secret: str, outbox_path: Path
) -> None:
    SqliteOutbox(outbox_path).close()
    p = spawn(str(outbox_path), receiver.url, secret, "3", "crash", "draft-only")
    assert p.stdout is not None
    for _ in range(3):
        line = await asyncio.to_thread(p.stdout.readline)
        assert line.startswith("DRAFTED")
    ob = SqliteOutbox(outbox_path)
    relay = Relay(ob, [secret], timeout=2, policy=FAST)
    # the session is alive: its drafts are not sent
    assert (await relay.run_once()).claimed == 0
    p.kill()
    p.wait()
    # its leases run out (nothing but the lease decides), then the drafts go out
    stats = await relay.run_once()
    for _ in range(100):
        if stats.delivered:
            break
        await asyncio.sleep(0.1)
        stats = await relay.run_once()
    await relay.aclose()
    assert stats.delivered == 3 and stats.drafts == 3
    for r in receiver.requests:
        doc = json.loads(r.body)
        assert doc["complete"] is False and doc["ended_reason"] == "agent-crashed"
        assert r.end_id == doc["end_id"] + ".draft"
    receiver.assert_invariants({r.end_id: r.body for r in ob.records()})
    # the agent comes back (e.g. it was only stalled) with its final report: it is still
    # stored and delivered, and the receiver ends with it (protocol.md §6)
    wh = Webhook(url=receiver.url, secret=secret)
    pipe = ReportPipeline(wh, ob)
    final = b'{"complete":true}'
    assert await pipe.store("crash-0", final) is True
    out = await pipe.deliver("crash-0")
    assert out.delivered
    await pipe.aclose()
    assert receiver.kept()["crash-0"] == final
    assert [r.body for r in receiver.by_id()["crash-0"]] == [final]
    ob.close()


async def test_draft_never_sent_alongside_final(
    receiver: Receiver, secret: str, outbox_path: Path
) -> None:
    ob = SqliteOutbox(outbox_path)
    wh = Webhook(url=receiver.url, secret=secret, schedule=(0, 0.05), jitter=0)
    pipe = ReportPipeline(wh, ob)
    relay = Relay(ob, [secret], timeout=2, policy=FAST)
    for i in range(20):
        await pipe.save_draft(f"s{i}", b'{"complete":false}')
    assert (await relay.run_once()).claimed == 0  # owner alive, lease valid
    final = b'{"complete":true}'
    for i in range(20):
        assert await pipe.store(f"s{i}", final)
        await relay.run_once()  # a relay racing with the agent's own delivery
        await pipe.deliver(f"s{i}")
    await relay.run_once()
    await relay.aclose()
    await pipe.aclose()
    receiver.assert_invariants({f"s{i}": final for i in range(20)})
    assert all(r.body == final for r in receiver.requests)
    ob.close()
