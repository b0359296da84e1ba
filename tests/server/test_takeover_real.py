"""Early takeover on the real stack (issue 21): a real EndCall in an agent process on the same
outbox as ``endcall serve``, SIGKILLed mid-interview; livekit-server notices the agent gone and
tells ``endcall serve`` (``participant_left``), which delivers the crash draft once the agent
has been silent for ``ENDCALL_TAKEOVER_QUIET`` — long before the draft's 90 s lease runs out.
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
from livekit import rtc
from test_reconcile_real import ROOT, SECRET, World, make_world

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
    args = [
        sys.executable,
        "-c",
        _AGENT,
        world.info.url,
        world.token(room, "agent-k", agent=True),
        str(world.outbox),
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
    try:
        await world.until(
            "the crash draft",
            lambda: any(wid == end_id + ".draft" for wid, _, _ in world.receiver.got),
            timeout=LEASE + 30,
        )
        took = time.monotonic() - killed
        print(f"kill → crash draft received: {took:.1f} s")
        assert "participant_left" in world.ledger_events(room)
        (draft,) = [d for wid, _, d in world.receiver.got if wid == end_id + ".draft"]
        assert draft["complete"] is False and draft["end_id"] == end_id
        assert draft["room"]["name"] == room
        # LiveKit's word, not the lease: the 90 s lease (and the relay's poll) would come later
        assert took < LEASE - 10, f"the draft came {took:.1f} s after the kill"
    finally:
        await customer.disconnect()
