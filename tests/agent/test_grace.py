"""The disconnect grace window and the room deletion after the report.

1. A customer leaving without a request is tentative for `disconnect_grace`: closing a tab
   sends LiveKit's leave before the `sendBeacon` end request reaches the agent through the
   fallback server (the server channel). A request within the grace wins with its own reason,
   request id and meta; without one, `customer-disconnected` (with LiveKit's DisconnectReason)
   is accepted when the grace runs out; other triggers end at once.
2. The room being deleted and the worker shutting the job down are tentative for
   `shutdown_grace`: the fallback server deletes the room because the agent did not ack a
   request in time (a blocked loop, a stopped process), and that request, already queued,
   explains the end; without one, `room-deleted` / `worker-shutdown` when the grace is over.
3. With `delete_room=True` the room is deleted after the first delivery attempt (bounded by
   `delete_room_after`), once `endcall.report` was written, so the page sees it first.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from agent_harness import AGENT_ID, CUSTOMER, ROOM, Job, request, rpc_end, start_job, wait_until
from livekit import rtc
from test_scenarios import check_ended, history

from endcall import EndState


async def beacon(job: Job, body: str) -> None:
    """What the fallback server does with a beacon: the agent's `endcall.request` attribute."""
    await job.hub.update_participant(ROOM, AGENT_ID, attributes={"endcall.request": body})


async def observe_agent(job: Job) -> dict[str, str]:
    """The agent's attributes as another participant (the fallback server's view) sees them."""
    seen: dict[str, str] = {}
    observer = await job.hub.connect(
        ROOM, "observer", kind=rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    )

    def on_attrs(changed: dict[str, str], participant: rtc.Participant) -> None:
        if participant.identity == AGENT_ID:
            seen.update(changed)

    observer.on("participant_attributes_changed", on_attrs)
    await job.hub.settle()
    return seen


async def test_a_beacon_after_the_leave_wins_within_the_grace(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"disconnect_grace": 3.0})
    agent_attrs = await observe_agent(job)
    job.stt.say("my answer", final=True)
    await asyncio.sleep(0.1)
    await job.customer.disconnect()  # pagehide: the leave arrives first...
    await asyncio.sleep(0.3)
    assert job.end is not None and job.end.state is EndState.ACTIVE  # tentative only
    assert job.shutdown_calls == [] and job.pipeline.stored == []
    # ...then the beacon, through the fallback server
    await beacon(job, request("b1", meta={"via": "beacon"}, initiator=CUSTOMER))
    await job.finished()
    # the server's ack signal
    assert agent_attrs["endcall.request_id"] == "b1"
    assert agent_attrs["endcall.reason"] == "customer-ended-call"
    doc = check_ended(job, "customer-ended-call", kind="customer", identity=CUSTOMER, attrs=False)
    assert doc["request_id"] == "b1" and doc["meta"] == {"via": "beacon"}
    assert doc["end"]["channel"] == "server"
    # LiveKit's reason for the leave is kept
    assert doc["end"]["disconnect_reason"] == "CLIENT_INITIATED"
    assert job.end.record.request_id == "b1"
    users = [m["content"][0] for m in history(doc, "user")]
    assert users == ["my answer"], users  # nothing said before the leave is lost


async def test_a_request_within_the_grace_gets_an_accepted_ack(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"disconnect_grace": 3.0})
    await job.customer.disconnect()
    await asyncio.sleep(0.2)
    assert job.end is not None
    ack = await job.end.end("customer-tab-closed", request_id="t1", meta={"k": 1})
    assert ack.status == "accepted" and ack.reason == "customer-tab-closed" and ack.id == "t1"
    assert ack.drain_ms == job.end.record.drain_ms
    later = await job.end.end("server-ended-call")
    assert later.status in ("already_ending", "already_ended")
    await job.finished()
    doc = check_ended(job, "customer-tab-closed", kind="customer", attrs=False)
    assert doc["meta"] == {"k": 1} and doc["request_id"] == "t1"


