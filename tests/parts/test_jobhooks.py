"""`endcall.agent.job_hooks`: what the job's hooks wait for; a job whose start() never ran."""

from __future__ import annotations

import json

import pytest
from test_endpath import Sink, _path

from endcall.agent import misuse
from endcall.agent.customer import Presence
from endcall.agent.decisions import Decisions
from endcall.agent.durable_end import DurableEnd
from endcall.agent.job_hooks import JobHooks
from endcall.agent.room_signals import Signals


def _hooks(sink: Sink) -> JobHooks:
    path = _path(sink)
    call = path._call
    decisions = Decisions(
        call,
        sink=sink,
        durable=DurableEnd(),
        allow=None,
        customer=lambda: None,
        minimal_draft=lambda: b"{}",
        on_accepted=path.start,
    )
    presence = Presence(call, decisions.submit_safely, disconnect_grace=0, shutdown_grace=0)
    signals = Signals(call, decisions, presence)
    return JobHooks(
        call, path, presence=presence, signals=signals, decisions=decisions, channels=lambda: None
    )


async def test_a_job_never_started_still_hands_its_report_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Sink()
    hooks = _hooks(sink)
    await hooks.on_session_end()
    doc = json.loads(sink.stored[0])
    assert doc["ended_reason"] == "agent-error" and doc["end"]["error"] == misuse.NOT_STARTED
    assert misuse.NOT_STARTED in caplog.text


async def test_the_shutdown_callback_says_when_on_session_end_is_not_wired(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Sink()
    hooks = _hooks(sink)
    hooks._path.begin()
    await hooks.on_shutdown_callback("room disconnected")
    assert misuse.NO_SESSION_END in caplog.text
    assert json.loads(sink.stored[0])["ended_reason"] == "server-ended-call"
