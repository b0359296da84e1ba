"""Contract: participant kinds, disconnect reasons, room deletion, and event order."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Backend, Peer
from livekit import api, rtc
from livekit.protocol import models

Reason = rtc.DisconnectReason
AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
STANDARD = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD


async def pair(backend: Backend) -> tuple[str, Peer, Peer]:
    room = backend.new_room()
    agent = await backend.connect(room, "agent-1", kind="agent")
    customer = await backend.connect(room, "cand-1")
    await agent.events.wait("participant_connected", lambda p: p.identity == "cand-1")
    return room, agent, customer


async def test_kinds_as_seen_by_others_and_the_api(backend: Backend) -> None:
    room, agent, customer = await pair(backend)
    assert agent.local.kind == AGENT and customer.local.kind == STANDARD
    assert customer.room.remote_participants["agent-1"].kind == AGENT
    assert agent.room.remote_participants["cand-1"].kind == STANDARD
    (joined,) = await agent.events.wait("participant_connected")
    assert joined.kind == STANDARD
    listed = await backend.participants(room)
    assert listed["agent-1"].kind == models.ParticipantInfo.Kind.AGENT
    assert listed["cand-1"].kind == models.ParticipantInfo.Kind.STANDARD
    got = await backend.api.room.get_participant(
        api.RoomParticipantIdentity(room=room, identity="agent-1")
    )
    assert got.kind == models.ParticipantInfo.Kind.AGENT
    assert got.state == models.ParticipantInfo.State.ACTIVE


async def with_observer(backend: Backend) -> tuple[str, Peer, Peer, Peer]:
    """Agent, customer, then a standard observer who keeps the room open after the
    customer goes (a room with only agents left is closed by the server)."""
    room, agent, customer = await pair(backend)
    observer = await backend.connect(room, "obs-1")
    await customer.events.wait("participant_connected", lambda p: p.identity == "obs-1")
    return room, agent, customer, observer


async def test_leaving_is_client_initiated_for_the_others(backend: Backend) -> None:
    room, _, customer, observer = await with_observer(backend)
    await customer.room.disconnect()
    # the leaver's own state flips; its `disconnected` event is not guaranteed by the SDK
    # (it is skipped when the core's state change was handled first)
    assert not customer.room.isconnected()
    (state,) = customer.events.named("connection_state_changed")[-1]
    assert state == rtc.ConnectionState.CONN_DISCONNECTED
    (gone,) = await observer.events.wait("participant_disconnected")
    assert gone.identity == "cand-1"
    assert gone.disconnect_reason == Reason.CLIENT_INITIATED
    assert "cand-1" not in observer.room.remote_participants
    assert set(await backend.participants(room)) == {"agent-1", "obs-1"}


async def test_remove_participant(backend: Backend) -> None:
    room, _, customer, observer = await with_observer(backend)
    await backend.api.room.remove_participant(
        api.RoomParticipantIdentity(room=room, identity="cand-1")
    )
    (reason,) = await customer.events.wait("disconnected")
    assert reason == Reason.PARTICIPANT_REMOVED
    (gone,) = await observer.events.wait("participant_disconnected")
    assert gone.identity == "cand-1"
    assert gone.disconnect_reason == Reason.PARTICIPANT_REMOVED
    assert set(await backend.participants(room)) == {"agent-1", "obs-1"}
    with pytest.raises(api.TwirpError) as info:
        await backend.api.room.remove_participant(
            api.RoomParticipantIdentity(room=room, identity="cand-1")
        )
    assert info.value.code == "not_found"


async def test_delete_room(backend: Backend) -> None:
    room, agent, customer = await pair(backend)
    await backend.api.room.delete_room(api.DeleteRoomRequest(room=room))
    for peer in (agent, customer):
        (reason,) = await peer.events.wait("disconnected")
        assert reason == Reason.ROOM_DELETED
        assert not peer.room.isconnected()
        states = [s for (s,) in peer.events.named("connection_state_changed")]
        assert states[-1] == rtc.ConnectionState.CONN_DISCONNECTED
    # the connections end: nobody is told that the others left
    assert agent.events.named("participant_disconnected") == []
    assert customer.events.named("participant_disconnected") == []
    # the API: the room and its participants are gone
    rooms = await backend.api.room.list_rooms(api.ListRoomsRequest(names=[room]))
    assert [r.name for r in rooms.rooms] == []
    assert await backend.participants(room) == {}


async def test_deleting_a_room_that_does_not_exist(backend: Backend) -> None:
    with pytest.raises(api.TwirpError) as info:
        await backend.api.room.delete_room(api.DeleteRoomRequest(room=backend.new_room()))
    assert info.value.code == "not_found"


async def test_a_second_connection_replaces_the_first(backend: Backend) -> None:
    room, agent, customer = await pair(backend)
    again = await backend.connect(room, "cand-1")
    (reason,) = await customer.events.wait("disconnected")
    assert reason == Reason.DUPLICATE_IDENTITY
    assert again.room.isconnected()
    assert set(await backend.participants(room)) == {"agent-1", "cand-1"}
    assert "cand-1" in agent.room.remote_participants


async def test_a_newcomers_attributes_and_data_both_reach_the_agent(backend: Backend) -> None:
    """A newcomer's attributes, set right after joining, and the data it sends then both
    reach the agent, and the newcomer is announced. The order is not guaranteed on the real
    server: it may fold the attributes into ``participant_connected`` (no separate
    ``participant_attributes_changed``), and it may announce the joiner after its data has
    arrived (seen in a CI run; the double announces at once)."""
    room = backend.new_room()
    agent = await backend.connect(room, "agent-1", kind="agent")
    customer = await backend.connect(room, "cand-1")
    await customer.local.set_attributes({"ready": "1"})
    await customer.local.publish_data(b"hello", topic="t")
    await agent.events.wait("data_received", lambda p: p.topic == "t")
    await agent.events.wait("participant_connected", lambda p: p.identity == "cand-1")
    deadline = asyncio.get_running_loop().time() + 10
    while agent.room.remote_participants["cand-1"].attributes != {"ready": "1"}:
        assert asyncio.get_running_loop().time() < deadline, agent.events.log
        await asyncio.sleep(0.05)
    connected = agent.events.find("participant_connected", lambda p: p.identity == "cand-1")
    changed = agent.events.find("participant_attributes_changed")
    assert changed is None or (connected is not None and connected < changed), agent.events.log


async def test_attributes_and_data_sent_after_them_both_arrive(backend: Backend) -> None:
    """Attributes travel on the signal connection and data on the data channel: on the real
    server their order is not guaranteed (it was seen both ways), so only arrival is."""
    room, agent, customer = await pair(backend)
    # by the participant
    await agent.local.set_attributes({"endcall.state": "ending"})
    await agent.local.publish_data(b"after", topic="after")
    await customer.events.wait("data_received", lambda p: p.topic == "after")
    await customer.events.wait(
        "participant_attributes_changed", lambda c, p: c == {"endcall.state": "ending"}
    )
    # by the server API
    await backend.api.room.update_participant(
        api.UpdateParticipantRequest(room=room, identity="agent-1", attributes={"srv": "1"})
    )
    await backend.api.room.send_data(
        api.SendDataRequest(room=room, data=b"srv", kind=api.DataPacket.Kind.RELIABLE, topic="srv")
    )
    for peer in (agent, customer):
        await peer.events.wait("data_received", lambda p: p.topic == "srv")
        await peer.events.wait("participant_attributes_changed", lambda c, p: c == {"srv": "1"})
