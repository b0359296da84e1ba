"""Every finished room is accounted for, on a real livekit-server whose own webhooks reach a
real ``endcall serve`` (a child process, restarted in one test) inside the test namespace.

The agent is an rtc participant of kind agent: in process with the real EndCall for the normal
session, in a child process that is SIGKILLed for the lost one. Never skipped: without a
server the fixture fails and says why (run inside ``scripts/in-netns``)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks
from livekit import api, rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.testing import fake_job_context
from server_support import ServedApp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from endcall import EndCall
from endcall.reports.outbox.sqlite import SqliteOutbox
from endcall.reports.pipeline import ReportPipeline
from endcall.reports.webhook import Webhook
from endcall.server.ledger import Ledger
from endcall.testing import ScriptedLLM, ScriptedSTT, TimedTTS
from endcall.testing.livekit_server import LiveKitServer, ServerInfo

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Receiver:
    """The backend: verifies every POST's signature and keeps (webhook-id, type, body)."""

    got: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        standardwebhooks.Webhook(SECRET).verify(body, dict(request.headers))
        doc = json.loads(body)
        self.got.append((request.headers["webhook-id"], doc["type"], doc))
        return Response(status_code=204)

    def of(self, kind: str, room: str) -> list[dict[str, Any]]:
        return [d for _, t, d in self.got if t == kind and d["room"]["name"] == room]


