"""The trust boundary on a real livekit-server (issue 19): only the customer ends their call
over the fallback server, a data packet the SDK cannot attribute is never the server, and a
room that was deleted and reused is never deleted by the old call.

An in-process agent (real AgentSession with scripted models, EndCall) in a real room, real
participants joined with livekit.rtc, the fallback server app in-process against the real
RoomService. Run inside ``scripts/in-netns`` (as ``make test`` does); never skipped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from live_support import live_token
from livekit import api, rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.testing import fake_job_context

from endcall import EndCall, EndState
from endcall.agent.own_room import delete_own_room, room_now
from endcall.reports.outbox.sqlite import SqliteOutbox
from endcall.reports.pipeline import ReportPipeline
from endcall.reports.webhook import Webhook
from endcall.server import Settings, create_app
from endcall.testing import ScriptedLLM, ScriptedSTT, TimedTTS
from endcall.testing.livekit_server import ServerInfo

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def _until(check: object, what: str, timeout: float = 15.0) -> None:
    assert callable(check)
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@dataclass
class Interview:
    room: str
    end: EndCall
    agent_room: rtc.Room
    customer: rtc.Room
    lkapi: api.LiveKitAPI
    server: httpx.AsyncClient


@pytest.fixture
async def interview(tmp_path: Path, live: ServerInfo) -> AsyncIterator[Interview]:
    room = f"endcall-trust-{uuid.uuid4().hex[:8]}"
    pipeline = ReportPipeline(
        Webhook(url="https://backend.test/end", secret=SECRET),
        SqliteOutbox(tmp_path / "outbox.db"),
        transport=httpx.MockTransport(lambda request: httpx.Response(200)),
    )
    agent_room, customer = rtc.Room(), rtc.Room()
    lkapi = api.LiveKitAPI(live.http_url, live.api_key, live.api_secret)
    settings = Settings(
        livekit_url=live.http_url,
        api_key=live.api_key,
        api_secret=live.api_secret,
        ack_timeout=8.0,
        rate_limit_identity=None,
        rate_limit_address=None,
    )
    app = create_app(settings)
    server = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://endcall")
    lifespan = app.router.lifespan_context(app)  # closes its LiveKit client at the end
    await lifespan.__aenter__()
    try:
        await agent_room.connect(live.url, live_token(live, room, "agent-1", agent=True))
        with fake_job_context(room=agent_room) as ctx:
            session: AgentSession = AgentSession(
                stt=ScriptedSTT(), llm=ScriptedLLM(), tts=TimedTTS(), vad=None
            )
            end = EndCall(ctx, session, pipeline=pipeline, delete_room=False)
            await customer.connect(live.url, live_token(live, room, "candidate"))
            await session.start(agent=Agent(instructions="test", tools=[end.tool]), room=agent_room)
            await end.start()
            # livekit-server announces a participant once its connection is up (2-3 s here)
            await _until(lambda: "candidate" in agent_room.remote_participants, "the customer")
            await _until(
                lambda: (
                    agent_room.local_participant.attributes.get("endcall.customer") == "candidate"
                ),
                "endcall.customer",
            )
            yield Interview(room, end, agent_room, customer, lkapi, server)
    finally:
        await server.aclose()
        await lifespan.__aexit__(None, None, None)
        await customer.disconnect()
        await agent_room.disconnect()
        with contextlib.suppress(Exception):
            await lkapi.room.delete_room(api.DeleteRoomRequest(room=room))
        await lkapi.aclose()


def _end_body(request_id: str, room: str) -> dict[str, object]:
    return {"type": "end.request", "v": 1, "id": request_id, "room": room}


async def test_only_the_customer_ends_the_call_through_the_fallback_server(
    interview: Interview, live: ServerInfo
) -> None:
    observer = rtc.Room()
    await observer.connect(live.url, live_token(live, interview.room, "proctor"))
    try:
        resp = await interview.server.post(
            "/v1/end",
            json=_end_body("r-proctor", interview.room),
            headers={"Authorization": f"Bearer {live_token(live, interview.room, 'proctor')}"},
        )
        assert resp.status_code == 403, resp.text
        assert resp.json()["code"] == "forbidden" and "the agent refused" in resp.json()["message"]
        assert interview.end.state is EndState.ACTIVE
        rooms = await interview.lkapi.room.list_rooms(api.ListRoomsRequest(names=[interview.room]))
        assert [r.name for r in rooms.rooms] == [interview.room]  # nothing was deleted
        resp = await interview.server.post(
            "/v1/end",
            json=_end_body("r-candidate", interview.room),
            headers={"Authorization": f"Bearer {live_token(live, interview.room, 'candidate')}"},
        )
        assert resp.status_code == 202, resp.text
        assert resp.json()["acked_by"] == "agent" and resp.json()["status"] == "accepted"
        record = await asyncio.wait_for(interview.end.wait(), 30)
        assert record.reason == "customer-ended-call"
        assert record.initiator is not None and record.initiator.identity == "candidate"
        assert record.channel == "server"
    finally:
        await observer.disconnect()


async def test_server_send_data_is_not_trusted_as_the_server(interview: Interview) -> None:
    """A server SendData reaches the agent without a sender, exactly like a packet from a
    participant the SDK does not know yet: neither ends the call, even with a server-only
    reason."""
    seen: list[rtc.DataPacket] = []
    interview.agent_room.on("data_received", seen.append)
    forged = {"type": "end.request", "v": 1, "id": "forged", "reason": "exceeded-max-duration"}
    await interview.lkapi.room.send_data(
        api.SendDataRequest(
            room=interview.room,
            data=json.dumps(forged).encode(),
            kind=api.DataPacket.Kind.RELIABLE,
            destination_identities=["agent-1"],
            topic="end_interview",
        )
    )
    await _until(lambda: bool(seen), "the server's data packet")
    assert seen[0].participant is None  # what the SDK says for the server (and strangers)
    await asyncio.sleep(0.5)
    assert interview.end.state is EndState.ACTIVE
    assert "endcall.request_id" not in interview.agent_room.local_participant.attributes


async def test_a_reused_room_name_is_never_deleted_by_the_old_call(live: ServerInfo) -> None:
    name = f"endcall-reused-{uuid.uuid4().hex[:8]}"
    lkapi = api.LiveKitAPI(live.http_url, live.api_key, live.api_secret)
    try:
        old = await lkapi.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=60))
        assert await room_now(lkapi.room, name, old.sid) == "same"
        await lkapi.room.delete_room(api.DeleteRoomRequest(room=name))
        assert await room_now(lkapi.room, name, old.sid) == "gone"
        new = await lkapi.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=60))
        assert new.sid != old.sid
        assert await room_now(lkapi.room, name, old.sid) == "replaced"

        deleted: list[str] = []

        async def delete() -> None:
            deleted.append(name)
            await lkapi.room.delete_room(api.DeleteRoomRequest(room=name))

        async def sid_of(sid: str) -> str:
            return sid

        # the old call, disconnected when its job shut down: it checks before deleting
        old_ctx = SimpleNamespace(room=SimpleNamespace(name=name, sid=sid_of(old.sid)), api=lkapi)
        outcome = await delete_own_room(
            old_ctx, connected=False, disconnect_reason=1, delete=delete
        )
        assert outcome == "replaced" and deleted == []
        listed = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[name]))
        assert [r.sid for r in listed.rooms] == [new.sid]
        # the new call's own end path deletes its room
        new_ctx = SimpleNamespace(room=SimpleNamespace(name=name, sid=sid_of(new.sid)), api=lkapi)
        outcome = await delete_own_room(
            new_ctx, connected=False, disconnect_reason=1, delete=delete
        )
        assert outcome == "deleted" and deleted == [name]
    finally:
        with contextlib.suppress(Exception):
            await lkapi.room.delete_room(api.DeleteRoomRequest(room=name))
        await lkapi.aclose()
