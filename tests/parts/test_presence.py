"""`endcall.agent.customer`: the customer, their leaves and the graces that hold an end."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from livekit import rtc
from parts_fakes import make_call

from endcall.agent.customer import Presence
from endcall.agent.end_machine import EndState, Trigger


def _presence(grace: float = 0.1, shutdown_grace: float = 0.1) -> tuple[Presence, list[Trigger]]:
    call = make_call()
    submitted: list[Trigger] = []

    def submit(t: Trigger) -> None:
        submitted.append(t)
        call.machine.submit(t)

    p = Presence(call, submit, disconnect_grace=grace, shutdown_grace=shutdown_grace)
    return p, submitted


def _left(identity: str, code: int = rtc.DisconnectReason.CLIENT_INITIATED) -> object:
    return SimpleNamespace(identity=identity, disconnect_reason=code)


async def test_the_customer_is_the_participant_roomio_links() -> None:
    p, _ = _presence()
    assert p.customer is None
    assert p.refresh() == "cand" and p.customer == "cand"


async def test_a_customer_leaving_is_held_for_the_grace_then_submitted() -> None:
    p, submitted = _presence(grace=0.1)
    p.refresh()
    p.on_participant_disconnected(_left("cand"))  # type: ignore[arg-type]
    assert submitted == [] and not p.settled.is_set()
    await asyncio.wait_for(p.settled.wait(), 1.0)
    assert [t.reason for t in submitted] == ["customer-disconnected"]
    assert submitted[0].disconnect_reason == "CLIENT_INITIATED"


async def test_someone_else_leaving_is_no_end() -> None:
    p, submitted = _presence()
    p.refresh()
    p.on_participant_disconnected(_left("observer"))  # type: ignore[arg-type]
    await asyncio.sleep(0.2)
    assert submitted == []


async def test_the_room_deleted_is_held_for_the_shutdown_grace() -> None:
    p, submitted = _presence(grace=5.0, shutdown_grace=0.05)
    p.refresh()
    p.on_participant_disconnected(_left("cand", rtc.DisconnectReason.ROOM_DELETED))  # type: ignore[arg-type]
    await asyncio.wait_for(p.settled.wait(), 1.0)
    assert [t.reason for t in submitted] == ["room-deleted"]


async def test_a_system_end_while_another_is_held_is_submitted_at_once() -> None:
    p, submitted = _presence(grace=5.0)
    p.customer_left("cand", "disconnect", None)
    p.system_end("worker-shutdown", "system", "job", None)
    assert [t.reason for t in submitted] == ["worker-shutdown"]
    p.cancel_grace()


async def test_no_grace_submits_at_once() -> None:
    p, submitted = _presence(grace=0)
    p.customer_left("cand", "disconnect", None)
    assert [t.reason for t in submitted] == ["customer-disconnected"]


async def test_a_customer_back_within_the_grace_goes_on() -> None:
    p, submitted = _presence(grace=0.1)
    p.customer_left("cand", "disconnect", None)
    p.on_participant_connected(SimpleNamespace(identity="cand"))  # type: ignore[arg-type]
    assert p.settled.is_set()
    await asyncio.sleep(0.2)
    assert submitted == [] and p._call.machine.state is EndState.ACTIVE


async def test_an_accepted_end_cancels_the_grace() -> None:
    p, submitted = _presence(grace=0.1)
    p.customer_left("cand", "disconnect", None)
    p.cancel_grace()
    await asyncio.sleep(0.2)
    assert submitted == []


async def test_a_customer_linked_after_start_is_found_without_any_event() -> None:
    """The candidate joined before the agent (no participant_connected follows) and RoomIO
    links them a moment after EndCall started; they close the tab right after: their leave
    must find them named (the end is theirs, and their end request is authorized)."""
    p, submitted = _presence(grace=0.05)
    session = p._call.session
    linked = session.room_io.linked_participant
    session.room_io.linked_participant = None  # not linked yet when EndCall starts
    p.watch_link(every=0.01)
    assert p.customer is None
    await asyncio.sleep(0.1)
    session.room_io.linked_participant = linked  # RoomIO links them
    await asyncio.sleep(0.05)
    assert p.customer == "cand"  # found by looking again, no event needed
    session.room_io.linked_participant = None  # they leave: RoomIO unlinks
    p.on_participant_disconnected(_left("cand"))  # type: ignore[arg-type]
    await asyncio.wait_for(p.settled.wait(), 1.0)
    assert [t.reason for t in submitted] == ["customer-disconnected"]
