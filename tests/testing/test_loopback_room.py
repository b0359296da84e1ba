"""LoopbackServer / LoopbackRoom: membership, events, data, attributes, disconnect reasons."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from livekit import rtc
from livekit.protocol import models

from endcall.testing import LoopbackRoom, LoopbackServer

AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT


class Recorder:
    """Records every event of interest emitted by a room, in order."""

    EVENTS = (
        "participant_connected",
        "participant_disconnected",
        "participant_attributes_changed",
        "participant_metadata_changed",
        "participant_name_changed",
        "data_received",
        "connection_state_changed",
        "disconnected",
        "track_published",
        "track_unpublished",
        "local_track_published",
        "local_track_subscribed",
    )

    def __init__(self, room: LoopbackRoom) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        for name in self.EVENTS:
            room.on(name, lambda *args, name=name: self.events.append((name, args)))

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for event, args in self.events if event == name]


@pytest.fixture
def hub() -> LoopbackServer:
    return LoopbackServer()


async def test_rooms_are_rtc_rooms_with_sdk_participant_types(hub: LoopbackServer) -> None:
    agent = await hub.connect("r", "agent-1", kind=AGENT, attributes={"a": "1"}, name="Agent")
    cand = await hub.connect("r", "cand-1", metadata="m")
    await hub.settle()
    assert isinstance(agent, rtc.Room)
    assert isinstance(agent.local_participant, rtc.LocalParticipant)
    assert agent.name == "r" and agent.isconnected()
    assert agent.connection_state == rtc.ConnectionState.CONN_CONNECTED
    remote = cand.remote_participants["agent-1"]
    assert isinstance(remote, rtc.RemoteParticipant)
    assert remote.kind == AGENT and remote.attributes == {"a": "1"} and remote.name == "Agent"
    assert agent.remote_participants["cand-1"].metadata == "m"
    assert agent.remote_participants["cand-1"].kind == (
        rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
    )
    assert agent.local_participant.identity == "agent-1"
    assert remote.sid == agent.local_participant.sid
    assert await agent.sid == await cand.sid


async def test_events_are_asynchronous_and_ordered(hub: LoopbackServer) -> None:
    agent = await hub.connect("r", "agent-1", kind=AGENT)
    rec = Recorder(agent)
    cand = await hub.connect("r", "cand-1")
    await cand.local_participant.publish_data(b"one")
    await cand.local_participant.publish_data(b"two")
    # nothing is emitted inside the caller's call
    assert rec.events == []
    assert "cand-1" not in agent.remote_participants
    await hub.settle()
    assert [e for e, _ in rec.events] == [
        "participant_connected",
        "data_received",
        "data_received",
    ]
    assert [p.data for (p,) in rec.named("data_received")] == [b"one", b"two"]


async def test_data_topics_destinations_and_server_packets(hub: LoopbackServer) -> None:
    agent = await hub.connect("r", "agent-1", kind=AGENT)
    c1 = await hub.connect("r", "cand-1")
    c2 = await hub.connect("r", "cand-2")
    recs = {name: Recorder(room) for name, room in (("a", agent), ("c1", c1), ("c2", c2))}
    await c1.local_participant.publish_data(
        "hello", topic="endcall", destination_identities=["agent-1"]
    )
    await c1.local_participant.publish_data(b"lossy", reliable=False)
    await hub.send_data("r", b"srv", topic="endcall", destination_identities=["agent-1"])
    await hub.settle()
    got = [p for (p,) in recs["a"].named("data_received")]
    assert [(p.data, p.topic, p.kind) for p in got] == [
        (b"hello", "endcall", rtc.DataPacketKind.KIND_RELIABLE),
        (b"lossy", "", rtc.DataPacketKind.KIND_LOSSY),
        (b"srv", "endcall", rtc.DataPacketKind.KIND_RELIABLE),
    ]
    assert isinstance(got[0].participant, rtc.RemoteParticipant)
    assert got[0].participant.identity == "cand-1"
    assert got[2].participant is None  # server-sent
    assert [p.data for (p,) in recs["c2"].named("data_received")] == [b"lossy"]
    assert recs["c1"].named("data_received") == []  # never to the sender


async def test_data_filter_drops_packets(hub: LoopbackServer) -> None:
    agent = await hub.connect("r", "agent-1", kind=AGENT)
    cand = await hub.connect("r", "cand-1")
    rec = Recorder(agent)
    hub.set_data_filter(lambda sender, recipient, data, topic: topic != "drop")
    await cand.local_participant.publish_data(b"x", topic="drop")
    await cand.local_participant.publish_data(b"y", topic="keep")
    await hub.settle()
    assert [p.data for (p,) in rec.named("data_received")] == [b"y"]


async def test_set_attributes_updates_every_view_and_emits_everywhere(
    hub: LoopbackServer,
) -> None:
    agent = await hub.connect("r", "agent-1", kind=AGENT, attributes={"keep": "k"})
    cand = await hub.connect("r", "cand-1")
    await hub.settle()
    rec_a, rec_c = Recorder(agent), Recorder(cand)
    await agent.local_participant.set_attributes({"endcall.state": "active"})
    await hub.settle()
    (changed, participant) = rec_a.named("participant_attributes_changed")[0]
    assert changed == {"endcall.state": "active"}
    assert participant is agent.local_participant  # the local room emits too
    (changed, participant) = rec_c.named("participant_attributes_changed")[0]
    assert changed == {"endcall.state": "active"}
    assert participant is cand.remote_participants["agent-1"]
    expected = {"keep": "k", "endcall.state": "active"}
    assert agent.local_participant.attributes == expected
    assert cand.remote_participants["agent-1"].attributes == expected
    assert dict(hub.get_participant("r", "agent-1").attributes) == expected
    # no change -> no event; "" deletes a key
    await agent.local_participant.set_attributes({"endcall.state": "active"})
    await agent.local_participant.set_attributes({"keep": ""})
    await hub.settle()
    assert [c for c, _ in rec_c.named("participant_attributes_changed")] == [
        {"endcall.state": "active"},
        {"keep": ""},
    ]
    assert cand.remote_participants["agent-1"].attributes == {"endcall.state": "active"}


async def test_metadata_name_and_server_update(hub: LoopbackServer) -> None:
    agent = await hub.connect("r", "agent-1", kind=AGENT)
    cand = await hub.connect("r", "cand-1")
    await hub.settle()
    rec = Recorder(cand)
    await agent.local_participant.set_metadata("meta")
    await agent.local_participant.set_name("Interviewer")
    info = await hub.update_participant("r", "agent-1", attributes={"endcall.request": "{}"})
    await hub.settle()
    assert isinstance(info, models.ParticipantInfo)
    assert info.kind == models.ParticipantInfo.Kind.AGENT
    assert dict(info.attributes) == {"endcall.request": "{}"}
    assert info.metadata == "meta" and info.name == "Interviewer"
    remote = cand.remote_participants["agent-1"]
    assert rec.named("participant_metadata_changed") == [(remote, "", "meta")]
    assert rec.named("participant_name_changed") == [(remote, "", "Interviewer")]
    assert rec.named("participant_attributes_changed") == [({"endcall.request": "{}"}, remote)]


async def test_without_permission_updates_change_nothing(hub: LoopbackServer) -> None:
    agent = await hub.connect("r", "agent-1", kind=AGENT, can_update_metadata=False)
    cand = await hub.connect("r", "cand-1")
    rec = Recorder(cand)
    await agent.local_participant.set_attributes({"x": "1"})  # does not raise, like the SDK
    await hub.settle()
    assert rec.named("participant_attributes_changed") == []
    assert dict(hub.get_participant("r", "agent-1").attributes) == {}


async def test_server_api_listing_and_lookup(hub: LoopbackServer) -> None:
    await hub.connect("r", "agent-1", kind=AGENT)
    await hub.connect("r", "cand-1")
    assert hub.rooms() == ["r"] and hub.room_exists("r") and not hub.room_exists("x")
    infos = hub.list_participants("r")
    assert [(i.identity, i.kind) for i in infos] == [
        ("agent-1", models.ParticipantInfo.Kind.AGENT),
        ("cand-1", models.ParticipantInfo.Kind.STANDARD),
    ]
    assert hub.list_participants("nope") == []
    with pytest.raises(LookupError):
        hub.get_participant("r", "ghost")
    with pytest.raises(LookupError):
        hub.get_participant("nope", "agent-1")
    with pytest.raises(LookupError):
        await hub.update_participant("r", "ghost", attributes={"a": "b"})
    with pytest.raises(LookupError):
        await hub.send_data("nope", b"x")
    with pytest.raises(LookupError):
        await hub.delete_room("nope")


async def test_client_disconnect(hub: LoopbackServer) -> None:
    agent = await hub.connect("r", "agent-1", kind=AGENT)
    cand = await hub.connect("r", "cand-1")
    await hub.settle()
    rec_a, rec_c = Recorder(agent), Recorder(cand)
    await cand.disconnect()
    # the leaver's own events are emitted before disconnect() returns, as in the SDK
    assert rec_c.named("disconnected") == [(rtc.DisconnectReason.CLIENT_INITIATED,)]
    assert not cand.isconnected()
    assert cand.local_participant.disconnect_reason == rtc.DisconnectReason.CLIENT_INITIATED
    await hub.settle()
    ((left,),) = rec_a.named("participant_disconnected")
    assert left.identity == "cand-1"
    assert left.disconnect_reason == rtc.DisconnectReason.CLIENT_INITIATED
    assert "cand-1" not in agent.remote_participants
    assert [i.identity for i in hub.list_participants("r")] == ["agent-1"]
    await cand.disconnect()  # idempotent


async def test_delete_room_disconnects_everyone(hub: LoopbackServer) -> None:
    agent = await hub.connect("r", "agent-1", kind=AGENT)
    cand = await hub.connect("r", "cand-1")
    await hub.settle()
    rec_a, rec_c = Recorder(agent), Recorder(cand)
    await hub.delete_room("r")
    await hub.settle()
    for rec, room in ((rec_a, agent), (rec_c, cand)):
        assert rec.named("connection_state_changed") == [(rtc.ConnectionState.CONN_DISCONNECTED,)]
        assert rec.named("disconnected") == [(rtc.DisconnectReason.ROOM_DELETED,)]
        assert rec.named("participant_disconnected") == []
        assert not room.isconnected()
    assert not hub.room_exists("r") and hub.list_participants("r") == []


async def test_remove_participant(hub: LoopbackServer) -> None:
    agent = await hub.connect("r", "agent-1", kind=AGENT)
    cand = await hub.connect("r", "cand-1")
    await hub.settle()
    rec_a, rec_c = Recorder(agent), Recorder(cand)
    await hub.remove_participant("r", "cand-1")
    await hub.settle()
    assert rec_c.named("disconnected") == [(rtc.DisconnectReason.PARTICIPANT_REMOVED,)]
    ((left,),) = rec_a.named("participant_disconnected")
    assert left.disconnect_reason == rtc.DisconnectReason.PARTICIPANT_REMOVED


async def test_dropped_connection_and_duplicate_identity(hub: LoopbackServer) -> None:
    agent = await hub.connect("r", "agent-1", kind=AGENT)
    cand = await hub.connect("r", "cand-1")
    await hub.settle()
    rec_a, rec_c = Recorder(agent), Recorder(cand)
    await hub.drop_connection("r", "cand-1")
    await hub.settle()
    ((left,),) = rec_a.named("participant_disconnected")
    assert left.disconnect_reason == rtc.DisconnectReason.SIGNAL_CLOSE
    assert rec_c.events == [] and not cand.isconnected()

    first = await hub.connect("r", "cand-2")
    rec_first = Recorder(first)
    second = await hub.connect("r", "cand-2")
    await hub.settle()
    assert rec_first.named("disconnected") == [(rtc.DisconnectReason.DUPLICATE_IDENTITY,)]
    assert second.isconnected() and not first.isconnected()
    assert agent.remote_participants["cand-2"].sid == second.local_participant.sid


async def test_publish_track_is_announced_and_subscribed(hub: LoopbackServer) -> None:
    agent = await hub.connect("r", "agent-1", kind=AGENT)
    rec_a = Recorder(agent)
    source = rtc.AudioSource(24000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("roomio_audio", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    publication = await agent.local_participant.publish_track(track, options)
    assert publication.sid in agent.local_participant.track_publications
    # nobody else yet: no subscription
    await hub.settle()
    assert not publication._first_subscription.done()
    cand = await hub.connect("r", "cand-1")
    await asyncio.wait_for(publication.wait_for_subscription(), 2)
    await hub.settle()
    remote_pubs = cand.remote_participants["agent-1"].track_publications
    assert [p.name for p in remote_pubs.values()] == ["roomio_audio"]
    assert [e for e, _ in rec_a.events if "track" in e] == [
        "local_track_published",
        "local_track_subscribed",
    ]
    rec_c = Recorder(cand)
    await agent.local_participant.unpublish_track(publication.sid)
    await hub.settle()
    assert cand.remote_participants["agent-1"].track_publications == {}
    ((unpublished, owner),) = rec_c.named("track_unpublished")
    assert unpublished.sid == publication.sid and owner.identity == "agent-1"
    await source.aclose()


async def test_text_and_byte_streams(hub: LoopbackServer) -> None:
    agent = await hub.connect("r", "agent-1", kind=AGENT)
    cand = await hub.connect("r", "cand-1")
    received: asyncio.Queue[tuple[str, str, dict[str, str]]] = asyncio.Queue()

    def on_text(reader: rtc.TextStreamReader, identity: str) -> None:
        async def read() -> None:
            text = await reader.read_all()
            received.put_nowait((identity, text, dict(reader.info.attributes or {})))

        asyncio.get_running_loop().create_task(read())

    def on_bytes(reader: rtc.ByteStreamReader, identity: str) -> None:
        async def read() -> None:
            data = b"".join([chunk async for chunk in reader])
            received.put_nowait((identity, data.decode(), {"name": reader.info.name}))

        asyncio.get_running_loop().create_task(read())

    cand.register_text_stream_handler("lk.transcription", on_text)
    cand.register_byte_stream_handler("files", on_bytes)
    writer = await agent.local_participant.stream_text(
        topic="lk.transcription", attributes={"lk.transcription_final": "false"}
    )
    await writer.write("Hello, ")
    await writer.write("world")
    await writer.aclose(attributes={"lk.transcription_final": "true"})
    await agent.local_participant.send_bytes(b"blob", topic="files", name="f.bin")
    await agent.local_participant.send_text("ignored: no handler", topic="other")
    got = [await asyncio.wait_for(received.get(), 2) for _ in range(2)]
    assert ("agent-1", "Hello, world", {"lk.transcription_final": "true"}) in got
    assert ("agent-1", "blob", {"name": "f.bin"}) in got


async def test_server_shutdown() -> None:
    async with LoopbackServer() as hub:
        agent = await hub.connect("r", "agent-1", kind=AGENT)
        rec = Recorder(agent)
    assert rec.named("disconnected") == [(rtc.DisconnectReason.SERVER_SHUTDOWN,)]
    assert not agent.isconnected() and hub.rooms() == []
