"""Contract: data packets from the server API (SendData) and from participants."""

from __future__ import annotations

import pytest
from conftest import Backend, Peer
from livekit import api, rtc


async def room_of_three(backend: Backend) -> tuple[str, Peer, Peer, Peer]:
    room = backend.new_room()
    agent = await backend.connect(room, "agent-1", kind="agent")
    customer = await backend.connect(room, "cand-1")
    observer = await backend.connect(room, "obs-1")
    for peer, others in ((agent, ("cand-1", "obs-1")), (customer, ("obs-1",))):
        for identity in others:
            await peer.events.wait("participant_connected", lambda p, i=identity: p.identity == i)
    return room, agent, customer, observer


async def send_data(backend: Backend, room: str, data: bytes, **fields: object) -> None:
    await backend.api.room.send_data(
        api.SendDataRequest(room=room, data=data, kind=api.DataPacket.Kind.RELIABLE, **fields)  # type: ignore[arg-type]
    )


async def test_server_data_has_no_participant_and_keeps_its_topic(backend: Backend) -> None:
    room, agent, customer, observer = await room_of_three(backend)
    await send_data(backend, room, b'{"type":"end"}', topic="end_interview")
    for peer in (agent, customer, observer):
        (packet,) = await peer.events.wait("data_received")
        assert packet.data == b'{"type":"end"}'
        assert packet.topic == "end_interview"
        assert packet.participant is None
        assert packet.kind == rtc.DataPacketKind.KIND_RELIABLE


async def test_server_data_without_topic_has_an_empty_topic(backend: Backend) -> None:
    room, agent, _, _ = await room_of_three(backend)
    await send_data(backend, room, b"plain")
    (packet,) = await agent.events.wait("data_received")
    assert (packet.data, packet.topic, packet.participant) == (b"plain", "", None)


async def test_server_data_to_destination_identities_only(backend: Backend) -> None:
    room, agent, customer, observer = await room_of_three(backend)
    await send_data(backend, room, b"for the agent", topic="t", destination_identities=["agent-1"])
    await send_data(backend, room, b"for all", topic="marker")
    (packet,) = await agent.events.wait("data_received", lambda p: p.topic == "t")
    assert packet.data == b"for the agent" and packet.participant is None
    for peer in (customer, observer, agent):
        await peer.events.wait("data_received", lambda p: p.topic == "marker")
    assert [p.data for p in customer.events.data()] == [b"for all"]
    assert [p.data for p in observer.events.data()] == [b"for all"]
    assert [p.data for p in agent.events.data()] == [b"for the agent", b"for all"]


async def test_send_data_to_a_room_that_does_not_exist(backend: Backend) -> None:
    """Not ``not_found``: the server finds no node hosting the room (after ~3 s)."""
    with pytest.raises(api.TwirpError) as info:
        await send_data(backend, backend.new_room(), b"x", topic="t")
    assert (info.value.code, info.value.status) == ("unavailable", 503)


async def test_participant_data_with_topic_and_destination(backend: Backend) -> None:
    _, agent, customer, observer = await room_of_three(backend)
    await customer.local.publish_data(
        b"to agent", topic="end_interview", destination_identities=["agent-1"]
    )
    await customer.local.publish_data("to all", topic="marker", reliable=True)
    (packet,) = await agent.events.wait("data_received", lambda p: p.topic == "end_interview")
    assert packet.data == b"to agent"
    assert packet.participant is not None and packet.participant.identity == "cand-1"
    assert packet.participant is agent.room.remote_participants["cand-1"]
    assert packet.kind == rtc.DataPacketKind.KIND_RELIABLE
    (marker,) = await observer.events.wait("data_received", lambda p: p.topic == "marker")
    assert marker.data == b"to all" and marker.participant is not None
    await agent.events.wait("data_received", lambda p: p.topic == "marker")
    assert [p.data for p in observer.events.data()] == [b"to all"]
    # never to the sender itself
    await agent.local.publish_data(b"back", topic="marker2")
    await customer.events.wait("data_received", lambda p: p.topic == "marker2")
    assert customer.events.data() == [customer.events.data(topic="marker2")[0]]


async def test_participant_data_without_topic(backend: Backend) -> None:
    _, agent, customer, _ = await room_of_three(backend)
    await customer.local.publish_data(b"bare")
    (packet,) = await agent.events.wait("data_received")
    assert (packet.data, packet.topic) == (b"bare", "")