class Serve:
    """``endcall serve`` as a child process on a fixed port (so it can be restarted)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT / "py")}
        with open(self.log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "endcall.cli", "serve", "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def start(self) -> None:
        self.proc = await asyncio.to_thread(self._spawn)
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                assert self.proc.poll() is None, self.log.read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url + "/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise AssertionError("endcall serve did not start:\n" + self.log.read_text())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@dataclass
class World:
    info: ServerInfo
    serve: Serve
    receiver: Receiver
    outbox: Path

    def token(self, room: str, identity: str, *, agent: bool = False) -> str:
        tok = (
            api.AccessToken(self.info.api_key, self.info.api_secret)
            .with_identity(identity)
            .with_grants(api.VideoGrants(room_join=True, room=room, can_update_own_metadata=True))
        )
        return (tok.with_kind("agent") if agent else tok).to_jwt()

    def api(self) -> api.LiveKitAPI:
        return api.LiveKitAPI(self.info.http_url, self.info.api_key, self.info.api_secret)

    async def delete_room(self, room: str) -> None:
        lk = self.api()
        try:
            await lk.room.delete_room(api.DeleteRoomRequest(room=room))
        finally:
            await lk.aclose()

    def ledger_events(self, room: str) -> list[str]:
        ob = SqliteOutbox(self.outbox)
        try:
            ledger = Ledger(ob)
            return [e.event for r in ledger.rooms(room) for e in ledger.events(r.room_sid)]
        finally:
            ob.close()

    async def until(self, what: str, check: Any, timeout: float = 45.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; got {self.receiver.got}")


@dataclass
class Dropper:
    """Between livekit-server and ``endcall serve``: forwards LiveKit's webhooks untouched,
    except the events named in ``drop`` (answered 200 and kept, as if lost on the way)."""

    target: str
    drop: set[str]
    dropped: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        doc = json.loads(body)
        if doc.get("event") in self.drop:
            self.dropped.append(doc)
            return Response(status_code=200)
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
        async with httpx.AsyncClient() as client:
            answer = await client.post(self.target, content=body, headers=headers)
        return Response(answer.content, status_code=answer.status_code)


_FORWARDED = ("authorization", "content-type")


@contextlib.asynccontextmanager
async def make_world(
    tmp_path: Path, *, drop: set[str] | None = None, env: dict[str, str] | None = None
) -> AsyncIterator[World]:
    receiver = Receiver()
    backend = ServedApp(Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])]))
    await backend.start()
    outbox = tmp_path / "outbox.sqlite3"
    serve = Serve({}, tmp_path / "serve.log")
    hook_url = serve.url + "/v1/livekit/webhook"
    dropper: ServedApp | None = None
    if drop:
        filter_ = Dropper(hook_url, drop)
        dropper = ServedApp(Starlette(routes=[Route("/lk", filter_.handle, methods=["POST"])]))
        await dropper.start()
        hook_url = dropper.url + "/lk"
    server = LiveKitServer(webhook_urls=[hook_url], log_path=tmp_path / "livekit.log")
    info = await asyncio.to_thread(server.start)  # raises (never skips) without a server
    serve.env = {
        **info.env(),
        "ENDCALL_OUTBOX": str(outbox),
        "ENDCALL_WEBHOOK_URL": backend.url + "/hook",
        "ENDCALL_WEBHOOK_SECRET": SECRET,
        "ENDCALL_RECONCILE_AFTER": "1",
        "ENDCALL_RELAY_POLL": "0.3",
        **(env or {}),
    }
    try:
        await serve.start()
        yield World(info, serve, receiver, outbox)
    finally:
        serve.stop()
        await asyncio.to_thread(server.stop)
        if dropper is not None:
            await dropper.stop()
        await backend.stop()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as w:
        yield w


def _room() -> str:
    return f"rec-{uuid.uuid4().hex[:8]}"


async def test_normal_session_gets_its_report_and_no_missing_event(world: World) -> None:
    room = _room()
    pipeline = ReportPipeline(
        Webhook(url=world.serve.env["ENDCALL_WEBHOOK_URL"], secret=SECRET),
        SqliteOutbox(world.outbox),
    )
    agent_room, customer = rtc.Room(), rtc.Room()
    try:
        await agent_room.connect(world.info.url, world.token(room, "agent-rec", agent=True))
        with fake_job_context(room=agent_room) as ctx:
            # a fake job invents a room sid; a real job carries the room's own
            ctx.job.room.sid = await agent_room.sid
            session: AgentSession = AgentSession(
                stt=ScriptedSTT(), llm=ScriptedLLM(), tts=TimedTTS(), vad=None
            )
            end = EndCall(ctx, session, pipeline=pipeline, delete_room=False)
            await customer.connect(world.info.url, world.token(room, "customer-rec"))
            await session.start(agent=Agent(instructions="test", tools=[end.tool]), room=agent_room)
            await end.start()
            await asyncio.sleep(1.0)
            await end.end("server-ended-call", initiator="server")
            await asyncio.wait_for(EndCall.on_session_end(ctx), 30)
    finally:
        await customer.disconnect()
        await agent_room.disconnect()
    await world.delete_room(room)
    await world.until("the room to finish", lambda: "room_finished" in world.ledger_events(room))
    await world.until("the report", lambda: world.receiver.of("session.ended", room))
    await asyncio.sleep(3.0)  # three reconcile windows
    assert len(world.receiver.of("session.ended", room)) == 1
    assert world.receiver.of("session.missing", room) == []
    assert "participant_joined" in world.ledger_events(room)


async def test_room_no_agent_joined_gets_agent_never_joined(world: World) -> None:
    room = _room()
    customer = rtc.Room()
    await customer.connect(world.info.url, world.token(room, "candidate-1"))
    await asyncio.sleep(0.5)
    await customer.disconnect()
    await world.delete_room(room)
    await world.until("session.missing", lambda: world.receiver.of("session.missing", room))
    await asyncio.sleep(2.0)
    (event,) = world.receiver.of("session.missing", room)
    assert event["cause"] == "agent-never-joined" and event["agent_joined"] is False
    assert [p["identity"] for p in event["participants"]] == ["candidate-1"]
    assert event["participants"][0]["kind"] == "standard"
    ids = [i for i, t, _ in world.receiver.got if t == "session.missing"]
    assert ids == [event["room"]["sid"] + ".missing"]
    assert world.receiver.of("session.ended", room) == []


_AGENT_SCRIPT = """
import asyncio, sys
from livekit import rtc
async def main():
    room = rtc.Room()
    await room.connect(sys.argv[1], sys.argv[2])
    print("joined", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


async def test_killed_agent_without_outbox_gets_no_report_from_agent(
    world: World, tmp_path: Path
) -> None:
    room = _room()
    customer = rtc.Room()
    await customer.connect(world.info.url, world.token(room, "candidate-2"))
    agent_outbox = tmp_path / "agent-host" / "outbox.sqlite3"  # the agent's own disk
    agent_outbox.parent.mkdir()
    args = [
        sys.executable,
        "-c",
        _AGENT_SCRIPT,
        world.info.url,
        world.token(room, "agent-x", agent=True),
    ]
    env = {**os.environ, "ENDCALL_OUTBOX": str(agent_outbox)}
    agent = await asyncio.to_thread(subprocess.Popen, args, stdout=subprocess.PIPE, env=env)
    try:
        assert agent.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(agent.stdout.readline), 30)
        assert line.strip() == b"joined"
        await world.until(
            "the agent to join", lambda: "participant_joined" in world.ledger_events(room)
        )
    finally:
        agent.send_signal(signal.SIGKILL)  # before its first checkpoint
        agent.wait(10)
    if agent_outbox.exists():
        agent_outbox.unlink()  # the host vanished with its disk
    await customer.disconnect()
    await world.delete_room(room)
    await world.until("session.missing", lambda: world.receiver.of("session.missing", room))
    await asyncio.sleep(2.0)
    (event,) = world.receiver.of("session.missing", room)
    assert event["cause"] == "no-report-from-agent" and event["agent_joined"] is True
    kinds = {p["identity"]: p["kind"] for p in event["participants"]}
    assert kinds == {"candidate-2": "standard", "agent-x": "agent"}


