"""Every way a session ends, on a real AgentSession + JobContext inside livekit-agents' own job
shutdown sequence (see agent_harness.py). Each scenario checks the ack, the reason, the
attributes, exactly one `ctx.shutdown()` and exactly one report handed over (and delivered)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from agent_harness import (
    AGENT_ID,
    CUSTOMER,
    ROOM,
    Job,
    data_end,
    request,
    rpc_end,
    start_job,
    wait_until,
)
from livekit import rtc
from livekit.agents import APIConnectionError, APIConnectOptions
from livekit.agents.voice.agent_session import SessionConnectOptions

from endcall import EndCall, EndState
from endcall.agent.end_tool import Goodbyes, make_end_tool
from endcall.protocol import Initiator, parse_report
from endcall.testing import ToolCall, Turn, request_end

GOODBYE = "Thank you for your time. Goodbye!"


#: protocol.md §5: `endcall.state` only moves forward
STATE_ORDER = ("active", "ending", "ended")


def assert_states_forward(states: list[str], history: object = None) -> None:
    """The written states move only forward and end at `ended`. Writes are coalesced, so
    `ending` may be skipped when the end path is quick (protocol.md §5)."""
    ranks = [STATE_ORDER.index(s) for s in states]
    assert ranks == sorted(set(ranks)) and states[-1:] == ["ended"], history


def check_ended(
    job: Job, reason: str, *, kind: str, identity: str | None = None, attrs: bool = True
) -> dict[str, Any]:
    """Exactly one job shutdown, exactly one report stored and delivered, attributes ended."""
    assert job.end is not None
    rec = job.end.record
    assert rec.state is EndState.ENDED
    assert rec.reason == reason
    assert job.shutdown_calls == [reason], job.shutdown_calls
    assert len(job.pipeline.stored) == 1
    end_id, body = job.pipeline.stored[0]
    assert end_id == rec.end_id
    reports = job.receiver.reports()
    assert len(reports) == 1
    assert job.receiver.requests[0].content == body
    assert job.receiver.requests[0].headers["webhook-id"] == end_id
    doc = reports[0]
    assert doc["end_id"] == end_id
    assert doc["ended_reason"] == reason
    assert doc["initiator"]["kind"] == kind
    if identity is not None:
        assert doc["initiator"]["identity"] == identity
    assert doc["complete"] is True
    assert "chat_history" in doc["session"]
    if attrs:
        states = [h["endcall.state"] for h in job.attr_history if "endcall.state" in h]
        assert_states_forward(states, job.attr_history)
        seen = job.attrs_seen
        assert seen["endcall.reason"] == reason
        assert seen["endcall.end_id"] == end_id
        assert seen["endcall.report"] in ("stored", "delivered")
    assert job.end.delivery is not None and job.end.delivery.delivered
    return doc


def history(doc: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [
        i
        for i in doc["session"]["chat_history"]["items"]
        if i.get("type") == "message" and i.get("role") == role
    ]


async def speak(job: Job, text: str, reply: str | Turn) -> None:
    """The user says `text`; the agent answers `reply` (its speech starts)."""
    job.llm.add(reply)
    job.stt.say(text)
    assert job.session is not None
    await wait_until(lambda: job.session is not None and job.session.agent_state == "speaking")


# ------------------------------------------------------------------ customer channels


async def test_customer_rpc_end_interrupts_speech_and_acks_before_drain(tmp_path: Path) -> None:
    job = await start_job(tmp_path, tts_duration=lambda t: 5.0 if t.startswith("Long") else 0.2)
    await speak(job, "Tell me more.", "Long answer that takes five seconds to say.")
    await asyncio.sleep(1.0)  # part of the answer is heard
    raw = await rpc_end(job, request("r1", meta={"button": "end"}))
    ack = json.loads(raw)
    assert ack == {
        "type": "end.ack",
        "v": 1,
        "id": "r1",
        "status": "accepted",
        "end_id": job.end.end_id if job.end else None,
        "reason": "customer-ended-call",
        # drain 10 + transcript flush 2 + close 5 + room deletion after the report 5 + 1
        "drain_ms": 23000,
    }
    await job.finished()
    doc = check_ended(job, "customer-ended-call", kind="customer", identity=CUSTOMER)
    assert doc["request_id"] == "r1" and doc["meta"] == {"button": "end"}
    assert doc["end"]["channel"] == "rpc"
    # the long answer was cut (no goodbye), in well under its five seconds
    said = history(doc, "assistant")
    assert said[-1]["content"][0].startswith("Long") and said[-1]["interrupted"] is True
    assert GOODBYE not in json.dumps(said)
    assert doc["end"]["drain_s"] < 4.0
    assert job.deleted_rooms == [ROOM]
    # the room went away after the delivery: the customer's page saw the report delivered
    assert job.attrs_seen["endcall.report"] == "delivered"


async def test_the_ack_never_waits_for_the_drain(tmp_path: Path) -> None:
    """A tool call the drain must let finish is held open by the test: the ack still arrives,
    and the session closes only once the tool is let go (no timing involved)."""
    from livekit.agents import function_tool

    running, release = asyncio.Event(), asyncio.Event()

    @function_tool
    async def fetch_notes() -> str:
        """Fetch the candidate's notes."""
        running.set()
        await release.wait()
        return "notes"

    job = await start_job(
        tmp_path,
        agent_tools=[fetch_notes],
        llm_script=[ToolCall("fetch_notes"), "Thanks."],
        endcall_kwargs={"drain_timeout": 60.0},
    )
    job.stt.say("Please look at my notes.")
    await asyncio.wait_for(running.wait(), 30)
    ack = json.loads(await rpc_end(job, request("r-held")))
    assert ack["status"] == "accepted"
    assert not release.is_set() and not any(n == "close" for n, _ in job.events)
    release.set()
    await job.finished()
    check_ended(job, "customer-ended-call", kind="customer", identity=CUSTOMER)