async def test_without_a_request_the_leave_ends_the_call_after_the_grace(tmp_path: Path) -> None:
    grace = 1.0
    job = await start_job(tmp_path, endcall_kwargs={"disconnect_grace": grace})
    t0 = time.monotonic()
    await job.customer.disconnect()
    await asyncio.sleep(grace / 2)
    assert job.end is not None and job.end.state is EndState.ACTIVE
    assert job.agent_attrs()["endcall.state"] == "active"
    assert job.shutdown_calls == []
    await job.finished()
    assert time.monotonic() - t0 >= grace * 0.9
    doc = check_ended(job, "customer-disconnected", kind="customer", identity=CUSTOMER, attrs=False)
    assert doc["end"]["disconnect_reason"] == "CLIENT_INITIATED"
    assert doc["request_id"] is None
    # held since the leave: the trigger's time is the leave, not the end of the grace
    assert doc["end"]["requested_at"] < doc["end"]["acked_at"] - grace * 0.8


async def test_grace_zero_ends_at_once(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"disconnect_grace": 0})
    await job.customer.disconnect()
    await wait_until(lambda: job.end is not None and job.end.state is not EndState.ACTIVE, 0.5)
    await job.finished()
    check_ended(job, "customer-disconnected", kind="customer", attrs=False)


async def test_room_deleted_during_the_grace_ends_at_once(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"disconnect_grace": 20.0})
    await job.customer.disconnect()
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    await job.hub.delete_room(ROOM)
    await job.finished()
    assert time.monotonic() - t0 < 15.0  # well before the grace would have run out
    doc = check_ended(job, "room-deleted", kind="server", attrs=False)
    assert doc["end"]["disconnect_reason"] == "ROOM_DELETED"


async def test_worker_shutdown_during_the_grace_ends_at_once(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"disconnect_grace": 20.0})
    await job.customer.disconnect()
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    job.worker_shutdown("worker draining")
    await job.finished()
    assert time.monotonic() - t0 < 15.0
    doc = check_ended(job, "worker-shutdown", kind="system", attrs=False)
    assert doc["end"]["disconnect_reason"] == "CLIENT_INITIATED"


# ------------------------------------------------------------------ shutdown grace


async def test_a_request_queued_behind_the_room_deletion_wins(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"shutdown_grace": 2.0})
    job.stt.say("my last answer", final=True)
    await asyncio.sleep(0.1)
    await job.hub.delete_room(ROOM)
    await asyncio.sleep(0.2)
    assert job.end is not None and job.end.state is EndState.ACTIVE  # tentative only
    # the candidate's request, written by the fallback server before it deleted the room, is
    # only read now (what a stopped agent process sees when it runs again): the SDK delivers
    # the queued attribute update
    body = request("late1", initiator=CUSTOMER)
    job.agent_room.emit(
        "participant_attributes_changed",
        {"endcall.request": body},
        job.agent_room.local_participant,
    )
    await job.finished()
    doc = check_ended(job, "customer-ended-call", kind="customer", identity=CUSTOMER, attrs=False)
    assert doc["request_id"] == "late1"
    assert doc["end"]["disconnect_reason"] == "ROOM_DELETED"
    users = [m["content"][0] for m in history(doc, "user")]
    assert users == ["my last answer"]


async def test_without_a_request_the_deletion_ends_the_call_after_the_grace(
    tmp_path: Path,
) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"shutdown_grace": 1.0})
    t0 = time.monotonic()
    await job.hub.delete_room(ROOM)
    await job.finished()
    assert time.monotonic() - t0 >= 0.9
    doc = check_ended(job, "room-deleted", kind="server", attrs=False)
    assert doc["end"]["disconnect_reason"] == "ROOM_DELETED"
    # a reloaded page may already be in a new room of that name: never delete by name again
    assert job.deleted_rooms == []


