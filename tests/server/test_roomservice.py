"""The RoomService Twirp double, driven by the real ``livekit.api.LiveKitAPI`` client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import pytest
from livekit import api, rtc
from livekit.protocol import models
from livekit.protocol import room as proto_room
from server_support import API_KEY, API_SECRET, ServedApp

from endcall.testing import LoopbackServer, RoomHub, RoomServiceDouble


@dataclass
class Served:
    hub: LoopbackServer
    double: RoomServiceDouble
    url: str
    lk: api.LiveKitAPI


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    hub = LoopbackServer()
    double = RoomServiceDouble(hub, api_key=API_KEY, api_secret=API_SECRET)
    app = ServedApp(double)
    url = await app.start()
    lk = api.LiveKitAPI(url, API_KEY, API_SECRET, timeout=aiohttp.ClientTimeout(total=5))
    try:
        yield Served(hub, double, url, lk)
    finally:
        await lk.aclose()
        await app.stop()


async def test_list_and_get_participants(served: Served) -> None:
    await served.hub.connect("r1", "cust")
    await served.hub.connect(
        "r1", "bot", kind=rtc.ParticipantKind.PARTICIPANT_KIND_AGENT, attributes={"a": "1"}
    )
    listed = await served.lk.room.list_participants(proto_room.ListParticipantsRequest(room="r1"))
    by_id = {p.identity: p for p in listed.participants}
    assert set(by_id) == {"cust", "bot"}
    assert by_id["bot"].kind == models.ParticipantInfo.Kind.AGENT
    assert by_id["cust"].kind == models.ParticipantInfo.Kind.STANDARD
    got = await served.lk.room.get_participant(
        proto_room.RoomParticipantIdentity(room="r1", identity="bot")
    )
    assert got.identity == "bot" and dict(got.attributes) == {"a": "1"}
    empty = await served.lk.room.list_participants(proto_room.ListParticipantsRequest(room="nope"))
    assert list(empty.participants) == []


async def test_missing_participant_and_room_are_not_found(served: Served) -> None:
    await served.hub.connect("r1", "cust")
    with pytest.raises(api.TwirpError) as err:
        await served.lk.room.get_participant(
            proto_room.RoomParticipantIdentity(room="r1", identity="ghost")
        )
    assert err.value.code == "not_found" and err.value.status == 404
    with pytest.raises(api.TwirpError) as err:
        await served.lk.room.delete_room(proto_room.DeleteRoomRequest(room="nope"))
    assert err.value.code == "not_found"
    with pytest.raises(api.TwirpError) as err:
        await served.lk.room.send_data(proto_room.SendDataRequest(room="nope", data=b"x"))
    # livekit-server 1.13 finds no node for the room: unavailable, not not_found
    assert err.value.code == "unavailable" and err.value.status == 503
    with pytest.raises(api.TwirpError) as err:
        await served.lk.room.remove_participant(
            proto_room.RoomParticipantIdentity(room="r1", identity="ghost")
        )
    assert err.value.code == "not_found"
    with pytest.raises(api.TwirpError) as err:
        await served.lk.room.update_participant(
            proto_room.UpdateParticipantRequest(room="r1", identity="ghost", metadata="m")
        )
    assert err.value.code == "not_found"


async def test_update_participant_reaches_the_participant(served: Served) -> None:
    bot = await served.hub.connect("r1", "bot", kind=rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)
    seen: list[dict[str, str]] = []
    bot.on("participant_attributes_changed", lambda changed, p: seen.append(dict(changed)))
    info = await served.lk.room.update_participant(
        proto_room.UpdateParticipantRequest(
            room="r1", identity="bot", attributes={"endcall.request": "{}", "k": "v"}
        )
    )
    assert dict(info.attributes) == {"endcall.request": "{}", "k": "v"}
    await served.lk.room.update_participant(
        proto_room.UpdateParticipantRequest(room="r1", identity="bot", attributes={"k": ""})
    )
    await served.hub.settle()
    assert seen == [{"endcall.request": "{}", "k": "v"}, {"k": ""}]
    assert dict(bot.local_participant.attributes) == {"endcall.request": "{}"}


async def test_send_data_is_a_server_packet_for_the_destination(served: Served) -> None:
    bot = await served.hub.connect("r1", "bot", kind=rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)
    cust = await served.hub.connect("r1", "cust")
    got: dict[str, list[rtc.DataPacket]] = {"bot": [], "cust": []}
    bot.on("data_received", lambda p: got["bot"].append(p))
    cust.on("data_received", lambda p: got["cust"].append(p))
    await served.lk.room.send_data(
        proto_room.SendDataRequest(
            room="r1",
            data=b"hello",
            kind=models.DataPacket.Kind.RELIABLE,
            destination_identities=["bot"],
            topic="end_interview",
        )
    )
    await served.hub.settle()
    assert got["cust"] == []
    [packet] = got["bot"]
    assert packet.data == b"hello" and packet.topic == "end_interview"
    assert packet.participant is None
    assert packet.kind == rtc.DataPacketKind.KIND_RELIABLE
    # by sid, and broadcast
    sid = served.hub.get_participant("r1", "cust").sid
    await served.lk.room.send_data(
        proto_room.SendDataRequest(room="r1", data=b"s", destination_sids=[sid])
    )
    await served.lk.room.send_data(proto_room.SendDataRequest(room="r1", data=b"all"))
    await served.hub.settle()
    assert [p.data for p in got["cust"]] == [b"s", b"all"]
    assert [p.data for p in got["bot"]] == [b"hello", b"all"]


async def test_delete_room_disconnects_everyone(served: Served) -> None:
    cust = await served.hub.connect("r1", "cust")
    reasons: list[int] = []
    cust.on("disconnected", lambda reason: reasons.append(reason))
    await served.lk.room.delete_room(proto_room.DeleteRoomRequest(room="r1"))
    await served.hub.settle()
    assert not served.hub.room_exists("r1")
    assert reasons == [rtc.DisconnectReason.ROOM_DELETED]
    assert served.double.touched_rooms() == {"r1"}


async def test_list_rooms(served: Served) -> None:
    await served.hub.connect("r1", "a")
    await served.hub.connect("r2", "b")
    await served.hub.connect("r2", "c")
    some = await served.lk.room.list_rooms(proto_room.ListRoomsRequest(names=["r2", "zz"]))
    assert [(r.name, r.num_participants) for r in some.rooms] == [("r2", 2)]
    every = await served.lk.room.list_rooms(proto_room.ListRoomsRequest())
    assert sorted(r.name for r in every.rooms) == ["r1", "r2"]


async def test_wrong_secret_is_unauthenticated(served: Served) -> None:
    await served.hub.connect("r1", "a")
    async with api.LiveKitAPI(served.url, API_KEY, "w" * 40) as bad:
        with pytest.raises(api.TwirpError) as err:
            await bad.room.list_participants(proto_room.ListParticipantsRequest(room="r1"))
    assert err.value.code == "unauthenticated" and err.value.status == 401
    async with api.LiveKitAPI(served.url, "APIother", API_SECRET) as bad:
        with pytest.raises(api.TwirpError) as err:
            await bad.room.delete_room(proto_room.DeleteRoomRequest(room="r1"))
    assert err.value.code == "unauthenticated"
    assert served.hub.room_exists("r1")
    assert served.double.touched_rooms() == set()


async def test_grants_are_checked(served: Served) -> None:
    await served.hub.connect("r1", "a")
    other_room = api.AccessToken(API_KEY, API_SECRET).with_grants(
        api.VideoGrants(room_admin=True, room="r2")
    )
    joiner = (
        api.AccessToken(API_KEY, API_SECRET)
        .with_grants(api.VideoGrants(room_join=True, room="r1"))
        .with_identity("x")
    )
    for token in (other_room.to_jwt(), joiner.to_jwt()):
        async with api.LiveKitAPI.with_token(token, served.url) as lk:
            with pytest.raises(api.TwirpError) as err:
                await lk.room.update_participant(
                    proto_room.UpdateParticipantRequest(room="r1", identity="a", metadata="m")
                )
            assert err.value.code == "permission_denied" and err.value.status == 403
            with pytest.raises(api.TwirpError) as err:
                await lk.room.delete_room(proto_room.DeleteRoomRequest(room="r1"))
            assert err.value.code == "permission_denied"
    assert served.hub.room_exists("r1")
    assert served.double.touched_rooms() == set()
    assert [c.error for c in served.double.calls] == ["permission_denied"] * 4


async def test_twirp_errors_on_the_wire(served: Served) -> None:
    async with httpx.AsyncClient() as client:
        base = served.url + "/twirp/livekit.RoomService/"
        resp = await client.post(
            base + "Nope", content=b"", headers={"content-type": "application/protobuf"}
        )
        assert resp.status_code == 404 and resp.json()["code"] == "bad_route"
        resp = await client.post(
            base + "ListParticipants", content=b"x", headers={"content-type": "text/plain"}
        )
        assert resp.status_code == 404 and resp.json()["code"] == "bad_route"
        resp = await client.post(
            base + "ListParticipants",
            content=b"\xff\xff\xff",
            headers={"content-type": "application/protobuf"},
        )
        assert resp.status_code == 400 and resp.json()["code"] == "malformed"
        resp = await client.post(
            base + "ListParticipants", content=b"", headers={"content-type": "application/protobuf"}
        )
        assert resp.status_code == 401 and resp.json()["code"] == "unauthenticated"
        assert set(resp.json()) == {"code", "msg"}


async def test_twirp_json_encoding(served: Served) -> None:
    await served.hub.connect("r1", "a")
    token = (
        api.AccessToken(API_KEY, API_SECRET)
        .with_grants(api.VideoGrants(room_admin=True, room="r1"))
        .to_jwt()
    )
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            served.url + "/twirp/livekit.RoomService/ListParticipants",
            json={"room": "r1"},
            headers={"authorization": f"Bearer {token}"},
        )
    assert resp.status_code == 200
    assert [p["identity"] for p in resp.json()["participants"]] == ["a"]


async def test_fault_injection(served: Served) -> None:
    await served.hub.connect("r1", "a")
    served.double.fail("ListParticipants", "unavailable", times=1)
    with pytest.raises(api.TwirpError) as err:
        await served.lk.room.list_participants(proto_room.ListParticipantsRequest(room="r1"))
    assert err.value.status == 503 and err.value.code == "unavailable"
    ok = await served.lk.room.list_participants(proto_room.ListParticipantsRequest(room="r1"))
    assert len(ok.participants) == 1
    served.double.fail(code="internal")
    with pytest.raises(api.TwirpError) as err:
        await served.lk.room.delete_room(proto_room.DeleteRoomRequest(room="r1"))
    assert err.value.status == 500
    served.double.heal()
    await served.lk.room.delete_room(proto_room.DeleteRoomRequest(room="r1"))
    with pytest.raises(ValueError):
        served.double.fail(code="nonsense")


async def test_delay(served: Served) -> None:
    served.double.delay = 0.2
    loop = asyncio.get_running_loop()
    start = loop.time()
    await served.lk.room.list_participants(proto_room.ListParticipantsRequest(room="r1"))
    assert loop.time() - start >= 0.2


@dataclass
class MinimalHub:
    """The smallest thing that satisfies ``RoomHub``: one room, no participants' sessions."""

    rooms: dict[str, dict[str, models.ParticipantInfo]] = field(default_factory=dict)
    sent: list[tuple[str, bytes, Any, list[str], str | None]] = field(default_factory=list)

    def list_participants(self, room: str) -> list[models.ParticipantInfo]:
        return list(self.rooms.get(room, {}).values())

    def get_participant(self, room: str, identity: str) -> models.ParticipantInfo:
        return self.rooms[room][identity]

    async def update_participant(
        self,
        room: str,
        identity: str,
        *,
        attributes: Mapping[str, str] | None = None,
        metadata: str | None = None,
        name: str | None = None,
    ) -> models.ParticipantInfo:
        info = self.rooms[room][identity]
        info.attributes.update(attributes or {})
        return info

    async def send_data(
        self,
        room: str,
        data: bytes,
        *,
        kind: Any = None,
        destination_identities: Iterable[str] = (),
        topic: str | None = None,
    ) -> None:
        if room not in self.rooms:
            raise LookupError(room)
        self.sent.append((room, data, kind, list(destination_identities), topic))

    async def delete_room(self, room: str) -> None:
        del self.rooms[room]

    def room_exists(self, name: str) -> bool:
        return name in self.rooms


async def test_works_with_any_room_hub() -> None:
    hub = MinimalHub({"r": {"p": models.ParticipantInfo(identity="p", sid="PA_1")}})
    typed: RoomHub = hub
    double = RoomServiceDouble(typed, api_key=API_KEY, api_secret=API_SECRET)
    app = ServedApp(double)
    url = await app.start()
    try:
        async with api.LiveKitAPI(url, API_KEY, API_SECRET) as lk:
            await lk.room.update_participant(
                proto_room.UpdateParticipantRequest(room="r", identity="p", attributes={"x": "1"})
            )
            await lk.room.send_data(
                proto_room.SendDataRequest(room="r", data=b"d", destination_sids=["PA_1"])
            )
            listed = await lk.room.list_participants(proto_room.ListParticipantsRequest(room="r"))
            await lk.room.delete_room(proto_room.DeleteRoomRequest(room="r"))
    finally:
        await app.stop()
    assert dict(listed.participants[0].attributes) == {"x": "1"}
    assert hub.sent == [("r", b"d", rtc.DataPacketKind.KIND_RELIABLE, ["p"], None)]
    assert hub.rooms == {}