async def test_customer_data_end(tmp_path: Path) -> None:
    job = await start_job(tmp_path)
    ack = await data_end(job, request("d1"))
    assert ack["type"] == "end.ack" and ack["status"] == "accepted" and ack["id"] == "d1"
    await job.finished()
    doc = check_ended(job, "customer-ended-call", kind="customer", identity=CUSTOMER)
    assert doc["end"]["channel"] == "data" and doc["request_id"] == "d1"
    assert ack["end_id"] == doc["end_id"]


async def test_server_end_through_the_attribute(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"delete_room": False})
    body = request("s1", "server-ended-call", initiator="backend")
    # what a backend (or the fallback server) does: the agent's attribute
    await job.hub.update_participant(ROOM, AGENT_ID, attributes={"endcall.request": body})
    # the server's ack signal: the agent's attributes
    await wait_until(lambda: job.attrs_seen.get("endcall.request_id") == "s1")
    attrs = job.attrs_seen
    assert attrs["endcall.state"] in ("ending", "ended")
    assert attrs["endcall.reason"] == "server-ended-call"
    await job.finished()
    doc = check_ended(job, "server-ended-call", kind="server", identity="backend")
    assert doc["end"]["channel"] == "server"
    assert job.deleted_rooms == []
    assert job.attrs_seen["endcall.report"] == "delivered"


@pytest.mark.parametrize("reason", ["exceeded-max-duration", "customer-tab-closed"])
async def test_data_from_a_sender_the_room_does_not_name_is_not_the_server(
    tmp_path: Path, reason: str
) -> None:
    """The SDK gives `participant=None` for server SendData and for a participant it does not
    know (yet) alike: neither may end the call, not even with a server-only reason."""
    job = await start_job(tmp_path)
    body = request("forged", reason, initiator=CUSTOMER)
    await job.hub.send_data(
        ROOM, body.encode(), destination_identities=[AGENT_ID], topic="end_interview"
    )
    await job.hub.settle()
    await asyncio.sleep(0.2)
    assert job.end is not None and job.end.state is EndState.ACTIVE
    assert job.shutdown_calls == [] and "endcall.request_id" not in job.attrs_seen
    # the customer's own request still works
    ack = json.loads(await rpc_end(job, request("r-real")))
    assert ack["status"] == "accepted"
    await job.finished()
    check_ended(job, "customer-ended-call", kind="customer", identity=CUSTOMER)


