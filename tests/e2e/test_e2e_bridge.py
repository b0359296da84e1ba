"""The loopback WebSocket bridge: a browser-side participant in a LoopbackServer room.

A real uvicorn serves the bridge; the test speaks the bridge's JSON protocol with the
``websockets`` client, next to an in-process ``LoopbackRoom`` playing the agent.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from e2e_helpers import serve
from livekit import api, rtc
from websockets.asyncio.client import ClientConnection, connect

from endcall.testing import LoopbackServer
from endcall.testing.bridge import BRIDGE_PATH, bridge_app

AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT


class Browser:
    """A minimal bridge client: numbered requests, and a queue of pushed events."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seq = 0
        self.answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            msg = json.loads(frame)
            seq = msg.get("seq")
            if msg["op"] in ("ok", "error") and seq in self.answers:
                self.answers.pop(seq).set_result(msg)
            else:
                await self.events.put(msg)

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.answers[self.seq] = fut
        await self.ws.send(json.dumps({"op": op, "seq": self.seq, **fields}))
        return await asyncio.wait_for(fut, 15)

    async def event(self, op: str) -> dict[str, Any]:
        while True:
            msg = await asyncio.wait_for(self.events.get(), 10)
            if msg["op"] == op:
                return msg


@asynccontextmanager
async def bridge(hub: LoopbackServer, **kwargs: Any) -> AsyncIterator[Any]:
    async with serve(bridge_app(hub, **kwargs)) as base:
        url = base.replace("http://", "ws://") + BRIDGE_PATH

        @asynccontextmanager
        async def browser() -> AsyncIterator[Browser]:
            async with connect(url) as ws:
                b = Browser(ws)
                try:
                    yield b
                finally:
                    b.reader.cancel()

        yield browser


async def test_join_sees_the_agent_and_the_agent_sees_the_browser() -> None:
    hub = LoopbackServer()
    agent = await hub.connect("r1", "agent-1", kind=AGENT, attributes={"lk.agent.state": "idle"})
    joined: list[rtc.RemoteParticipant] = []
    agent.on("participant_connected", joined.append)
    async with bridge(hub) as browser, browser() as b:
        answer = await b.request("join", room="r1", identity="cand", kind="standard")
        await hub.settle()
    assert answer["op"] == "ok"
    assert answer["local"]["identity"] == "cand" and answer["local"]["kind"] == 0
    assert answer["room"]["name"] == "r1" and answer["room"]["sid"].startswith("RM_")
    [p] = answer["participants"]
    assert (p["identity"], p["kind"], p["attributes"]) == (
        "agent-1",
        4,
        {"lk.agent.state": "idle"},
    )
    assert [j.identity for j in joined] == ["cand"]
    assert joined[0].kind == rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD


async def test_rpc_results_and_real_error_codes() -> None:
    hub = LoopbackServer()
    agent = await hub.connect("r1", "agent-1", kind=AGENT)
    calls: list[rtc.RpcInvocationData] = []

    async def end(data: rtc.RpcInvocationData) -> str:
        calls.append(data)
        return '{"type":"end.ack"}'

    async def forbidden(data: rtc.RpcInvocationData) -> str:
        raise rtc.RpcError(4403, "only the customer may end", '{"code":"forbidden"}')

    agent.local_participant.register_rpc_method("end_interview", end)
    agent.local_participant.register_rpc_method("nope", forbidden)
    async with bridge(hub) as browser, browser() as b:
        await b.request("join", room="r1", identity="cand")
        ok = await b.request(
            "perform_rpc", destination="agent-1", method="end_interview", payload="{}"
        )
        unsupported = await b.request(
            "perform_rpc", destination="agent-1", method="missing", payload="{}"
        )
        not_found = await b.request(
            "perform_rpc", destination="ghost", method="end_interview", payload="{}"
        )
        app_error = await b.request("perform_rpc", destination="agent-1", method="nope")
        too_large = await b.request(
            "perform_rpc", destination="agent-1", method="end_interview", payload="x" * 15_361
        )
    assert ok == {"op": "ok", "seq": 2, "payload": '{"type":"end.ack"}'}
    assert calls[0].caller_identity == "cand" and calls[0].payload == "{}"
    assert (unsupported["op"], unsupported["code"]) == ("error", 1400)
    assert not_found["code"] == 1401
    assert (app_error["code"], app_error["message"], app_error["data"]) == (
        4403,
        "only the customer may end",
        '{"code":"forbidden"}',
    )
    assert too_large["code"] == 1402


