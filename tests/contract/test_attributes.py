"""Contract: participant attributes, written by the participant and by the server API."""

from __future__ import annotations

import pytest
from conftest import Backend, Peer
from livekit import api


async def trio(backend: Backend, **agent_token: object) -> tuple[str, Peer, Peer]:
    room = backend.new_room()
    agent = await backend.connect(room, "agent-1", kind="agent", **agent_token)
    customer = await backend.connect(room, "cand-1")
    await agent.events.wait("participant_connected", lambda p: p.identity == "cand-1")
    return room, agent, customer


def from_(identity: str) -> object:
    return lambda changed, participant: participant.identity == identity


async def test_token_attributes_are_seen_by_everyone(backend: Backend) -> None:
    room = backend.new_room()
    agent = await backend.connect(room, "agent-1", kind="agent", attributes={"role": "agent"})
    customer = await backend.connect(room, "cand-1", attributes={"lang": "fr"})
    assert agent.local.attributes == {"role": "agent"}
    assert customer.room.remote_participants["agent-1"].attributes == {"role": "agent"}
    (joined,) = await agent.events.wait("participant_connected")
    assert joined.identity == "cand-1" and joined.attributes == {"lang": "fr"}
    listed = await backend.participants(room)
    assert dict(listed["agent-1"].attributes) == {"role": "agent"}
    assert dict(listed["cand-1"].attributes) == {"lang": "fr"}


async def test_set_attributes_merges_and_notifies_everyone(backend: Backend) -> None:
    room, agent, customer = await trio(backend, attributes={"keep": "1"})
    await agent.local.set_attributes({"state": "ending", "n": "1"})
    changed, remote = await customer.events.wait("participant_attributes_changed", from_("agent-1"))
    assert changed == {"state": "ending", "n": "1"}
    assert remote is customer.room.remote_participants["agent-1"]
    assert remote.attributes == {"keep": "1", "state": "ending", "n": "1"}
    # the writer gets the event too, about its local participant
    own_changed, own = await agent.events.wait("participant_attributes_changed")
    assert own is agent.local and own_changed == {"state": "ending", "n": "1"}
    assert agent.local.attributes == {"keep": "1", "state": "ending", "n": "1"}

    # "" deletes a key; the change lists it with ""; unchanged keys are not listed
    await agent.local.set_attributes({"n": "", "state": "ending", "new": "x"})
    changed, remote = await customer.events.wait(
        "participant_attributes_changed", lambda c, p: "new" in c
    )
    assert changed == {"n": "", "new": "x"}
    assert remote.attributes == {"keep": "1", "state": "ending", "new": "x"}
    listed = await backend.participants(room)
    assert dict(listed["agent-1"].attributes) == {"keep": "1", "state": "ending", "new": "x"}


async def test_an_update_that_changes_nothing_emits_nothing(backend: Backend) -> None:
    _, agent, customer = await trio(backend)
    await agent.local.set_attributes({"a": "1"})
    await customer.events.wait("participant_attributes_changed", lambda c, p: c == {"a": "1"})
    await agent.local.set_attributes({"a": "1"})
    await agent.local.set_attributes({"b": "2"})  # a marker after the no-op
    await customer.events.wait("participant_attributes_changed", lambda c, p: "b" in c)
    changes = [c for c, p in customer.events.named("participant_attributes_changed")]
    assert changes == [{"a": "1"}, {"b": "2"}]


async def test_without_the_metadata_grant_set_attributes_changes_nothing(
    backend: Backend,
) -> None:
    room, agent, customer = await trio(backend, can_update_metadata=False)
    await agent.local.set_attributes({"state": "ending"})
    # a marker the customer sees after anything the agent's update would have caused
    await agent.local.publish_data(b"marker", topic="marker")
    await customer.events.wait("data_received", lambda p: p.topic == "marker")
    assert customer.events.named("participant_attributes_changed") == []
    assert customer.room.remote_participants["agent-1"].attributes == {}
    listed = await backend.participants(room)
    assert dict(listed["agent-1"].attributes) == {}


async def test_server_written_attributes_reach_everyone_and_the_participant_itself(
    backend: Backend,
) -> None:
    room, agent, customer = await trio(backend, attributes={"role": "agent"})
    info = await backend.api.room.update_participant(
        api.UpdateParticipantRequest(
            room=room, identity="agent-1", attributes={"endcall.request": "r-1"}
        )
    )
    assert info.identity == "agent-1"
    assert dict(info.attributes) == {"role": "agent", "endcall.request": "r-1"}
    # the participant sees it on itself: its local participant, with its own event
    changed, own = await agent.events.wait("participant_attributes_changed")
    assert own is agent.local
    assert changed == {"endcall.request": "r-1"}
    assert agent.local.attributes == {"role": "agent", "endcall.request": "r-1"}
    changed, remote = await customer.events.wait("participant_attributes_changed", from_("agent-1"))
    assert changed == {"endcall.request": "r-1"}
    assert remote.attributes == {"role": "agent", "endcall.request": "r-1"}

    # deleting through the API
    info = await backend.api.room.update_participant(
        api.UpdateParticipantRequest(room=room, identity="agent-1", attributes={"role": ""})
    )
    assert dict(info.attributes) == {"endcall.request": "r-1"}
    changed, own = await agent.events.wait(
        "participant_attributes_changed", lambda c, p: "role" in c
    )
    assert changed == {"role": ""} and agent.local.attributes == {"endcall.request": "r-1"}


async def test_update_participant_for_an_unknown_identity_is_not_found(backend: Backend) -> None:
    room, _, _ = await trio(backend)
    with pytest.raises(api.TwirpError) as info:
        await backend.api.room.update_participant(
            api.UpdateParticipantRequest(room=room, identity="ghost", attributes={"a": "1"})
        )
    assert info.value.code == "not_found"
    assert info.value.status == 404
