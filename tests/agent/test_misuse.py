"""Misuse fails loudly or still works; an accepted end is durable before its ack (issue 11)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
import pytest
from agent_harness import SECRET, CountingPipeline, request, rpc_end, start_job

from endcall import EndCall
from endcall.reports.outbox import SqliteOutbox
from endcall.reports.relay import Relay


def errors(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and text in r.getMessage()]


@pytest.mark.parametrize("entry", ["no_start", "raise"])
async def test_a_job_whose_start_never_ran_still_reports(
    entry: str, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Point 1: no `end.start()` (forgotten, or the entrypoint raised first): no report."""
    caplog.set_level(logging.INFO)
    job = await start_job(tmp_path, entry=entry)
    if entry == "no_start":
        job.ctx.shutdown(reason="the call is over")
    await job.finished()
    reports = job.receiver.reports()
    assert len(reports) == 1
    doc = reports[0]
    assert doc["complete"] is True and doc["ended_reason"] == "agent-error"
    assert "start() was never called" in doc["end"]["error"]
    assert errors(caplog, "EndCall.start() was never called")
    assert job.end is not None and job.outbox.get(job.end.end_id) is not None


async def test_a_second_endcall_on_one_job_raises(tmp_path: Any) -> None:
    """Point 6: two EndCall on one job context sent two reports with different ids."""
    job = await start_job(tmp_path)
    with pytest.raises(RuntimeError, match="already exists for this JobContext"):
        EndCall(job.ctx, job.session, pipeline=job.pipeline)
    await rpc_end(job, request("r1"))
    await job.finished()
    assert len(job.receiver.requests) == 1


@pytest.mark.parametrize("wired", [False, True])
async def test_on_session_end_not_wired_is_logged(
    wired: bool, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    job = await start_job(tmp_path, with_session_end=wired)
    await rpc_end(job, request("r1"))
    await job.finished()
    found = errors(caplog, "on_session_end is not wired")
    assert bool(found) is not wired
    if found:
        assert "on_session_end=EndCall.on_session_end" in found[0].getMessage()
    assert len(job.receiver.requests) == 1


class SlowMarking(CountingPipeline):
    """The outbox takes a while to record the accepted end."""

    written: bool | None = None

    async def mark_ending(self, end_id: str, ending: Any, body: bytes) -> bool:
        await asyncio.sleep(0.3)
        self.written = await super().mark_ending(end_id, ending, body)
        return self.written


async def test_an_accepted_end_is_in_the_outbox_before_the_ack(tmp_path: Any) -> None:
    job = await start_job(tmp_path, pipeline_cls=SlowMarking)
    assert job.end is not None and isinstance(job.pipeline, SlowMarking)
    ack = json.loads(await rpc_end(job, request("r1", meta={"button": "end"})))
    assert ack["status"] == "accepted"
    # the moment the ack arrived, the write had finished: the accepted end is in the draft
    # row, or (when the end path was quicker still) the final report is already stored
    assert job.pipeline.written is not None
    row = job.outbox.get(job.end.end_id + ".draft")
    final = job.outbox.get(job.end.end_id)
    if row is not None:
        assert job.pipeline.written and row.ending is not None
        assert row.ending["ended_reason"] == "customer-ended-call"
        assert row.ending["request_id"] == "r1" and row.ending["meta"] == {"button": "end"}
        assert row.ending["initiator"] == {"kind": "customer", "identity": "cand-1"}
    else:
        assert final is not None and json.loads(final.body)["request_id"] == "r1"
    await job.finished()


async def test_a_crash_after_an_accepted_end_delivers_its_reason(tmp_path: Any) -> None:
    """Point 4: an end accepted as server-ended-call, the process killed during the goodbye:
    the draft went out as agent-crashed, initiator system."""
    job = await start_job(tmp_path, tts_duration=3.0)
    assert job.end is not None
    ack = await job.end.end(
        "server-ended-call", request_id="srv_1", meta={"by": "backend"}, goodbye="Goodbye."
    )
    assert ack.status == "accepted"
    # the process dies now, in the goodbye: what a relay sends once the lease is gone
    sent: list[httpx.Request] = []

    async def receiver(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    later = SqliteOutbox(job.outbox.path, clock=lambda: time.time() + 3600)
    relay = Relay(later, [SECRET], transport=httpx.MockTransport(receiver))
    stats = await relay.run_once()
    await relay.aclose()
    later.close()
    assert stats.drafts == 1 and len(sent) == 1
    doc = json.loads(sent[0].content)
    assert sent[0].headers["webhook-id"] == f"{job.end.end_id}.draft"
    assert doc["complete"] is False and doc["ended_reason"] == "server-ended-call"
    assert doc["initiator"]["kind"] == "server"
    assert doc["request_id"] == "srv_1" and doc["meta"] == {"by": "backend"}
    await job.finished()
    # the agent was alive after all: its final report still goes out (receivers keep it)
    final = job.receiver.reports()
    assert len(final) == 1 and final[0]["complete"] is True


async def test_an_unwritable_outbox_is_an_error_at_start(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Point 12: a read-only outbox made drafts silently skipped."""

    def read_only(ob: SqliteOutbox) -> None:
        ob._conn.execute("PRAGMA query_only = ON")

    job = await start_job(tmp_path, outbox_setup=read_only)
    found = errors(caplog, "cannot be written")
    assert found and "ENDCALL_OUTBOX" in found[0].getMessage()
    await rpc_end(job, request("r1"))
    await job.finished()
    assert len(job.receiver.requests) == 1  # the call and its report still work