@pytest.mark.parametrize("policy", ["customer-only", "allow"])
async def test_a_server_channel_request_for_another_participant_is_refused(
    tmp_path: Path, policy: str
) -> None:
    """The fallback server writes its verified caller as `initiator`: the agent decides for
    them as over RPC and data, and publishes its refusal (`endcall.error`) for the server."""
    kwargs: dict[str, Any] = {}
    if policy == "allow":
        kwargs["allow"] = lambda identity, _req: identity == CUSTOMER
    job = await start_job(tmp_path, endcall_kwargs=kwargs)
    observer = await job.hub.connect(ROOM, "observer")
    await job.hub.settle()
    body = request("r-obs", "customer-ended-call", initiator="observer")
    await job.hub.update_participant(ROOM, AGENT_ID, attributes={"endcall.request": body})
    await wait_until(lambda: "endcall.error" in job.attrs_seen)
    error = json.loads(job.attrs_seen["endcall.error"])
    assert error["id"] == "r-obs" and error["code"] == "forbidden"
    assert job.end is not None and job.end.state is EndState.ACTIVE
    assert job.attrs_seen.get("endcall.customer") == CUSTOMER
    await observer.disconnect()
    # the customer, through the same channel, is accepted
    body = request("r-cust", "customer-ended-call", initiator=CUSTOMER)
    await job.hub.update_participant(ROOM, AGENT_ID, attributes={"endcall.request": body})
    await job.finished()
    doc = check_ended(job, "customer-ended-call", kind="customer", identity=CUSTOMER)
    assert doc["request_id"] == "r-cust" and doc["end"]["channel"] == "server"


# ------------------------------------------------------------------ agent side


async def test_tool_end_plays_the_goodbye_in_full(tmp_path: Path) -> None:
    goodbye_s = 1.0
    job = await start_job(
        tmp_path,
        endcall_kwargs={"goodbye": GOODBYE},
        llm_script=[
            Turn(text="Great, that was my last question.", tool_calls=[ToolCall("end_call")])
        ],
        tts_duration=lambda t: goodbye_s if "Goodbye" in t else 0.3,
    )
    job.stt.say("I think that's all from me.")
    await job.finished()
    doc = check_ended(job, "assistant-ended-call", kind="agent", identity=AGENT_ID)
    assert doc["end"]["channel"] == "tool"
    said = history(doc, "assistant")
    texts = [m["content"][0] for m in said]
    assert texts[-2:] == ["Great, that was my last question.", GOODBYE]
    assert said[-1]["interrupted"] is False
    # the goodbye was heard in full: its speech lasted at least its audio
    created = [ev for n, ev in job.events if n == "speech_created"]
    goodbye_handle = created[-1].speech_handle
    closed_at = next(ev.created_at for n, ev in job.events if n == "close")
    assert closed_at - created[-1].created_at >= goodbye_s * 0.95
    assert goodbye_handle.interrupted is False
    assert "".join(job.tts.requests).count("Goodbye!") == 1
    assert job.llm.remaining == 0


async def test_tool_end_without_fixed_goodbye_lets_the_llm_say_it(tmp_path: Path) -> None:
    job = await start_job(
        tmp_path,
        llm_script=[ToolCall("end_call"), "It was a pleasure. Goodbye!"],
        tts_duration=lambda t: 0.6,
    )
    job.stt.say("Bye.")
    await job.finished()
    doc = check_ended(job, "assistant-ended-call", kind="agent")
    said = history(doc, "assistant")
    assert said[-1]["content"][0] == "It was a pleasure. Goodbye!"
    assert said[-1]["interrupted"] is False


async def test_programmatic_end(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"goodbye": GOODBYE})
    assert job.end is not None
    ack = await job.end.end("server-ended-call", meta={"by": "test"}, goodbye=True)
    assert ack.status == "accepted"
    again = await job.end.end("customer-ended-call")
    assert again.status == "already_ending" and again.reason == "server-ended-call"
    record = await job.end.wait()
    assert record.state is EndState.ENDED
    await job.finished()
    doc = check_ended(job, "server-ended-call", kind="server")
    assert doc["meta"] == {"by": "test"}
    assert history(doc, "assistant")[-1]["content"][0] == GOODBYE


