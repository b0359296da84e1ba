"""Early takeover on LiveKit's word through ``endcall serve`` (issue 21).

A crash draft left by a dead agent goes out as soon as LiveKit says the agent left its room
(``participant_left`` of an agent, or ``room_finished``) and the agent has been silent for
``ENDCALL_TAKEOVER_QUIET`` — not when its 90 s lease runs out; the relay is woken for it (its
poll here is 60 s). A live agent whose participant LiveKit reported gone keeps renewing its
draft, and its own final report goes out, never its draft.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from livekit import api
from server_support import API_KEY, API_SECRET, ServedApp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from endcall.reports.outbox import SqliteOutbox
from endcall.reports.pipeline import ReportPipeline
from endcall.reports.webhook import Webhook
from endcall.server import Settings, create_app
from endcall.testing import LoopbackServer, RoomServiceDouble

WH_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DRAFT = json.dumps({"complete": False}).encode()
FINAL = json.dumps({"complete": True}).encode()


class Fleet:
    """endcall serve (relay poll 60 s) on a SQLite outbox, the loopback LiveKit, a receiver."""

    def __init__(self, tmp: Path) -> None:
        self.outbox = tmp / "outbox.sqlite3"
        self.received: list[tuple[str, bytes, float]] = []
        self.apps: list[ServedApp] = []
        self.client = httpx.AsyncClient(timeout=10)

    async def serve(self, app: Any) -> str:
        served = ServedApp(app)
        self.apps.append(served)
        return await served.start()

    async def start(self) -> None:
        hub = LoopbackServer()
        livekit = await self.serve(RoomServiceDouble(hub, api_key=API_KEY, api_secret=API_SECRET))

        async def receive(request: Request) -> Response:
            webhook_id = request.headers["webhook-id"]
            self.received.append((webhook_id, await request.body(), time.monotonic()))
            return Response(status_code=204)

        self.receiver = await self.serve(Starlette(routes=[Route("/r", receive, methods=["POST"])]))
        settings = Settings(
            livekit_url=livekit,
            api_key=API_KEY,
            api_secret=API_SECRET,
            relay_outbox=str(self.outbox),
            relay_secrets=(WH_SECRET,),
            relay_poll=60.0,
            takeover_quiet=10.0,
        )
        self.url = await self.serve(create_app(settings))
        await asyncio.sleep(0.5)  # the relay's first pass (an empty outbox)

    async def livekit_says(
        self, event: str, room_sid: str, kind: int | None = None, identity: str = "agent-1"
    ) -> None:
        doc: dict[str, Any] = {
            "event": event,
            "id": f"EV_{event}_{room_sid}_{time.monotonic()}",
            "room": {"sid": room_sid, "name": "interview-1"},
        }
        if kind is not None:
            doc["participant"] = {"sid": f"PA_{identity}", "identity": identity, "kind": kind}
        body = json.dumps(doc).encode()
        token = api.AccessToken(API_KEY, API_SECRET)
        token.claims.sha256 = base64.b64encode(hashlib.sha256(body).digest()).decode()
        headers = {
            "content-type": "application/webhook+json",
            "authorization": token.with_ttl(timedelta(minutes=5)).to_jwt(),
        }
        resp = await self.client.post(
            self.url + "/v1/livekit/webhook", content=body, headers=headers
        )
        assert resp.status_code == 200 and resp.json()["status"] == "recorded", resp.text

    async def close(self) -> None:
        await self.client.aclose()
        for app in self.apps:
            app.request_stop()
        await asyncio.gather(*(app.stop() for app in self.apps))


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    f = Fleet(tmp_path)
    await f.start()
    try:
        yield f
    finally:
        await f.close()


def dead_agents_draft(fleet: Fleet, end_id: str, room_sid: str, silent_for: float) -> None:
    """A draft whose agent process died ``silent_for`` seconds ago (its last renewal)."""
    past = SqliteOutbox(fleet.outbox, clock=lambda: time.time() - silent_for)
    url = fleet.receiver + "/r"
    assert past.save_draft(end_id, url, DRAFT, owner="host-a:1:job", lease=90, scope=room_sid)
    past.close()


async def received(fleet: Fleet, webhook_id: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for got, _, at in fleet.received:
            if got == webhook_id:
                return at
        await asyncio.sleep(0.05)
    raise AssertionError(f"{webhook_id} not received within {timeout} s: {fleet.received}")


@pytest.mark.parametrize(
    ("event", "kind"), [("participant_left", 4), ("room_finished", None)], ids=["left", "finished"]
)
async def test_the_draft_of_a_dead_agent_goes_out_when_livekit_says_it_left(
    fleet: Fleet, event: str, kind: int | None
) -> None:
    dead_agents_draft(fleet, "e_dead", "RM_1/agent-1", silent_for=20)
    dead_agents_draft(fleet, "e_other", "RM_2/agent-1", silent_for=20)  # still there
    said = time.monotonic()
    await fleet.livekit_says(event, "RM_1", kind)  # ParticipantInfo.Kind.AGENT == 4
    at = await received(fleet, "e_dead.draft", timeout=10)
    assert at - said < 10  # not the 60 s poll, not the 90 s lease
    await asyncio.sleep(1)
    assert [r[0] for r in fleet.received] == ["e_dead.draft"]


async def test_a_participant_that_is_no_agent_changes_nothing(fleet: Fleet) -> None:
    dead_agents_draft(fleet, "e_1", "RM_1/agent-1", silent_for=20)
    await fleet.livekit_says("participant_left", "RM_1", kind=0)  # the candidate left
    await asyncio.sleep(2)
    assert fleet.received == []


async def test_another_agent_leaving_the_room_releases_only_its_own_draft(fleet: Fleet) -> None:
    """Drafts are scoped ``<room sid>/<agent identity>``: a second agent of the room (or a
    re-dispatched one) leaving says nothing about the first."""
    dead_agents_draft(fleet, "e_1", "RM_1/agent-1", silent_for=20)
    dead_agents_draft(fleet, "e_2", "RM_1/agent-2", silent_for=20)
    said = time.monotonic()
    await fleet.livekit_says("participant_left", "RM_1", kind=4, identity="agent-2")
    at = await received(fleet, "e_2.draft", timeout=10)
    assert at - said < 10
    await asyncio.sleep(1.5)
    assert [r[0] for r in fleet.received] == ["e_2.draft"]


async def test_a_recently_silent_agent_is_taken_over_after_the_quiet(fleet: Fleet) -> None:
    dead_agents_draft(fleet, "e_1", "RM_1/agent-1", silent_for=4)  # 6 s of quiet left
    said = time.monotonic()
    await fleet.livekit_says("participant_left", "RM_1", kind=4)
    at = await received(fleet, "e_1.draft", timeout=15)
    assert at - said >= 5  # not before its quiet was over


async def test_a_live_agent_keeps_its_draft_and_its_final_report_goes_out(fleet: Fleet) -> None:
    """LiveKit reported the agent gone (its signalling was cut) but the job lives: its
    heartbeat keeps the draft, and the report that goes out is the final one."""
    pipe = ReportPipeline(
        Webhook(url=fleet.receiver + "/r", secret=WH_SECRET), SqliteOutbox(fleet.outbox)
    )
    pipe._heartbeats.every = 1.0  # a live agent renews every 5 s; 1 s here to be sure
    pipe.scope("e_live", "RM_1/agent-1")
    await pipe.save_draft("e_live", DRAFT)
    await fleet.livekit_says("participant_left", "RM_1", kind=4)
    await asyncio.sleep(13)  # past the 10 s quiet
    assert fleet.received == []
    assert await pipe.store("e_live", FINAL)
    assert (await pipe.deliver("e_live")).delivered
    await pipe.aclose()
    assert [(r[0], r[1]) for r in fleet.received] == [("e_live", FINAL)]
