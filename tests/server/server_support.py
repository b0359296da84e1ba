"""Helpers for the fallback server tests: real uvicorn servers on 127.0.0.1, the loopback hub,
the Twirp RoomService double, a small in-test agent, and token helpers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import uvicorn
from livekit import api, rtc

from endcall.protocol import (
    ATTR_END_ID,
    ATTR_ERROR,
    ATTR_REASON,
    ATTR_REQUEST,
    ATTR_REQUEST_ID,
    ATTR_STATE,
    DEFAULT_METHOD,
    EndRequest,
    ProtocolError,
    encode_error,
    parse_request,
)
from endcall.server import Settings
from endcall.testing import LoopbackRoom, LoopbackServer, RoomServiceDouble

API_KEY = "APItestkey"
API_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
ROOM = "room-1"
CUSTOMER = "candidate-42"
AGENT = "agent-1"


class _Server(uvicorn.Server):
    async def main_loop(self) -> None:
        # uvicorn checks should_exit every 0.1 s; tests stop servers often, so check sooner
        while not await self.on_tick(0):  # noqa: ASYNC110 (uvicorn's own loop shape)
            await asyncio.sleep(0.01)


class ServedApp:
    """An ASGI app on uvicorn at 127.0.0.1 on a free port (``await start()``, ``stop()``)."""

    def __init__(self, app: Any) -> None:
        # proto IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (as uvicorn.run)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> str:
        self._task = asyncio.get_running_loop().create_task(self._server.serve([self._sock]))
        for _ in range(500):
            if self._server.started or self._task.done():
                break
            await asyncio.sleep(0.005)
        if self._task.done():
            self._task.result()
        assert self._server.started, "uvicorn did not start"
        return self.url

    def request_stop(self) -> None:
        self._server.should_exit = True

    async def stop(self) -> None:
        self.request_stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=10)
        self._sock.close()


@contextlib.asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """Run ``app`` on uvicorn at 127.0.0.1 on a free port; yields its base URL."""
    served = ServedApp(app)
    try:
        yield await served.start()
    finally:
        await served.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def livekit_token(
    identity: str = CUSTOMER,
    room: str = ROOM,
    *,
    secret: str = API_SECRET,
    key: str = API_KEY,
    ttl: float = 600,
    room_join: bool = True,
) -> str:
    grants = api.VideoGrants(room_join=room_join, room=room)
    return (
        api.AccessToken(key, secret)
        .with_identity(identity)
        .with_grants(grants)
        .with_ttl(datetime.timedelta(seconds=ttl))
        .to_jwt()
    )


def end_body(request_id: str | None = None, room: Any = ROOM, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "end.request",
        "v": 1,
        "id": request_id or f"r_{uuid.uuid4().hex[:12]}",
        "room": room,
    }
    body.update(fields)
    return body


AgentMode = Literal["ack", "never", "ack_late", "refuse"]


@dataclass
class FakeAgent:
    """An in-test agent: listens on the server channel (the ``endcall.request`` attribute; a
    server data packet is recorded as ``data``, which the server must never send) and answers
    through its attributes like ``EndCall`` does: ``refuse`` writes an end.error to
    ``endcall.error``."""

    room: LoopbackRoom
    mode: AgentMode = "ack"
    method: str = DEFAULT_METHOD
    delay: float = 0.0
    received: list[tuple[str, EndRequest]] = field(default_factory=list)
    errors: list[ProtocolError] = field(default_factory=list)
    end_id: str | None = None
    reason: str | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self) -> None:
        self.room.on("data_received", self._on_data)
        self.room.on("participant_attributes_changed", self._on_attributes)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.participant is None and packet.topic == self.method:
            self._handle("data", packet.data)

    def _on_attributes(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        if participant.identity == self.room.local_participant.identity and changed.get(
            ATTR_REQUEST
        ):
            self._handle("attribute", changed[ATTR_REQUEST].encode())

    def _handle(self, channel: str, raw: bytes) -> None:
        try:
            request = parse_request(raw, origin="server")
        except ProtocolError as exc:
            self.errors.append(exc)
            return
        self.received.append((channel, request))
        self.arrived.set()
        if self.mode == "never":
            return
        answer = self._refuse(request) if self.mode == "refuse" else self._answer(request)
        task = asyncio.get_running_loop().create_task(answer)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refuse(self, request: EndRequest) -> None:
        error = ProtocolError(
            "forbidden", "only the customer may end this call", request_id=request.id
        )
        await self.room.local_participant.set_attributes({ATTR_ERROR: encode_error(error)})

    async def _answer(self, request: EndRequest) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.end_id is None:
            self.end_id = f"e_{uuid.uuid4().hex[:10]}"
            self.reason = request.reason
        assert self.reason is not None
        await self.room.local_participant.set_attributes(
            {
                ATTR_STATE: "ending",
                ATTR_END_ID: self.end_id,
                ATTR_REASON: self.reason,
                ATTR_REQUEST_ID: request.id,
            }
        )

    def requests(self) -> list[str]:
        return sorted({r.id for _, r in self.received})


@dataclass
class Stack:
    """The fallback server against the Twirp double, the hub behind it, and helpers."""

    hub: LoopbackServer
    double: RoomServiceDouble
    url: str
    livekit_url: str
    client: httpx.AsyncClient
    settings: Settings

    async def add_agent(self, room: str = ROOM, identity: str = AGENT, **kwargs: Any) -> FakeAgent:
        lb = await self.hub.connect(room, identity, kind=rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)
        agent = FakeAgent(lb, **kwargs)
        agent.start()
        return agent

    async def add_customer(self, room: str = ROOM, identity: str = CUSTOMER) -> LoopbackRoom:
        return await self.hub.connect(room, identity)

    async def end(
        self,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        all_headers = dict(headers or {})
        if token is None:
            token = livekit_token()
        if token:
            all_headers.setdefault("Authorization", f"Bearer {token}")
        return await self.client.post(
            self.url + "/v1/end", json=body or end_body(), headers=all_headers, **kwargs
        )


StackFactory = Callable[..., Awaitable[Stack]]


__all__ = [
    "AGENT",
    "API_KEY",
    "API_SECRET",
    "CUSTOMER",
    "ROOM",
    "FakeAgent",
    "ServedApp",
    "Stack",
    "StackFactory",
    "end_body",
    "free_port",
    "livekit_token",
    "serve_app",
]
