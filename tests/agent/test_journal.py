"""The INFO lines that tell an end's story, each with the end_id and the room name."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from agent_harness import ROOM, start_job

from endcall.testing import request_end


def lines(caplog: pytest.LogCaptureFixture, end_id: str) -> list[str]:
    prefix = f"endcall: {end_id} room={ROOM}: "
    return [
        r.getMessage()[len(prefix) :]
        for r in caplog.records
        if r.name == "endcall" and r.getMessage().startswith(prefix)
    ]


async def test_ending_stored_delivered(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "endcall")
    job = await start_job(tmp_path)
    ack = await request_end(job.customer, request_id="r-story")
    await job.finished()
    story = lines(caplog, ack.end_id)
    assert story[0] == "ending (customer-ended-call) by customer over rpc, request r-story"
    assert story[1] == f"report stored in the outbox at {tmp_path / 'outbox.db'}"
    assert story[2] == "report delivered (attempt 1, HTTP 200)"
    assert len(story) == 3


async def test_left_pending_when_the_window_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "endcall")
    job = await start_job(tmp_path, receiver_status=503, delivery_window=0.5)
    ack = await request_end(job.customer)
    await job.finished()
    story = lines(caplog, ack.end_id)
    assert story[:2] == [
        "ending (customer-ended-call) by customer over rpc, request " + ack.id,
        f"report stored in the outbox at {tmp_path / 'outbox.db'}",
    ]
    pending = re.fullmatch(
        r"report left pending in the outbox at (\S+) \(next attempt at "
        r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC); last error: (.*)\)",
        story[2],
    )
    assert pending is not None, story
    assert pending.group(1) == str(tmp_path / "outbox.db") and "503" in pending.group(3)
    row = job.outbox.get(ack.end_id)
    assert row is not None and row.status == "pending"