GOODBYES = {"exceeded-max-duration": "Our time is up. Thank you!", "*": GOODBYE}
INTERVIEW_TOOL = "Call end_interview when the candidate has answered every question."


async def test_the_end_tool_takes_the_teams_name_and_description(tmp_path: Path) -> None:
    job = await start_job(
        tmp_path,
        endcall_kwargs={
            "goodbye": GOODBYES,
            "tool_name": "end_interview",
            "tool_description": INTERVIEW_TOOL,
        },
        llm_script=[Turn(text="That was all.", tool_calls=[ToolCall("end_interview")])],
    )
    assert job.end is not None
    info = job.end.tool.info
    assert (info.name, info.description) == ("end_interview", INTERVIEW_TOOL)
    job.stt.say("I am done.")
    await job.finished()
    doc = check_ended(job, "assistant-ended-call", kind="agent", identity=AGENT_ID)
    assert [m["content"][0] for m in history(doc, "assistant")][-2:] == ["That was all.", GOODBYE]


async def test_goodbye_per_reason(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"max_duration": 0.5, "goodbye": GOODBYES})
    await job.finished()
    doc = check_ended(job, "exceeded-max-duration", kind="system")
    assert history(doc, "assistant")[-1]["content"][0] == "Our time is up. Thank you!"


async def test_end_from_code_with_initiator_and_the_reasons_goodbye(tmp_path: Path) -> None:
    goodbyes = {"exceeded-max-duration": "Our time is up. Thank you!"}
    job = await start_job(tmp_path, endcall_kwargs={"goodbye": goodbyes})
    assert job.end is not None
    who = Initiator(kind="server", identity="scheduler")
    ack = await job.end.end("exceeded-max-duration", initiator=who, goodbye=True)
    assert ack.status == "accepted"
    await job.finished()
    doc = check_ended(job, "exceeded-max-duration", kind="server", identity="scheduler")
    assert history(doc, "assistant")[-1]["content"][0] == "Our time is up. Thank you!"


def test_bad_goodbyes_and_tool_names_are_refused() -> None:
    with pytest.raises(ValueError, match="not a reason"):
        Goodbyes({"Time Up": "bye"})
    with pytest.raises(TypeError):
        Goodbyes({"*": 3})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="tool_name"):
        make_end_tool(lambda ctx: None, name="end interview")
    with pytest.raises(ValueError, match="tool_description"):
        make_end_tool(lambda ctx: None, description=" ")
    g = Goodbyes({"silence-timed-out": "Are you there? Goodbye."})
    assert g("silence-timed-out") == "Are you there? Goodbye." and g("agent-error") is None
    assert Goodbyes("Bye")("anything") == "Bye" and Goodbyes(None)("x") is None


async def test_report_meta_and_annotate_reach_the_report_and_its_draft(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"report_meta": {"test_id": "t-1"}})
    assert job.end is not None
    assert job.end.annotate(company_id="c-7", test_id="t-2") is True
    with pytest.raises(ValueError, match="not a JSON value"):
        job.end.annotate(when=object())
    with pytest.raises(ValueError, match="not a JSON value"):
        job.end.annotate(score=float("nan"))
    with pytest.raises(ValueError, match="the limit is 4096"):
        job.end.annotate(notes="x" * 4096)
    await wait_until(lambda: any(b"c-7" in body for _, body in job.pipeline.drafts), timeout=5.0)
    ack = await request_end(job.customer)
    assert ack.status == "accepted"
    await job.finished()
    doc = check_ended(job, "customer-ended-call", kind="customer")
    assert doc["annotations"] == {"test_id": "t-2", "company_id": "c-7"}
    assert parse_report(job.pipeline.stored[0][1]).annotations == doc["annotations"]
    assert job.end.annotate(late=True) is False  # the report is built: too late
    with pytest.raises(ValueError, match="the limit is 4096"):
        EndCall(job.runner.ctx, job.session, pipeline=job.pipeline, report_meta={"k": "x" * 5000})


# ------------------------------------------------------------------ timers