def _livekit_token(
    info: ServerInfo, body: bytes, *, secret: str | None = None, ttl: int = 300
) -> str:
    tok = api.AccessToken(info.api_key, secret or info.api_secret)
    tok.claims.sha256 = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return tok.with_ttl(timedelta(seconds=ttl)).to_jwt()


async def test_forged_and_expired_livekit_webhooks_are_refused_and_replays_change_nothing(
    world: World,
) -> None:
    event = {
        "event": "room_finished",
        "id": "EV_forged1",
        "room": {"sid": "RM_forged", "name": "forged-room"},
        "createdAt": str(int(time.time())),
    }
    body = json.dumps(event).encode()
    url = world.serve.url + "/v1/livekit/webhook"
    headers = {"content-type": "application/webhook+json"}
    bad = {
        "no token": {},
        "wrong secret": {"authorization": _livekit_token(world.info, body, secret="x" * 40)},
        "expired": {"authorization": _livekit_token(world.info, body, ttl=-600)},
        "body changed": {"authorization": _livekit_token(world.info, body + b" ")},
    }
    async with httpx.AsyncClient() as client:
        for name, auth in bad.items():
            r = await client.post(url, content=body, headers={**headers, **auth})
            assert r.status_code == 401, name
            assert r.json()["code"] == "unauthorized", name
        assert world.ledger_events("forged-room") == []
        good = _livekit_token(world.info, body)
        r = await client.post(url, content=body, headers={**headers, "authorization": good})
        assert r.status_code == 200 and r.json()["status"] == "recorded"
        # the same token again (a replay, or the copy another replica of the URL list got):
        # the same body, so the same event — recorded once, answered as a duplicate
        r = await client.post(url, content=body, headers={**headers, "authorization": good})
        assert r.status_code == 200 and r.json()["status"] == "duplicate"
    assert world.ledger_events("forged-room") == ["room_finished"]


async def test_restarting_serve_in_the_window_neither_loses_nor_duplicates(world: World) -> None:
    world.serve.stop()
    world.serve.env["ENDCALL_RECONCILE_AFTER"] = "4"
    await world.serve.start()
    room = _room()
    customer = rtc.Room()
    await customer.connect(world.info.url, world.token(room, "candidate-3"))
    await customer.disconnect()
    await world.delete_room(room)
    await world.until("the room to finish", lambda: "room_finished" in world.ledger_events(room))
    world.serve.stop(signal.SIGKILL)  # in the window: nothing sent yet
    assert world.receiver.of("session.missing", room) == []
    await asyncio.sleep(1.0)
    await world.serve.start()
    await world.until("session.missing", lambda: world.receiver.of("session.missing", room))
    world.serve.stop()  # and once more after it was sent
    await world.serve.start()
    await asyncio.sleep(3.0)
    assert len(world.receiver.of("session.missing", room)) == 1


async def test_a_room_whose_room_finished_never_came_is_found_by_the_sweep(
    tmp_path: Path,
) -> None:
    """LiveKit's webhooks are best effort: with every room_finished lost on the way, the
    reconciler's ListRooms sweep finds the room gone and the backend still gets its
    session.missing."""
    env = {"ENDCALL_RECONCILE_SWEEP": "1"}
    async with make_world(tmp_path, drop={"room_finished"}, env=env) as world:
        room = _room()
        customer = rtc.Room()
        await customer.connect(world.info.url, world.token(room, "candidate-2"))
        await world.until("the room in the ledger", lambda: world.ledger_events(room))
        await asyncio.sleep(2.5)  # two sweeps while the room is up: it stays open
        assert world.receiver.of("session.missing", room) == []
        await customer.disconnect()
        deleted_at = time.time()
        await world.delete_room(room)
        await world.until("session.missing", lambda: world.receiver.of("session.missing", room))
        (event,) = world.receiver.of("session.missing", room)
        assert "room_finished" not in world.ledger_events(room)
        assert event["cause"] == "agent-never-joined"
        assert [p["identity"] for p in event["participants"]] == ["candidate-2"]
        assert deleted_at - 1 <= event["finished_at"] <= deleted_at + 5
        log = world.serve.log.read_text()
        assert "its room_finished webhook never came" in log
