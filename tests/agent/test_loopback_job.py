"""`LoopbackJob` runs an entrypoint under livekit-agents' own job runner: a connection made
beforehand, `ctx.shutdown` reasons, `on_session_end`, `ctx.delete_room`."""

from __future__ import annotations

import asyncio

import pytest
from livekit import rtc
from livekit.agents import JobContext

from endcall.testing import LoopbackServer
from endcall.testing.agentjob import LoopbackJob

AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT


async def test_runs_on_a_connection_made_beforehand() -> None:
    hub = LoopbackServer()
    room = await hub.connect("r1", "agent-7", kind=AGENT)
    await hub.connect("r1", "cust")
    seen: list[tuple[str, list[str], str]] = []
    ended: list[str] = []

    async def entrypoint(ctx: JobContext) -> None:
        others = sorted(ctx.room.remote_participants)
        seen.append((ctx.room.local_participant.identity, others, ctx.job.agent_name))
        await ctx.delete_room()
        ctx.shutdown("all done")

    async def on_session_end(ctx: JobContext) -> None:
        ended.append(ctx.room.name)

    job = await LoopbackJob.start(
        hub, "r1", entrypoint, room=room, agent_name="n1", on_session_end=on_session_end
    )
    await job.finished(timeout=30)
    assert job.agent_identity == "agent-7"
    assert job.room is room and job.ctx.room is room
    assert seen == [("agent-7", ["cust"], "n1")]
    assert job.shutdown_reasons == ["all done"]
    assert job.deleted_rooms == ["r1"]
    assert ended == ["r1"]
    assert not room.isconnected()


async def test_refuses_a_connection_to_another_room() -> None:
    hub = LoopbackServer()
    room = await hub.connect("r2", "agent", kind=AGENT)

    async def entrypoint(ctx: JobContext) -> None:
        await asyncio.sleep(0)

    with pytest.raises(ValueError, match="'r2', not 'r1'"):
        await LoopbackJob.start(hub, "r1", entrypoint, room=room)