async def test_rpc_response_timeout() -> None:
    hub = LoopbackServer()
    agent = await hub.connect("r1", "agent-1", kind=AGENT)

    async def slow(data: rtc.RpcInvocationData) -> str:
        await asyncio.sleep(30)
        return ""

    agent.local_participant.register_rpc_method("slow", slow)
    async with bridge(hub) as browser, browser() as b:
        await b.request("join", room="r1", identity="cand")
        answer = await b.request(
            "perform_rpc", destination="agent-1", method="slow", response_timeout_ms=1500
        )
    assert answer["code"] == 1502


async def test_data_both_ways_with_topics_and_destinations() -> None:
    hub = LoopbackServer()
    agent = await hub.connect("r1", "agent-1", kind=AGENT)
    other = await hub.connect("r1", "other")
    got: list[rtc.DataPacket] = []
    other_got: list[rtc.DataPacket] = []
    agent.on("data_received", got.append)
    other.on("data_received", other_got.append)
    async with bridge(hub) as browser, browser() as b:
        await b.request("join", room="r1", identity="cand")
        payload = base64.b64encode(b'{"type":"end.request"}').decode()
        sent = await b.request(
            "publish_data", data_b64=payload, topic="end_interview", destinations=["agent-1"]
        )
        await hub.settle()
        await agent.local_participant.publish_data(
            b"ack", topic="end_interview.ack", destination_identities=["cand"]
        )
        from_agent = await b.event("data_received")
        await hub.send_data("r1", b"srv", topic="t", destination_identities=["cand"])
        from_server = await b.event("data_received")
    assert sent["op"] == "ok"
    assert [(p.data, p.topic, p.participant.identity if p.participant else None) for p in got] == [
        (b'{"type":"end.request"}', "end_interview", "cand")
    ]
    assert other_got == []
    assert base64.b64decode(from_agent["data_b64"]) == b"ack"
    assert (from_agent["topic"], from_agent["from"]) == ("end_interview.ack", "agent-1")
    assert (from_server["from"], from_server["topic"]) == (None, "t")


async def test_attributes_both_ways() -> None:
    hub = LoopbackServer()
    agent = await hub.connect("r1", "agent-1", kind=AGENT)
    seen: list[tuple[dict[str, str], str]] = []
    agent.on("participant_attributes_changed", lambda ch, p: seen.append((dict(ch), p.identity)))
    async with bridge(hub) as browser, browser() as b:
        await b.request("join", room="r1", identity="cand")
        await b.request("set_attributes", attributes={"screen": "interview"})
        await hub.settle()
        await agent.local_participant.set_attributes({"endcall.state": "ending"})
        changed = await b.event("attributes_changed")
        while changed["identity"] != "agent-1":
            changed = await b.event("attributes_changed")
    assert ({"screen": "interview"}, "cand") in seen
    assert changed["changed"] == {"endcall.state": "ending"}
    assert changed["attributes"] == {"endcall.state": "ending"}


async def test_room_deleted_disconnects_the_browser() -> None:
    hub = LoopbackServer()
    await hub.connect("r1", "agent-1", kind=AGENT)
    async with bridge(hub) as browser, browser() as b:
        await b.request("join", room="r1", identity="cand")
        await hub.delete_room("r1")
        gone = await b.event("disconnected")
        await asyncio.wait_for(b.reader, 5)  # the bridge closes the socket
    assert (gone["reason"], gone["reason_name"]) == (5, "ROOM_DELETED")


@pytest.mark.parametrize("how", ["leave", "close"])
async def test_the_agent_sees_why_the_browser_left(how: str) -> None:
    hub = LoopbackServer()
    agent = await hub.connect("r1", "agent-1", kind=AGENT)
    left: asyncio.Queue[rtc.RemoteParticipant] = asyncio.Queue()
    agent.on("participant_disconnected", left.put_nowait)
    async with bridge(hub, abandon_after=0.2) as browser:
        async with browser() as b:
            await b.request("join", room="r1", identity="cand")
            if how == "leave":
                assert (await b.request("leave"))["op"] == "ok"
        p = await asyncio.wait_for(left.get(), 5)
    expected = (
        rtc.DisconnectReason.CLIENT_INITIATED
        if how == "leave"
        else rtc.DisconnectReason.SIGNAL_CLOSE
    )
    assert (p.identity, p.disconnect_reason) == ("cand", expected)
    assert hub.list_participants("r1")[0].identity == "agent-1"
    assert len(hub.list_participants("r1")) == 1


