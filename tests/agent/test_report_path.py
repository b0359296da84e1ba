"""Where the report goes: crash drafts while the call runs, the final report committed before
any send, delivery from `on_session_end` or (without it) from a shutdown callback, and a
backend that is down (the report stays in the outbox for a relay)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path

import pytest
from agent_harness import request, rpc_end, start_job, wait_until

from endcall import EndState


async def test_drafts_on_each_turn_and_periodically_then_the_final_report(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"checkpoint_interval": 1.0})
    assert job.end is not None
    end_id = job.end.end_id
    # the first checkpoint when the call starts (serialized in slices on the event loop)
    await wait_until(lambda: len(job.pipeline.drafts) >= 1)
    job.llm.add("Good answer.")
    job.stt.say("My first answer.")
    await wait_until(lambda: any("My first answer." in b.decode() for _, b in job.pipeline.drafts))
    await wait_until(lambda: any("Good answer." in b.decode() for _, b in job.pipeline.drafts))
    draft = json.loads(job.pipeline.drafts[-1][1])
    assert draft["end_id"] == end_id and draft["complete"] is False
    assert draft["ended_reason"] == "agent-crashed" and draft["initiator"]["kind"] == "system"
    record = job.outbox.get(end_id + ".draft")
    assert record is not None and record.is_draft
    # periodic checkpoints without any turn
    n1 = len(job.pipeline.drafts)
    await asyncio.sleep(1.3)
    assert len(job.pipeline.drafts) > n1
    await rpc_end(job, request("r1"))
    await job.finished()
    n_end = len(job.pipeline.drafts)
    final = job.outbox.get(end_id)
    assert final is not None and not final.is_draft and final.status == "delivered"
    assert json.loads(final.body)["complete"] is True
    await asyncio.sleep(1.2)
    assert len(job.pipeline.drafts) == n_end  # no checkpoint after the final report
    assert len(job.receiver.requests) == 1


async def test_without_on_session_end_a_shutdown_callback_delivers(tmp_path: Path) -> None:
    job = await start_job(tmp_path, with_session_end=False)
    await rpc_end(job, request("r1"))
    await job.finished()
    assert job.end is not None and job.end.state is EndState.ENDED
    assert len(job.receiver.requests) == 1
    assert job.end.delivery is not None and job.end.delivery.delivered


async def test_backend_down_keeps_the_report_for_a_relay(tmp_path: Path) -> None:
    job = await start_job(
        tmp_path, receiver_status=503, delivery_window=0.5, endcall_kwargs={"delete_room": False}
    )
    ack = json.loads(await rpc_end(job, request("r1")))
    await job.finished()
    assert job.end is not None
    outcome = job.end.delivery
    assert outcome is not None and not outcome.delivered and not outcome.dead
    assert outcome.last_status == 503
    record = job.outbox.get(ack["end_id"])
    assert record is not None and not record.is_draft
    assert record.status == "pending" and record.lease_owner is None  # free for a relay
    assert record.body == job.pipeline.stored[0][1]
    assert job.attrs_seen["endcall.report"] == "stored"
    assert job.shutdown_calls == ["customer-ended-call"]


async def test_outbox_failure_still_delivers_from_memory(tmp_path: Path) -> None:
    job = await start_job(tmp_path)
    job.outbox.close()  # the database is gone (disk, permissions…)
    ack = json.loads(await rpc_end(job, request("r1")))
    await job.finished()
    assert ack["status"] == "accepted"
    assert job.end is not None and job.end.state is EndState.ENDED
    assert len(job.receiver.requests) == 1
    assert job.shutdown_calls == ["customer-ended-call"]


async def test_each_end_logs_how_long_its_steps_took(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One INFO line per end, read by bench/end_to_report.py for its breakdown: every step
    taken, in order, and a total that is their sum."""
    with caplog.at_level(logging.INFO, logger="endcall"):
        job = await start_job(tmp_path)
        assert job.end is not None
        await rpc_end(job, request("r1"))
        await job.finished()
    lines = [r.getMessage() for r in caplog.records if " steps (ms): " in r.getMessage()]
    assert len(lines) == 1, lines
    match = re.fullmatch(r"endcall: end (e_\S+) steps \(ms\): (.*); total (\d+)", lines[0])
    assert match is not None, lines[0]
    assert match.group(1) == job.end.end_id
    steps = dict(part.split(" ") for part in match.group(2).split(", "))
    names = ["accept", "drain", "transcript", "close", "report", "store", "delivery"]
    assert list(steps) == names
    ms = {k: int(v) for k, v in steps.items()}
    assert all(v >= 0 for v in ms.values())
    assert abs(sum(ms[k] for k in names[1:]) - int(match.group(3))) <= len(names)  # rounding