async def test_max_duration(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"max_duration": 0.5, "goodbye": GOODBYE})
    await job.finished()
    doc = check_ended(job, "exceeded-max-duration", kind="system")
    assert doc["end"]["channel"] == "timer"
    assert history(doc, "assistant")[-1]["content"][0] == GOODBYE
    assert doc["duration_s"] >= 0.45


async def test_silence_timeout(tmp_path: Path) -> None:
    job = await start_job(tmp_path, user_away_timeout=0.3, endcall_kwargs={"silence_timeout": 0.6})
    t0 = time.monotonic()
    await job.finished()
    assert time.monotonic() - t0 >= 0.5
    check_ended(job, "silence-timed-out", kind="system")


async def test_speech_resets_the_silence_timeout(tmp_path: Path) -> None:
    job = await start_job(tmp_path, user_away_timeout=0.3, endcall_kwargs={"silence_timeout": 1.2})
    for _ in range(3):
        await asyncio.sleep(0.5)
        job.llm.add("Mm-hm.")
        job.stt.say("still here")
    assert job.end is not None and job.end.state is EndState.ACTIVE
    await job.finished()
    check_ended(job, "silence-timed-out", kind="system")


@pytest.mark.parametrize("away", [None, 5.0])
async def test_a_short_silence_timeout_is_honoured_whatever_the_away_timeout(
    tmp_path: Path, away: float | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "endcall")
    job = await start_job(tmp_path, user_away_timeout=away, endcall_kwargs={"silence_timeout": 0.6})
    t0 = time.monotonic()
    await job.finished()
    took = time.monotonic() - t0
    assert 0.5 <= took < 3.0, took  # it used to wait for the 5 s away flip, or forever
    check_ended(job, "silence-timed-out", kind="system")
    conflict = [r for r in caplog.records if "away handling never runs" in r.getMessage()]
    assert len(conflict) == (1 if away is not None else 0)


async def test_customer_speech_restarts_the_count(tmp_path: Path) -> None:
    job = await start_job(tmp_path, user_away_timeout=None, endcall_kwargs={"silence_timeout": 0.8})
    for _ in range(3):
        await asyncio.sleep(0.5)
        job.stt.say("still here")
    assert job.end is not None and job.end.state is EndState.ACTIVE
    t0 = time.monotonic()
    await job.finished()
    assert time.monotonic() - t0 >= 0.3
    check_ended(job, "silence-timed-out", kind="system")


# ------------------------------------------------------------------ the room and the job


async def test_customer_leaves_without_a_request(tmp_path: Path) -> None:
    job = await start_job(tmp_path)
    job.stt.say("partial answer", final=False)
    await asyncio.sleep(0.05)
    await job.customer.disconnect()
    await job.finished()
    doc = check_ended(job, "customer-disconnected", kind="customer", identity=CUSTOMER, attrs=False)
    assert doc["end"]["disconnect_reason"] == "CLIENT_INITIATED"
    assert doc["end"]["channel"] in ("disconnect", "session")
    # the answer that was still being transcribed became final while closing: it is in
    users = [m["content"][0] for m in history(doc, "user")]
    assert users == ["partial answer"], users


async def test_final_transcript_not_yet_a_turn_is_in_the_report(tmp_path: Path) -> None:
    job = await start_job(tmp_path)
    job.stt.say("my last words", final=False)
    await asyncio.sleep(0.05)
    ack = json.loads(await rpc_end(job, request("r-flush")))
    assert ack["status"] == "accepted"
    await job.finished()
    doc = check_ended(job, "customer-ended-call", kind="customer")
    users = [m["content"][0] for m in history(doc, "user")]
    assert users == ["my last words"], users


async def test_room_deleted(tmp_path: Path) -> None:
    job = await start_job(tmp_path)
    await job.hub.delete_room(ROOM)
    await job.finished()
    doc = check_ended(job, "room-deleted", kind="server", attrs=False)
    assert doc["end"]["disconnect_reason"] == "ROOM_DELETED"


async def test_worker_shutdown(tmp_path: Path) -> None:
    job = await start_job(tmp_path)
    job.worker_shutdown("worker draining")
    await job.finished()
    doc = check_ended(job, "worker-shutdown", kind="system")
    assert doc["end"]["job_shutdown_reason"] == "worker draining"