async def test_incoming_rpc_is_answered_by_the_browser() -> None:
    hub = LoopbackServer()
    agent = await hub.connect("r1", "agent-1", kind=AGENT)
    async with bridge(hub) as browser, browser() as b:
        await b.request("join", room="r1", identity="cand")
        await b.request("register_rpc", method="ping")
        call = asyncio.create_task(
            agent.local_participant.perform_rpc(
                destination_identity="cand", method="ping", payload="hi"
            )
        )
        req = await b.event("rpc_request")
        await b.ws.send(json.dumps({"op": "rpc_response", "id": req["id"], "payload": "pong"}))
        result = await asyncio.wait_for(call, 5)
    assert (req["caller"], req["method"], req["payload"]) == ("agent-1", "ping", "hi")
    assert result == "pong"


async def test_tokens_are_required_and_define_the_identity() -> None:
    hub = LoopbackServer()
    key, secret = "devkey", "s" * 32
    verifier = api.TokenVerifier(key, secret)
    token = (
        api.AccessToken(key, secret)
        .with_identity("cand-from-token")
        .with_grants(api.VideoGrants(room_join=True, room="r1"))
        .to_jwt()
    )
    other_room = (
        api.AccessToken(key, secret)
        .with_identity("x")
        .with_grants(api.VideoGrants(room_join=True, room="r2"))
        .to_jwt()
    )
    async with bridge(hub, token_verifier=verifier) as browser:
        async with browser() as b:
            missing = await b.request("join", room="r1", identity="cand")
        async with browser() as b:
            wrong = await b.request("join", room="r1", identity="cand", token=other_room)
        async with browser() as b:
            ok = await b.request("join", room="r1", identity="ignored", token=token)
    assert missing["op"] == "error" and "token" in missing["message"]
    assert wrong["op"] == "error"
    assert ok["op"] == "ok" and ok["local"]["identity"] == "cand-from-token"


async def test_bad_requests_get_errors_and_the_socket_keeps_working() -> None:
    hub = LoopbackServer()
    async with bridge(hub) as browser, browser() as b:
        early = await b.request("publish_data", data_b64="")
        unknown = await b.request("fly")
        bad_kind = await b.request("join", room="r1", identity="cand", kind="robot")
        await b.ws.send("{not json")
        err = await b.event("error")
        ok = await b.request("join", room="r1", identity="cand")
        bad_b64 = await b.request("publish_data", data_b64="***")
    assert early["op"] == "error" and early["message"] == "join first"
    assert unknown["op"] == "error" and bad_kind["op"] == "error"
    assert err["message"] == "not JSON"
    assert ok["op"] == "ok"
    assert bad_b64["op"] == "error" and bad_b64["code"] == 0


async def test_text_streams_reach_the_browser() -> None:
    hub = LoopbackServer()
    agent = await hub.connect("r1", "agent-1", kind=AGENT)
    async with bridge(hub) as browser, browser() as b:
        await b.request("join", room="r1", identity="cand")
        await b.request("register_text_stream", topic="lk.transcription")
        await hub.settle()
        writer = await agent.local_participant.stream_text(
            topic="lk.transcription", attributes={"lk.segment_id": "s1"}
        )
        await writer.write("Hello, ")
        await writer.write("welcome.")
        await writer.aclose()
        opened = await b.event("text_stream_open")
        chunks = [(await b.event("text_stream_chunk"))["text"] for _ in range(2)]
        closed = await b.event("text_stream_close")
    assert (opened["topic"], opened["from"]) == ("lk.transcription", "agent-1")
    assert opened["attributes"]["lk.segment_id"] == "s1"
    assert "".join(chunks) == "Hello, welcome."
    assert closed["stream_id"] == opened["stream_id"] and closed["error"] is None
