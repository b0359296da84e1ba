"""What a relay needs travels with the row: the schedule, the timeout and which secret (by key
id, never the secret); a lease always covers the request timeout (issue 11 points 8, 9)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import pytest
from support import Action, Receiver, new_secret

from endcall.reports.outbox import SqliteOutbox
from endcall.reports.pipeline import ReportPipeline
from endcall.reports.relay import Relay
from endcall.reports.webhook import Webhook, key_id


async def stored_by_agent(hook: Webhook, ob: SqliteOutbox, end_id: str, body: bytes) -> None:
    """What an agent leaves behind: stored, not delivered in process."""
    pipe = ReportPipeline(hook, ob)
    assert await pipe.store(end_id, body)
    assert not (await pipe.deliver(end_id, within=0)).delivered
    await pipe.aclose()


async def test_a_relay_without_the_agents_secret_sends_nothing(
    outbox_path: Path, receiver: Receiver, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Point 8: a relay with a different (valid) secret signed with it, and the receiver
    rejected every attempt until the report was dead."""
    ob = SqliteOutbox(outbox_path)
    await stored_by_agent(Webhook(receiver.url, secret), ob, "e1", b'{"a":1}')
    rec = ob.get("e1")
    assert rec is not None and rec.delivery["keys"] == [key_id(secret)]
    other = new_secret()
    relay = Relay(ob, [other])
    with caplog.at_level(logging.ERROR):
        stats = await relay.run_once()
    await relay.aclose()
    assert stats.claimed == 1 and receiver.requests == []
    rec = ob.get("e1")
    assert rec is not None and rec.status == "pending" and rec.attempts == 0
    assert rec.last_error is not None and key_id(secret) in rec.last_error
    assert any(key_id(secret) in r.getMessage() for r in caplog.records)
    assert other not in caplog.text and secret not in caplog.text
    # a relay given both (a rotation) signs with the agent's key only; the receiver accepts
    ob._clock = lambda: time.time() + 3600  # the deferral has passed
    relay = Relay(ob, [other, secret])
    assert (await relay.run_once()).delivered == 1
    await relay.aclose()
    receiver.assert_invariants({"e1": b'{"a":1}'})
    assert receiver.requests[0].headers["webhook-signature"].count("v1,") == 1
    ob.close()


def test_malformed_relay_secrets_are_refused(
    outbox_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ob = SqliteOutbox(outbox_path)
    monkeypatch.setenv("ENDCALL_WEBHOOK_SECRET", "whsec_valid-looking?")
    with pytest.raises(ValueError, match="ENDCALL_WEBHOOK_SECRET: secret #1"):
        Relay(ob)
    ob.close()


async def test_the_relay_follows_the_rows_schedule_and_timeout(
    outbox_path: Path, receiver: Receiver, secret: str
) -> None:
    """Point 8: the relay used its own schedule and timeout, not the agent's."""
    receiver.plan = lambda e, n: Action(500)
    ob = SqliteOutbox(outbox_path)
    hook = Webhook(receiver.url, secret, schedule=(0.0, 1234.0), jitter=0, timeout=3.5)
    await stored_by_agent(hook, ob, "e2", b"{}")
    seen: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"]["read"])
        return httpx.Response(500)

    relay = Relay(ob, [secret], timeout=15, transport=httpx.MockTransport(handler))
    before = time.time()
    assert (await relay.run_once()).retrying == 1
    await relay.aclose()
    assert seen == [3.5]
    rec = ob.get("e2")
    assert rec is not None and rec.attempts == 1
    assert 1200 < rec.next_attempt_at - before < 1300  # the row's 1234 s, not the default 5 s
    ob.close()


async def test_no_relay_posts_while_the_agents_long_request_is_in_flight(
    outbox_path: Path, secret: str
) -> None:
    """Point 9: a fixed 90 s lease with a 120 s request timeout let a relay POST the same
    report while the first POST was still waiting for its answer."""
    gate = asyncio.Event()
    agent_posts: list[str] = []
    relay_posts: list[str] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        agent_posts.append(request.headers["webhook-id"])
        await gate.wait()
        return httpx.Response(200)

    async def fast(request: httpx.Request) -> httpx.Response:
        relay_posts.append(request.headers["webhook-id"])
        return httpx.Response(200)

    hook = Webhook("https://backend.test/h", secret, timeout=120)
    ob = SqliteOutbox(outbox_path)
    pipe = ReportPipeline(hook, ob, transport=httpx.MockTransport(slow))
    assert await pipe.store("e3", b"{}")
    task = asyncio.create_task(pipe.deliver("e3"))
    while not agent_posts:  # noqa: ASYNC110 - polling what the handler recorded
        await asyncio.sleep(0.01)
    # 100 s into the 120 s request, as a relay sharing the outbox sees it
    later = SqliteOutbox(outbox_path, clock=lambda: time.time() + 100)
    relay = Relay(later, [secret], transport=httpx.MockTransport(fast))
    assert (await relay.run_once()).claimed == 0
    gate.set()
    assert (await task).delivered
    await relay.aclose()
    await pipe.aclose()
    assert agent_posts == ["e3"] and relay_posts == []
    later.close()
    ob.close()


async def test_a_relay_extends_its_lease_for_a_rows_long_timeout(
    outbox_path: Path, secret: str
) -> None:
    gate = asyncio.Event()
    posts: list[str] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        posts.append(request.headers["webhook-id"])
        await gate.wait()
        return httpx.Response(200)

    ob = SqliteOutbox(outbox_path)
    await stored_by_agent(Webhook("https://backend.test/h", secret, timeout=120), ob, "e4", b"{}")
    first = Relay(ob, [secret], timeout=2, transport=httpx.MockTransport(slow))
    run = asyncio.create_task(first.run_once())
    while not posts:  # noqa: ASYNC110 - polling what the handler recorded
        await asyncio.sleep(0.01)
    later = SqliteOutbox(outbox_path, clock=lambda: time.time() + 100)
    second = Relay(later, [secret], timeout=2, transport=httpx.MockTransport(slow))
    assert (await second.run_once()).claimed == 0  # the first relay's lease covers 120 s
    gate.set()
    assert (await run).delivered == 1
    for r in (first, second):
        await r.aclose()
    assert posts == ["e4"]
    later.close()
    ob.close()
