"""`endcall.agent.room_signals`: room, job and session events as triggers."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from livekit import rtc
from parts_fakes import make_call

from endcall.agent.customer import Presence
from endcall.agent.decisions import Decisions
from endcall.agent.durable_end import DurableEnd
from endcall.agent.end_machine import Trigger
from endcall.agent.end_tool import GoodbyePlan
from endcall.agent.job_lifecycle import JobShutdown
from endcall.agent.room_signals import Signals, describe_error


def _signals(grace: float = 0.0) -> tuple[Signals, list[Trigger]]:
    call = make_call()
    accepted: list[Trigger] = []

    def on_accepted(t: Trigger, _plan: GoodbyePlan | None) -> None:
        accepted.append(t)

    decisions = Decisions(
        call,
        sink=object(),
        durable=DurableEnd(),
        allow=None,
        customer=lambda: "cand",
        minimal_draft=lambda: b"{}",
        on_accepted=on_accepted,
    )
    presence = Presence(call, decisions.submit_safely, disconnect_grace=grace, shutdown_grace=grace)
    presence.refresh()
    return Signals(call, decisions, presence), accepted


async def test_the_agent_dropped_from_the_room_is_an_agent_error() -> None:
    s, accepted = _signals()
    s.on_room_disconnected(rtc.DisconnectReason.SIGNAL_CLOSE)
    assert accepted[0].reason == "agent-error" and accepted[0].disconnect_reason == "SIGNAL_CLOSE"
    assert s._call.room_gone.is_set()


async def test_the_room_deleted_is_room_deleted() -> None:
    s, accepted = _signals()
    s.on_room_disconnected(rtc.DisconnectReason.ROOM_DELETED)
    assert accepted[0].reason == "room-deleted"


async def test_job_shutdowns() -> None:
    s, accepted = _signals()
    s.on_job_shutdown(JobShutdown(user_initiated=False, reason="job crashed"))
    assert accepted[0].reason == "agent-error" and accepted[0].error == "job crashed"
    assert s._call.end_info["job_shutdown_reason"] == "job crashed"
    s2, accepted2 = _signals()
    s2.on_job_shutdown(JobShutdown(user_initiated=False, reason="parent process shutdown"))
    assert accepted2[0].reason == "worker-shutdown"


async def test_session_closes() -> None:
    cases = {
        "error": "agent-error",
        "participant_disconnected": "customer-disconnected",
        "job_shutdown": "worker-shutdown",
        "user_initiated": "server-ended-call",
    }
    for value, reason in cases.items():
        s, accepted = _signals()
        s.on_session_close(SimpleNamespace(reason=SimpleNamespace(value=value), error=None))
        assert s._call.closed.is_set() and s._call.close_reason == value
        assert accepted[0].reason == reason, value


async def test_a_close_while_a_grace_runs_decides_nothing() -> None:
    s, accepted = _signals(grace=0.1)
    s._presence.system_end("room-deleted", "server", "room", None)
    s.on_session_close(SimpleNamespace(reason=SimpleNamespace(value="user_initiated"), error=None))
    await asyncio.sleep(0.2)
    assert [t.reason for t in accepted] == ["room-deleted"]


async def test_the_job_hooks_end_an_active_call() -> None:
    s, accepted = _signals()
    s.job_ending()
    s.job_ending()
    assert [t.reason for t in accepted] == ["server-ended-call"]


def test_describe_error() -> None:
    assert describe_error(None) is None
    assert describe_error(SimpleNamespace(type="llm_error", error="quota")) == "llm_error: quota"
    assert describe_error(ValueError("x" * 2000)) == ("ValueError: " + "x" * 2000)[:1000]
