"""Early takeover on the real stack (issue 21): a real EndCall in an agent process, SIGKILLed
mid-interview; its crash draft is delivered once the agent has been silent for the takeover
quiet (15 s) and LiveKit says it is gone — long before the draft's 90 s lease runs out:

- fleet: on the same outbox as ``endcall serve``, which livekit-server tells
  (``participant_left``);
- single host: on an outbox only a prewarm relay (`endcall.agent.prewarm`) reads, which asks
  livekit-server's RoomService (`livekit_gone_check`).

Runs inside ``scripts/in-netns`` with the world of ``test_reconcile_real``; never skipped."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from livekit import api, rtc
from test_reconcile_real import ROOT, SECRET, World, make_world

from endcall.agent.prewarm import livekit_gone_check
from endcall.reports.relay import BackgroundRelay

#: the draft's lease: without the takeover nothing may be sent before it runs out
LEASE = 90.0


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as w:
        yield w


_AGENT = """
import asyncio, sys
import pytest
from livekit import rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.testing import fake_job_context
from endcall import EndCall
from endcall.reports.outbox.sqlite import SqliteOutbox
from endcall.reports.pipeline import ReportPipeline
from endcall.reports.webhook import Webhook
from endcall.testing import ScriptedLLM, ScriptedSTT, TimedTTS

async def main():
    url, token, outbox, hook, secret = sys.argv[1:6]
    room = rtc.Room()
    await room.connect(url, token)
    with fake_job_context(room=room) as ctx:
        ctx.job.room.sid = await room.sid
        session = AgentSession(stt=ScriptedSTT(), llm=ScriptedLLM(), tts=TimedTTS(), vad=None)
        pipeline = ReportPipeline(Webhook(url=hook, secret=secret), SqliteOutbox(outbox))
        end = EndCall(ctx, session, pipeline=pipeline, delete_room=False)
        await session.start(agent=Agent(instructions="interview", tools=[end.tool]), room=room)
        await end.start()
        await asyncio.sleep(1.5)  # the first checkpoint is written at start
        print("interviewing", end.end_id, flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_sigkilled_agents_draft_goes_out_when_livekit_says_it_left(
    world: World, tmp_path: Path
) -> None:
    room = f"take-{uuid.uuid4().hex[:8]}"
    customer = rtc.Room()
    await customer.connect(world.info.url, world.token(room, "candidate-k"))
    try:
        took = await _kill_agent_and_wait_for_its_draft(world, room, world.outbox)
    finally:
        await customer.disconnect()
    assert "participant_left" in world.ledger_events(room)
    # LiveKit's word, not the lease: the 90 s lease (and the relay's poll) would come later
    assert took < LEASE - 10, f"the draft came {took:.1f} s after the kill"


async def test_a_prewarm_relay_asks_roomservice_and_takes_a_killed_agents_draft_over(
    world: World, tmp_path: Path
) -> None:
    """No ``endcall serve`` on this outbox: the relay every job process runs
    (``endcall.prewarm``) sees the draft go silent, asks RoomService, and delivers it."""
    room = f"take-{uuid.uuid4().hex[:8]}"
    outbox = tmp_path / "host.sqlite3"
    gone = livekit_gone_check(world.info.http_url, world.info.api_key, world.info.api_secret)
    assert gone is not None
    relay = BackgroundRelay(outbox, (SECRET,), poll=300, gone=gone).start()
    customer = rtc.Room()
    await customer.connect(world.info.url, world.token(room, "candidate-k"))
    try:
        took = await _kill_agent_and_wait_for_its_draft(world, room, outbox)
        assert relay.watch is not None and relay.watch.released == 1
    finally:
        await customer.disconnect()
        await asyncio.to_thread(relay.stop)
    assert took < LEASE - 10, f"the draft came {took:.1f} s after the kill"


async def test_livekit_gone_check_answers_from_roomservice(world: World) -> None:
    """Present: the room is listed and the identity is in it. Gone: the identity left, or the
    room is no longer listed. Unreachable: it raises (the lease decides)."""
    room = f"gone-{uuid.uuid4().hex[:8]}"
    agent = rtc.Room()
    await agent.connect(world.info.url, world.token(room, "agent-here", agent=True))
    try:
        sid = await agent.sid
        gone = livekit_gone_check(world.info.http_url, world.info.api_key, world.info.api_secret)
        assert gone is not None
        asked = [f"{sid}/agent-here", f"{sid}/agent-left", "RM_unknown/agent-x", sid]
        assert list(await gone(asked)) == [f"{sid}/agent-left", "RM_unknown/agent-x"]
        lk = world.api()
        try:
            await lk.room.delete_room(api.DeleteRoomRequest(room=room))
        finally:
            await lk.aclose()
        assert list(await gone([f"{sid}/agent-here", sid])) == [f"{sid}/agent-here", sid]
    finally:
        await agent.disconnect()
    unreachable = livekit_gone_check("http://127.0.0.1:9", "key", "s" * 40)
    assert unreachable is not None
    with pytest.raises(Exception):  # noqa: B017 - any transport error: the watch logs it
        await unreachable(["RM_x/agent"])


async def _kill_agent_and_wait_for_its_draft(world: World, room: str, outbox: Path) -> float:
    """Start the agent on ``outbox``, SIGKILL it once interviewing; seconds kill → draft."""
    args = [
        sys.executable,
        "-c",
        _AGENT,
        world.info.url,
        world.token(room, "agent-k", agent=True),
        str(outbox),
        world.serve.env["ENDCALL_WEBHOOK_URL"],
        SECRET,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "py")}
    agent = await asyncio.to_thread(
        subprocess.Popen, args, stdout=subprocess.PIPE, env=env, start_new_session=True
    )
    try:
        assert agent.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(agent.stdout.readline), 60)
        assert line.startswith(b"interviewing e_"), line
        end_id = line.split()[1].decode()
    finally:
        os.killpg(agent.pid, signal.SIGKILL)  # an OOM kill of the job process
        killed = time.monotonic()
        await asyncio.to_thread(agent.wait, 10)
    await world.until(
        "the crash draft",
        lambda: any(wid == end_id + ".draft" for wid, _, _ in world.receiver.got),
        timeout=LEASE + 30,
    )
    took = time.monotonic() - killed
    print(f"kill → crash draft received: {took:.1f} s")
    (draft,) = [d for wid, _, d in world.receiver.got if wid == end_id + ".draft"]
    assert draft["complete"] is False and draft["end_id"] == end_id
    assert draft["room"]["name"] == room
    return took