async def test_session_error(tmp_path: Path) -> None:
    async def fail(chat_ctx: Any, tools: Any) -> str:
        raise APIConnectionError("model down", retryable=False)

    job = await start_job(
        tmp_path,
        llm_script=[fail],
        session_kwargs={
            "conn_options": SessionConnectOptions(
                llm_conn_options=APIConnectOptions(max_retry=0), max_unrecoverable_errors=0
            )
        },
    )
    job.stt.say("hello?")
    await job.finished()
    doc = check_ended(job, "agent-error", kind="system")
    assert "model down" in (doc["end"]["error"] or "")


async def test_user_code_closes_the_session(tmp_path: Path) -> None:
    job = await start_job(tmp_path)
    assert job.session is not None
    job.session.shutdown()
    await job.finished()
    check_ended(job, "server-ended-call", kind="server")


async def test_user_code_calls_ctx_shutdown(tmp_path: Path) -> None:
    job = await start_job(tmp_path)
    job.ctx.shutdown("done")
    await job.finished()
    # the user's call is the one shutdown; EndCall's own is a no-op on the same future
    assert job.end is not None and job.end.record.reason == "server-ended-call"
    assert len(job.pipeline.stored) == 1 and len(job.receiver.requests) == 1
    assert job.shutdown_calls[0] == "done"


# ------------------------------------------------------------------ idempotency and auth


async def test_duplicate_request_ids_get_identical_acks(tmp_path: Path) -> None:
    slow_backend = asyncio.Event()  # keeps the job in on_session_end (delivery) for a while
    job = await start_job(
        tmp_path, endcall_kwargs={"delete_room": False}, receiver_gate=slow_backend
    )
    first = await rpc_end(job, request("dup"))
    again = await rpc_end(job, request("dup"))
    over_data = await data_end(job, request("dup"))
    assert json.loads(first) == json.loads(again) == over_data
    other = json.loads(await rpc_end(job, request("other")))
    # ending or already ended, depending on how fast the (short) end path ran meanwhile
    assert other["status"] in ("already_ending", "already_ended")
    assert other["end_id"] == over_data["end_id"]
    assert other["reason"] == "customer-ended-call"
    assert job.end is not None
    await job.end.wait()
    late = json.loads(await rpc_end(job, request("late")))
    assert late["status"] == "already_ended"
    assert json.loads(await rpc_end(job, request("dup"))) == json.loads(first)
    assert json.loads(await rpc_end(job, request("other"))) == other
    slow_backend.set()
    await job.finished()
    check_ended(job, "customer-ended-call", kind="customer")


async def test_second_customer_and_foreign_agent_are_forbidden(tmp_path: Path) -> None:
    job = await start_job(tmp_path, extra_customers=("cand-2",))
    other = await job.hub.connect(ROOM, "cand-2")
    observer = await job.hub.connect(
        ROOM, "observer-agent", kind=rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    )
    await job.hub.settle()
    for room in (other, observer):
        with pytest.raises(rtc.RpcError) as exc:
            await rpc_end(job, request("f1"), caller=room)
        assert exc.value.code == 4403
        assert json.loads(exc.value.data or "{}")["code"] == "forbidden"
        answer = await data_end(job, request("f2"), caller=room)
        assert answer["type"] == "end.error" and answer["code"] == "forbidden"
        assert answer["id"] == "f2"
    assert job.end is not None and job.end.state is EndState.ACTIVE
    ack = json.loads(await rpc_end(job, request("ok")))
    assert ack["status"] == "accepted"
    await job.finished()
    check_ended(job, "customer-ended-call", kind="customer", identity=CUSTOMER)


async def test_custom_allow_policy(tmp_path: Path) -> None:
    job = await start_job(
        tmp_path,
        extra_customers=("supervisor",),
        endcall_kwargs={"allow": lambda identity, req: identity == "supervisor"},
    )
    with pytest.raises(rtc.RpcError) as exc:
        await rpc_end(job, request("c1"))
    assert exc.value.code == 4403
    sup = await job.hub.connect(ROOM, "supervisor")
    await job.hub.settle()
    ack = json.loads(await rpc_end(job, request("c2"), caller=sup))
    assert ack["status"] == "accepted"
    await job.finished()
    check_ended(job, "customer-ended-call", kind="customer", identity="supervisor")


