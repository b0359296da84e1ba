"""A real LiveKit server: an in-process agent (real AgentSession with scripted models, EndCall)
and a customer, both joined with livekit.rtc; the customer ends the call over RPC.

The server is the one LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET name, else a
livekit-server started here (``make livekit-server``; run inside ``scripts/in-netns``, as
``make test`` does). Never skipped: without a server it fails and says why."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path

import httpx
from live_support import live_token
from livekit import api, rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.testing import fake_job_context

from endcall import EndCall, EndState
from endcall.reports.outbox.sqlite import SqliteOutbox
from endcall.reports.pipeline import ReportPipeline
from endcall.reports.webhook import Webhook
from endcall.testing import ScriptedLLM, ScriptedSTT, TimedTTS
from endcall.testing.livekit_server import ServerInfo


async def test_live_customer_ends_over_rpc(tmp_path: Path, live: ServerInfo) -> None:
    url = live.url
    room_name = f"endcall-live-{uuid.uuid4().hex[:8]}"
    posted: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        posted.append(request)
        return httpx.Response(200)

    pipeline = ReportPipeline(
        Webhook(url="https://backend.test/end", secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        SqliteOutbox(tmp_path / "outbox.db"),
        transport=httpx.MockTransport(receiver),
    )
    agent_room, customer = rtc.Room(), rtc.Room()
    lkapi = api.LiveKitAPI(live.http_url, live.api_key, live.api_secret)
    try:
        await agent_room.connect(url, live_token(live, room_name, "agent-live", agent=True))
        with fake_job_context(room=agent_room) as ctx:
            session: AgentSession = AgentSession(
                stt=ScriptedSTT(), llm=ScriptedLLM(), tts=TimedTTS(), vad=None
            )
            end = EndCall(ctx, session, pipeline=pipeline, delete_room=False)
            await customer.connect(url, live_token(live, room_name, "customer-live"))
            await session.start(agent=Agent(instructions="test", tools=[end.tool]), room=agent_room)
            await end.start()
            # livekit-server announces a participant once its connection is up (2-3 s here):
            # until then the agent cannot tell the customer from anyone else
            for _ in range(150):
                if "customer-live" in agent_room.remote_participants:
                    break
                await asyncio.sleep(0.1)
            assert "customer-live" in agent_room.remote_participants
            await asyncio.sleep(0.5)  # the agent's attributes reach the customer
            payload = json.dumps({"type": "end.request", "v": 1, "id": "live-1"})
            raw = await customer.local_participant.perform_rpc(
                destination_identity="agent-live", method="end_interview", payload=payload
            )
            ack = json.loads(raw)
            assert ack["status"] == "accepted" and ack["id"] == "live-1"
            record = await asyncio.wait_for(end.wait(), 30)
            assert record.state is EndState.ENDED and record.reason == "customer-ended-call"
            await asyncio.wait_for(EndCall.on_session_end(ctx), 30)
            assert len(posted) == 1 and posted[0].headers["webhook-id"] == ack["end_id"]
            for _ in range(50):  # attributes reach the customer one round trip later
                agent_view = customer.remote_participants["agent-live"].attributes
                if agent_view.get("endcall.state") == "ended":
                    break
                await asyncio.sleep(0.1)
            assert agent_view.get("endcall.state") == "ended"
    finally:
        await customer.disconnect()
        await agent_room.disconnect()
        with contextlib.suppress(Exception):
            await lkapi.room.delete_room(api.DeleteRoomRequest(room=room_name))
        await lkapi.aclose()
