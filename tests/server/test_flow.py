"""The end flow through the real livekit-api client, the Twirp double and the loopback hub:
agent acks, never acks, absent, room missing, LiveKit down, idempotency, beacons, CORS."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from server_support import (
    AGENT,
    API_KEY,
    API_SECRET,
    CUSTOMER,
    ROOM,
    ServedApp,
    Stack,
    StackFactory,
    end_body,
    free_port,
    livekit_token,
)
from starlette.applications import Starlette
from starlette.routing import Mount

from endcall.protocol import ATTR_CUSTOMER, ATTR_REQUEST, ATTR_STATE, parse_request
from endcall.server import create_app
from endcall.server.tokens import mint_end_token


async def test_agent_acks_at_once(stack: Stack) -> None:
    agent = await stack.add_agent()
    await stack.add_customer()
    body = end_body("r_ack1", meta={"button": "end"})
    resp = await stack.end(body)
    assert resp.status_code == 202, resp.text
    data = resp.json()
    assert data["status"] == "accepted"
    assert data["acked_by"] == "agent"
    assert data["end_id"] == agent.end_id
    assert data["reason"] == "customer-ended-call"
    assert data["id"] == "r_ack1"
    # the attribute carried the request, initiator = token identity; no data packet (the agent
    # trusts none without a sender)
    channels = sorted(ch for ch, _ in agent.received)
    assert channels == ["attribute"]
    for _, request in agent.received:
        assert request.id == "r_ack1"
        assert request.initiator == CUSTOMER
        assert request.meta == {"button": "end"}
    info = stack.hub.get_participant(ROOM, AGENT)
    written = parse_request(info.attributes[ATTR_REQUEST], origin="server")
    assert written.initiator == CUSTOMER
    # the room was not deleted: the agent ends it itself
    assert stack.hub.room_exists(ROOM)
    assert "DeleteRoom" not in [c.method for c in stack.double.calls]


async def test_agent_acks_after_a_while(stack: Stack) -> None:
    agent = await stack.add_agent(delay=0.15)
    resp = await stack.end(end_body("r_slow"))
    assert resp.status_code == 202
    assert resp.json()["acked_by"] == "agent"
    assert resp.json()["end_id"] == agent.end_id
    assert len(stack.double.calls_to("GetParticipant")) >= 2


async def test_the_server_sends_no_data_packet(stack: Stack) -> None:
    """The agent trusts no data packet without a sender (it cannot tell the server from an
    unannounced participant), so the server channel is the attribute alone."""
    agent = await stack.add_agent()
    resp = await stack.end(end_body("r_attr"))
    assert resp.status_code == 202 and resp.json()["acked_by"] == "agent"
    assert [ch for ch, _ in agent.received] == ["attribute"]
    assert stack.double.calls_to("SendData") == []


async def test_agent_never_acks_escalates_by_deleting_the_room(quick_stack: Stack) -> None:
    stack = quick_stack
    agent = await stack.add_agent(mode="never")
    customer = await stack.add_customer()
    resp = await stack.end(end_body("r_never"))
    assert resp.status_code == 202, resp.text
    assert resp.json() == {
        "id": "r_never",
        "status": "accepted",
        "acked_by": "server",
        "escalated": "delete_room",
    }
    assert agent.requests() == ["r_never"]
    assert not stack.hub.room_exists(ROOM)
    await stack.hub.settle()
    assert not customer.isconnected()


async def test_escalation_none_leaves_the_room(make_stack: StackFactory) -> None:
    stack = await make_stack(escalation="none", ack_timeout=0.3)
    await stack.add_agent(mode="never")
    resp = await stack.end(end_body("r_none"))
    assert resp.status_code == 202
    assert resp.json()["escalated"] == "none"
    assert stack.hub.room_exists(ROOM)
    assert "DeleteRoom" not in [c.method for c in stack.double.calls]


async def test_no_agent_escalates_at_once(stack: Stack) -> None:
    await stack.add_customer()
    resp = await stack.end(end_body("r_noagent"))
    assert resp.status_code == 202
    assert resp.json()["acked_by"] == "server"
    assert not stack.hub.room_exists(ROOM)
    methods = [c.method for c in stack.double.calls]
    assert methods == ["ListParticipants", "DeleteRoom"]


async def test_room_missing_is_already_ended(stack: Stack) -> None:
    resp = await stack.end(end_body("r_gone"))
    assert resp.status_code == 200
    assert resp.json() == {"id": "r_gone", "status": "already_ended"}
    assert stack.double.touched_rooms() == set()


async def test_room_missing_with_escalation_none(make_stack: StackFactory) -> None:
    stack = await make_stack(escalation="none")
    resp = await stack.end(end_body("r_gone2"))
    assert resp.status_code == 200
    assert resp.json()["status"] == "already_ended"


async def test_agent_leaves_while_waiting(stack: Stack) -> None:
    agent = await stack.add_agent(mode="never")
    await stack.add_customer()

    async def leave() -> None:
        await asyncio.sleep(0.1)
        await agent.room.disconnect()

    leaving = asyncio.create_task(leave())
    resp = await stack.end(end_body("r_left"))
    await leaving
    assert resp.status_code == 202
    assert resp.json()["acked_by"] == "server"
    assert not stack.hub.room_exists(ROOM)


async def test_agent_already_ending_answers_without_writing(stack: Stack) -> None:
    agent = await stack.add_agent()
    first = await stack.end(end_body("r_first"))
    assert first.json()["status"] == "accepted"
    calls = len(stack.double.calls)
    second = await stack.end(end_body("r_second", reason="customer-tab-closed"))
    assert second.status_code == 202
    data = second.json()
    assert data["status"] == "already_ending"
    assert data["end_id"] == agent.end_id
    assert data["reason"] == "customer-ended-call"
    assert [c.method for c in stack.double.calls[calls:]] == ["ListParticipants"]


async def test_agent_ended_is_already_ended(stack: Stack) -> None:
    agent = await stack.add_agent()
    await agent.room.local_participant.set_attributes(
        {ATTR_STATE: "ended", "endcall.end_id": "e_done", "endcall.reason": "silence-timed-out"}
    )
    await stack.hub.settle()
    resp = await stack.end(end_body("r_late"))
    assert resp.status_code == 202
    assert resp.json() == {
        "id": "r_late",
        "status": "already_ended",
        "acked_by": "agent",
        "end_id": "e_done",
        "reason": "silence-timed-out",
    }
    assert agent.received == []


async def test_same_request_id_gets_the_same_answer(stack: Stack) -> None:
    agent = await stack.add_agent()
    body = end_body("r_same")
    first = await stack.end(body)
    calls = len(stack.double.calls)
    second = await stack.end(body)
    assert second.status_code == first.status_code == 202
    assert second.json() == first.json()
    assert len(stack.double.calls) == calls  # answered from the cache
    assert agent.requests() == ["r_same"]


async def test_concurrent_duplicates_run_once(stack: Stack) -> None:
    agent = await stack.add_agent(delay=0.1)
    body = end_body("r_dup")
    answers = await asyncio.gather(*(stack.end(body) for _ in range(5)))
    assert {r.status_code for r in answers} == {202}
    assert len({json.dumps(r.json(), sort_keys=True) for r in answers}) == 1
    assert len(stack.double.calls_to("ListParticipants")) == 1
    assert agent.requests() == ["r_dup"]


async def test_escalated_answer_is_replayed_after_the_room_is_gone(quick_stack: Stack) -> None:
    stack = quick_stack
    await stack.add_agent(mode="never")
    first = await stack.end(end_body("r_esc"))
    again = await stack.end(end_body("r_esc"))
    assert again.json() == first.json()
    assert again.status_code == 202


async def test_livekit_unreachable_is_502_with_retry_after(make_stack: StackFactory) -> None:
    stack = await make_stack(livekit_url=f"http://127.0.0.1:{free_port()}", livekit_timeout=0.5)
    resp = await stack.end(end_body("r_down"))
    assert resp.status_code == 502
    assert resp.json()["code"] == "livekit_unavailable"
    assert int(resp.headers["retry-after"]) >= 1


async def test_livekit_5xx_is_502_and_not_cached(stack: Stack) -> None:
    agent = await stack.add_agent()
    stack.double.fail("ListParticipants", "unavailable", times=1)
    resp = await stack.end(end_body("r_5xx"))
    assert resp.status_code == 502
    assert "retry-after" in resp.headers
    assert stack.double.touched_rooms() == set()
    retry = await stack.end(end_body("r_5xx"))  # the failure was not cached
    assert retry.status_code == 202
    assert retry.json()["end_id"] == agent.end_id


async def test_livekit_going_down_mid_flow(quick_stack: Stack) -> None:
    stack = quick_stack
    await stack.add_agent(mode="never")
    stack.double.fail("GetParticipant", "unavailable")
    stack.double.fail("DeleteRoom", "unavailable")
    resp = await stack.end(end_body("r_middown"))
    assert resp.status_code == 502


async def test_livekit_rejecting_credentials_is_502(make_stack: StackFactory) -> None:
    stack = await make_stack()
    stack.double.api_secret = "another-secret-the-server-does-not-know-0123456789"
    resp = await stack.end(end_body("r_creds"))
    assert resp.status_code == 502
    assert resp.json()["code"] == "livekit_error"


async def test_beacon_text_plain_with_body_token(stack: Stack) -> None:
    agent = await stack.add_agent()
    body = end_body("r_beacon", reason="customer-tab-closed", token=livekit_token())
    resp = await stack.client.post(
        stack.url + "/v1/end",
        content=json.dumps(body),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert resp.status_code == 202, resp.text
    assert resp.json()["reason"] == "customer-tab-closed"
    assert all(r.reason == "customer-tab-closed" for _, r in agent.received)


async def test_end_token_is_accepted(stack: Stack) -> None:
    agent = await stack.add_agent()
    token = mint_end_token(ROOM, CUSTOMER, 60, api_key=API_KEY, api_secret=API_SECRET)
    resp = await stack.end(end_body("r_endtok"), token=token)
    assert resp.status_code == 202, resp.text
    assert all(r.initiator == CUSTOMER for _, r in agent.received)


async def test_initiator_equal_to_token_identity_is_fine(stack: Stack) -> None:
    await stack.add_agent()
    resp = await stack.end(end_body("r_init", initiator=CUSTOMER))
    assert resp.status_code == 202


async def test_cors_preflight_and_headers(make_stack: StackFactory) -> None:
    stack = await make_stack(allowed_origins=("https://app.example",))
    await stack.add_agent()
    pre = await stack.client.options(
        stack.url + "/v1/end",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in pre.headers["access-control-allow-methods"]
    resp = await stack.end(end_body("r_cors"), headers={"Origin": "https://app.example"})
    assert resp.headers["access-control-allow-origin"] == "https://app.example"
    bad = await stack.client.options(
        stack.url + "/v1/end",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert bad.status_code == 400
    assert "access-control-allow-origin" not in bad.headers
    denied = await stack.end(end_body("r_cors2"), headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in denied.headers


async def test_health_openapi_404_405(stack: Stack) -> None:
    health = await stack.client.get(stack.url + "/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    doc = (await stack.client.get(stack.url + "/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    assert "/v1/end" in doc["paths"]
    missing = await stack.client.get(stack.url + "/nope")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    wrong = await stack.client.get(stack.url + "/v1/end")
    assert wrong.status_code == 405
    assert wrong.json()["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["allow"]
    assert stack.double.calls == []


async def test_mounted_inside_another_app(make_stack: StackFactory) -> None:
    base = await make_stack()
    await base.add_agent()
    endcall_app = create_app(base.settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with endcall_app.router.lifespan_context(endcall_app):
            yield

    parent = Starlette(routes=[Mount("/endcall", app=endcall_app)], lifespan=lifespan)
    served = ServedApp(parent)
    url = await served.start()
    try:
        resp = await base.client.post(
            url + "/endcall/v1/end",
            json=end_body("r_mounted"),
            headers={"Authorization": f"Bearer {livekit_token()}"},
        )
        health = await base.client.get(url + "/endcall/healthz")
    finally:
        await served.stop()
    assert resp.status_code == 202, resp.text
    assert resp.json()["acked_by"] == "agent"
    assert health.json() == {"status": "ok"}


async def test_ack_split_over_two_attribute_updates(stack: Stack) -> None:
    agent = await stack.add_agent(mode="never")

    async def answer_in_two_steps() -> None:
        await agent.arrived.wait()
        request = agent.received[0][1]
        local = agent.room.local_participant
        await local.set_attributes({"endcall.request_id": request.id})
        await asyncio.sleep(0.1)
        await local.set_attributes(
            {
                "endcall.state": "ending",
                "endcall.end_id": "e_split",
                "endcall.reason": request.reason,
            }
        )

    helper = asyncio.create_task(answer_in_two_steps())
    resp = await stack.end(end_body("r_split"))
    await helper
    assert resp.status_code == 202
    assert resp.json()["acked_by"] == "agent"
    assert resp.json()["end_id"] == "e_split"
    assert stack.hub.room_exists(ROOM)


async def test_ack_without_end_id_is_still_the_agents(make_stack: StackFactory) -> None:
    stack = await make_stack(ack_timeout=1.0)
    agent = await stack.add_agent(mode="never")

    async def answer_without_end_id() -> None:
        await agent.arrived.wait()
        await agent.room.local_participant.set_attributes(
            {"endcall.request_id": agent.received[0][1].id}
        )

    helper = asyncio.create_task(answer_without_end_id())
    resp = await stack.end(end_body("r_noend"))
    await helper
    assert resp.status_code == 202
    assert resp.json()["acked_by"] == "agent"
    assert resp.json()["end_id"] is None
    assert stack.hub.room_exists(ROOM)  # the agent answered: no escalation


async def test_escalation_none_without_agent(make_stack: StackFactory) -> None:
    stack = await make_stack(escalation="none")
    await stack.add_customer()
    resp = await stack.end(end_body("r_none_noagent"))
    assert resp.status_code == 202
    assert resp.json()["escalated"] == "none"
    assert stack.hub.room_exists(ROOM)
    assert stack.double.touched_rooms() == set()


async def test_the_agent_running_endcall_is_preferred(stack: Stack) -> None:
    other = await stack.add_agent(identity="avatar-agent", mode="never")
    main_agent = await stack.add_agent(identity="interview-agent")
    await main_agent.room.local_participant.set_attributes({ATTR_STATE: "active"})
    await stack.hub.settle()
    resp = await stack.end(end_body("r_pref"))
    assert resp.status_code == 202
    assert resp.json()["end_id"] == main_agent.end_id
    assert other.received == []
    assert main_agent.requests() == ["r_pref"]


async def test_a_request_the_agent_refuses_is_403_and_deletes_nothing(stack: Stack) -> None:
    """An observer with their own LiveKit token for the room: the agent refuses (not the
    customer), the server answers 403 with the agent's verdict and never deletes the room."""
    agent = await stack.add_agent(mode="refuse")
    await stack.add_customer()
    resp = await stack.end(end_body("r_obs"), token=livekit_token(identity="observer"))
    assert resp.status_code == 403, resp.text
    assert resp.json()["code"] == "forbidden" and resp.json()["id"] == "r_obs"
    assert "the agent refused" in resp.json()["message"]
    assert [r.initiator for _, r in agent.received] == ["observer"]
    assert stack.hub.room_exists(ROOM)
    assert "DeleteRoom" not in [c.method for c in stack.double.calls]


async def test_a_silent_agent_is_escalated_only_for_its_customer(quick_stack: Stack) -> None:
    stack = quick_stack
    agent = await stack.add_agent(mode="never")
    await agent.room.local_participant.set_attributes(
        {ATTR_STATE: "active", ATTR_CUSTOMER: CUSTOMER}
    )
    await stack.add_customer()
    resp = await stack.end(end_body("r_obs2"), token=livekit_token(identity="observer"))
    assert resp.status_code == 403, resp.text
    assert "only its customer" in resp.json()["message"]
    assert stack.hub.room_exists(ROOM)
    assert "DeleteRoom" not in [c.method for c in stack.double.calls]
    # the customer's own request, unanswered, is escalated as before
    resp = await stack.end(end_body("r_cust2"))
    assert resp.status_code == 202 and resp.json()["acked_by"] == "server"
    assert "DeleteRoom" in [c.method for c in stack.double.calls]