async def test_a_room_deleted_and_reused_is_not_deleted_by_the_old_call(tmp_path: Path) -> None:
    """The room is deleted under the agent and a reloaded page starts a room with the same
    name: the old call's end path must not end the new interview."""
    job = await start_job(tmp_path, endcall_kwargs={"shutdown_grace": 0.2})
    await job.hub.delete_room(ROOM)
    newcomer = await job.hub.connect(ROOM, CUSTOMER)  # the same name, a new room
    await job.finished()
    check_ended(job, "room-deleted", kind="server", attrs=False)
    assert job.deleted_rooms == []
    assert newcomer.isconnected() and job.hub.room_exists(ROOM)


async def test_a_request_after_a_worker_shutdown_wins_within_the_grace(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"shutdown_grace": 2.0})
    job.worker_shutdown("worker draining")
    await asyncio.sleep(0.2)
    assert job.end is not None and job.end.state is EndState.ACTIVE
    await rpc_end(job, request("w1"))
    await job.finished()
    doc = check_ended(job, "customer-ended-call", kind="customer", identity=CUSTOMER)
    assert doc["request_id"] == "w1"


async def test_shutdown_grace_zero_ends_at_once(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"shutdown_grace": 0})
    job.worker_shutdown("worker draining")
    await wait_until(lambda: job.end is not None and job.end.state is not EndState.ACTIVE, 0.5)
    await job.finished()
    check_ended(job, "worker-shutdown", kind="system", attrs=False)


async def test_a_room_deletion_after_a_held_shutdown_keeps_waiting_for_the_request(
    tmp_path: Path,
) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"shutdown_grace": 2.0})
    job.worker_shutdown("worker draining")  # held
    await asyncio.sleep(0.1)
    await job.hub.delete_room(ROOM)  # the second system end does not cut the grace short
    await asyncio.sleep(0.2)
    assert job.end is not None and job.end.state is EndState.ACTIVE
    job.agent_room.emit(
        "participant_attributes_changed",
        {"endcall.request": request("late2", initiator=CUSTOMER)},
        job.agent_room.local_participant,
    )
    await job.finished()
    doc = check_ended(job, "customer-ended-call", kind="customer", identity=CUSTOMER, attrs=False)
    assert doc["request_id"] == "late2"


# ------------------------------------------------------------------ the room closes


async def test_a_room_closed_behind_the_customer_is_customer_disconnected(tmp_path: Path) -> None:
    # livekit-server closes the room departure_timeout after the last customer left, and the
    # agent may never have seen that customer's participant_disconnected
    job = await start_job(tmp_path)
    job.stt.say("my answer", final=True)
    await asyncio.sleep(0.1)
    await job.hub.close_room(ROOM)
    await job.finished()
    doc = check_ended(job, "customer-disconnected", kind="customer", identity=CUSTOMER, attrs=False)
    assert doc["end"]["disconnect_reason"] == "ROOM_CLOSED"
    assert doc["end"]["channel"] == "room"
    assert [m["content"][0] for m in history(doc, "user")] == ["my answer"]


async def test_a_room_closed_during_the_grace_ends_it_at_once(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"disconnect_grace": 20.0})
    await job.customer.disconnect()
    await asyncio.sleep(0.2)
    assert job.end is not None and job.end.state is EndState.ACTIVE
    t0 = time.monotonic()
    await job.hub.close_room(ROOM)
    await job.finished()
    assert time.monotonic() - t0 < 15.0  # well before the grace would have run out
    doc = check_ended(job, "customer-disconnected", kind="customer", identity=CUSTOMER, attrs=False)
    assert doc["end"]["disconnect_reason"] == "CLIENT_INITIATED"


# ------------------------------------------------------------------ room deletion