async def test_a_thousand_malformed_requests_leave_the_session_working(tmp_path: Path) -> None:
    job = await start_job(tmp_path)
    garbage = [
        "",
        "{",
        "[]",
        '{"v":1}',
        '{"type":"end.request","v":2,"id":"x"}',
        '{"type":"end.request","v":1,"id":"bad id"}',
        "\x00" * 100,
        json.dumps({"type": "end.request", "v": 1, "id": "a", "reason": "worker-shutdown"}),
    ]

    async def one(i: int) -> int:
        try:
            await rpc_end(job, garbage[i % len(garbage)])
        except rtc.RpcError as e:
            return e.code
        return 0

    t0 = time.monotonic()
    codes = await asyncio.gather(*(one(i) for i in range(900)))
    for i in range(100):
        await job.customer.local_participant.publish_data(
            garbage[i % len(garbage)], destination_identities=[AGENT_ID], topic="end_interview"
        )
    elapsed = time.monotonic() - t0
    assert set(codes) <= {4400, 4426}, set(codes)
    assert codes.count(4426) == 900 // len(garbage) + (1 if 900 % len(garbage) > 4 else 0)
    assert elapsed < 60
    assert job.end is not None and job.end.state is EndState.ACTIVE
    # the session still works: a turn, then a normal end
    await speak(job, "Are you still there?", "Yes, I am.")
    await wait_until(lambda: job.session is not None and job.session.agent_state == "listening")
    ack = json.loads(await rpc_end(job, request("after-flood")))
    assert ack["status"] == "accepted"
    await job.finished()
    doc = check_ended(job, "customer-ended-call", kind="customer")
    assert [m["content"][0] for m in history(doc, "assistant")] == ["Yes, I am."]


async def test_running_tool_calls_get_the_drain_timeout(tmp_path: Path) -> None:
    from livekit.agents import function_tool

    finished: list[str] = []

    @function_tool
    async def save_notes() -> str:
        """Save the interview notes."""
        await asyncio.sleep(1.0)
        finished.append("saved")
        return "saved"

    job = await start_job(
        tmp_path, agent_tools=[save_notes], llm_script=[ToolCall("save_notes"), "Notes saved."]
    )
    job.stt.say("Please save my answers.")
    await wait_until(lambda: any(n == "speech_created" for n, _ in job.events))
    await asyncio.sleep(0.3)  # the tool is running
    ack = json.loads(await rpc_end(job, request("r-tool")))
    assert ack["status"] == "accepted" and finished == []
    await job.finished()
    doc = check_ended(job, "customer-ended-call", kind="customer")
    assert finished == ["saved"]
    assert doc["end"]["drain_s"] >= 0.5


async def test_a_tool_slower_than_the_drain_timeout_does_not_hold_the_end(tmp_path: Path) -> None:
    from livekit.agents import function_tool

    lookups: list[str] = []

    @function_tool
    async def slow_lookup() -> str:
        """Look something up (slowly)."""
        await asyncio.sleep(3)
        lookups.append("done")
        return "done"

    job = await start_job(
        tmp_path,
        agent_tools=[slow_lookup],
        llm_script=[ToolCall("slow_lookup")],
        endcall_kwargs={"drain_timeout": 0.5, "close_timeout": 0.5},
    )
    job.stt.say("Look it up.")
    await wait_until(lambda: any(n == "speech_created" for n, _ in job.events))
    await asyncio.sleep(0.2)
    await rpc_end(job, request("r-slow"))
    assert job.end is not None
    record = await asyncio.wait_for(job.end.wait(), 10)
    assert record.state is EndState.ENDED
    assert len(job.pipeline.stored) == 1 and job.shutdown_calls == ["customer-ended-call"]
    doc = json.loads(job.pipeline.stored[0][1])
    assert doc["end"]["drain_timed_out"] is True
    assert lookups == []  # the report did not wait for the tool
    await job.finished(timeout=90)
