"""`endcall.prewarm`: a background relay started from livekit-agents' setup_fnc."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from livekit.agents import JobExecutorType, JobProcess
from support import Action, Receiver

import endcall
from endcall.outbox import SqliteOutbox, make_owner
from endcall.relay import _prewarmed


async def test_prewarm_relays_leftovers(outbox_path: Path, receiver: Receiver, secret: str) -> None:
    ob = SqliteOutbox(outbox_path)
    ob.store("left-1", receiver.url, b'{"a":1}', owner=make_owner(), lease=0)
    proc = JobProcess(executor_type=JobExecutorType.PROCESS, user_arguments=None, http_proxy=None)
    _prewarmed.clear()
    # the receiver answers slowly: prewarm must return without waiting for any delivery
    receiver.plan = lambda e, n: Action(200, delay=1.0)
    relay = endcall.prewarm(proc, secret=secret, outbox=outbox_path, poll=0.1)
    assert ob.get("left-1").status != "delivered"  # type: ignore[union-attr]
    assert relay is not None and proc.userdata["endcall.relay"] is relay
    assert relay.thread.daemon
    assert endcall.prewarm(proc, secret=secret, outbox=outbox_path) is relay  # once per process
    try:
        for _ in range(100):
            rec = ob.get("left-1")
            if rec is not None and rec.status == "delivered":
                break
            await asyncio.sleep(0.05)
        # a report committed later is picked up on the next poll
        ob.store("left-2", receiver.url, b'{"a":2}', owner=make_owner(), lease=0)
        for _ in range(100):
            if ob.counts()["delivered"] == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        relay.stop()
        _prewarmed.clear()
    assert not relay.thread.is_alive()
    receiver.assert_invariants({"left-1": b'{"a":1}', "left-2": b'{"a":2}'})
    ob.close()


def test_prewarm_without_secret_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENDCALL_WEBHOOK_SECRET", raising=False)
    _prewarmed.clear()
    assert endcall.prewarm(None) is None
    assert not _prewarmed
