"""`endcall.prewarm`: a background relay started from livekit-agents' setup_fnc."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from livekit.agents import JobExecutorType, JobProcess
from support import Action, Receiver

import endcall
from endcall.reports import secret_offers
from endcall.reports.outbox import SqliteOutbox, make_owner
from endcall.reports.pipeline import ReportPipeline
from endcall.reports.relay import _prewarmed
from endcall.reports.storage import OutboxError


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


def test_prewarm_without_secret_starts_nothing(
    monkeypatch: pytest.MonkeyPatch, outbox_path: Path
) -> None:
    monkeypatch.delenv("ENDCALL_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("ENDCALL_OUTBOX", str(outbox_path))
    _prewarmed.clear()
    assert endcall.prewarm(None) is None
    assert not _prewarmed
    secret_offers.forget()


async def test_prewarm_starts_with_the_secret_given_in_code(
    monkeypatch: pytest.MonkeyPatch, outbox_path: Path, receiver: Receiver, secret: str
) -> None:
    """Issue 11 point 8: with the secret given in code (the README's agent) and no
    ENDCALL_WEBHOOK_SECRET, prewarm started no relay and leftovers stayed forever."""
    monkeypatch.delenv("ENDCALL_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("ENDCALL_OUTBOX", str(outbox_path))
    ob = SqliteOutbox(outbox_path)
    ob.store("left-3", receiver.url, b'{"a":3}', owner=make_owner(), lease=0)
    _prewarmed.clear()
    proc = JobProcess(executor_type=JobExecutorType.PROCESS, user_arguments=None, http_proxy=None)
    assert endcall.prewarm(proc, poll=0.1) is None
    # the job's agent: EndCall builds a pipeline from the Webhook given in code
    pipe = ReportPipeline(endcall.Webhook(url=receiver.url, secret=secret))
    relay = _prewarmed.get(os.getpid())
    try:
        assert relay is not None
        for _ in range(100):
            if ob.counts()["delivered"] == 1:
                break
            await asyncio.sleep(0.05)
        assert ob.counts()["delivered"] == 1
    finally:
        if relay is not None:
            relay.stop()
        _prewarmed.clear()
        await pipe.aclose()
    receiver.assert_invariants({"left-3": b'{"a":3}'})
    ob.close()


def test_prewarm_refuses_malformed_secrets_and_unwritable_outboxes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Issue 11 point 8: a malformed ENDCALL_WEBHOOK_SECRET was accepted and every attempt
    failed before sending; point 12: an outbox that cannot be opened is an error at start-up."""
    monkeypatch.setenv("ENDCALL_WEBHOOK_SECRET", "whsec_not*base64")
    with pytest.raises(ValueError, match="ENDCALL_WEBHOOK_SECRET: secret #1"):
        endcall.prewarm(None, outbox=tmp_path / "o.sqlite3")
    monkeypatch.delenv("ENDCALL_WEBHOOK_SECRET")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutboxError, match="cannot open the endcall outbox"):
        endcall.prewarm(None, outbox=tmp_path / "file" / "o.sqlite3")