def watch_customer(job: Job) -> list[tuple[str, Any]]:
    """What the customer's page sees, in order: `endcall.report` values and its disconnect."""
    seen: list[tuple[str, Any]] = []

    def on_attrs(changed: dict[str, str], participant: rtc.Participant) -> None:
        if participant.identity == AGENT_ID and "endcall.report" in changed:
            seen.append(("report", changed["endcall.report"]))

    job.customer.on("participant_attributes_changed", on_attrs)
    job.customer.on("disconnected", lambda reason=None: seen.append(("disconnected", reason)))
    return seen


async def test_the_page_sees_delivered_before_the_room_is_deleted(tmp_path: Path) -> None:
    job = await start_job(tmp_path)
    seen = watch_customer(job)
    assert job.end is not None
    await job.end.end("server-ended-call")
    await job.finished()
    check_ended(job, "server-ended-call", kind="server")
    assert job.deleted_rooms == [ROOM]
    assert ("report", "delivered") in seen
    assert seen[-1] == ("disconnected", rtc.DisconnectReason.ROOM_DELETED), seen
    assert seen.index(("report", "delivered")) < len(seen) - 1


async def test_a_slow_backend_does_not_keep_the_room_beyond_the_bound(tmp_path: Path) -> None:
    slow = asyncio.Event()
    job = await start_job(tmp_path, receiver_gate=slow, endcall_kwargs={"delete_room_after": 0.5})
    seen = watch_customer(job)
    assert job.end is not None
    ack = await job.end.end("server-ended-call")
    assert ack.drain_ms == round((10 + 2 + 5 + 0.5 + 1) * 1000)
    await wait_until(lambda: bool(job.deleted_rooms), 15)
    # deleted while the delivery is still in flight: the page saw the report stored
    assert job.end.delivery is None and job.receiver.requests == []
    await wait_until(lambda: any(k == "disconnected" for k, _ in seen), 5)
    assert ("report", "stored") in seen and ("report", "delivered") not in seen
    slow.set()
    await job.finished()
    assert len(job.receiver.requests) == 1
    assert job.end.delivery is not None and job.end.delivery.delivered


async def test_delete_room_false_keeps_the_room(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"delete_room": False})
    assert job.end is not None
    ack = await job.end.end("server-ended-call")
    assert ack.drain_ms == 17000  # no deletion to wait for
    await job.finished()
    check_ended(job, "server-ended-call", kind="server")
    assert job.deleted_rooms == []
    assert job.attrs_seen["endcall.report"] == "delivered"
    assert json.loads(job.pipeline.stored[0][1])["end_id"] == ack.end_id


async def test_a_customer_who_drops_and_rejoins_within_the_grace_goes_on(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"disconnect_grace": 0.5})
    # the connection drops without a leave: RoomIO keeps the session running
    await job.hub.drop_connection(ROOM, CUSTOMER)
    await asyncio.sleep(0.1)
    assert job.end is not None and job.end.state is EndState.ACTIVE
    assert job.session is not None and job.end._machine.held is not None
    back = await job.hub.connect(ROOM, CUSTOMER)
    await job.hub.settle()
    await asyncio.sleep(0.8)  # past the grace: nothing ended
    assert job.end.state is EndState.ACTIVE and job.shutdown_calls == []
    job.customer = back
    ack = json.loads(await rpc_end(job, request("r-back")))
    assert ack["status"] == "accepted"
    await job.finished()
    doc = check_ended(job, "customer-ended-call", kind="customer", identity=CUSTOMER, attrs=False)
    assert doc["request_id"] == "r-back"


async def test_a_customer_who_left_for_good_is_not_revived_by_a_rejoin(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"disconnect_grace": 0.5})
    await job.customer.disconnect()  # a leave: RoomIO closes the session
    await asyncio.sleep(0.1)
    await job.hub.connect(ROOM, CUSTOMER)
    await job.finished()
    check_ended(job, "customer-disconnected", kind="customer", attrs=False)
