"""`endcall.agent.checkpoints`: crash drafts while the call runs, coalesced in a burst."""

from __future__ import annotations

import asyncio
import json

from parts_fakes import make_call

from endcall.agent.annotations import Annotations
from endcall.agent.checkpoints import Checkpoints


class Sink:
    def __init__(self) -> None:
        self.drafts: list[tuple[str, bytes]] = []

    async def save_draft(self, end_id: str, body: bytes) -> None:
        self.drafts.append((end_id, body))


async def test_no_draft_before_the_call_starts() -> None:
    call, sink = make_call(), Sink()
    Checkpoints(call, sink, Annotations(None)).schedule()
    await asyncio.sleep(0.05)
    assert sink.drafts == []


async def test_a_draft_is_saved_with_the_annotations() -> None:
    call, sink = make_call(), Sink()
    call.started = True
    checkpoints = Checkpoints(call, sink, Annotations({"test_id": "t1"}))
    checkpoints.schedule()
    await asyncio.sleep(0.1)
    assert len(sink.drafts) == 1
    end_id, body = sink.drafts[0]
    doc = json.loads(body)
    assert end_id == call.end_id == doc["end_id"]
    assert doc["complete"] is False and doc["annotations"] == {"test_id": "t1"}


async def test_a_burst_is_one_draft_now_and_one_later() -> None:
    call, sink = make_call(), Sink()
    call.started = True
    checkpoints = Checkpoints(call, sink, Annotations(None))
    for _ in range(5):
        checkpoints.schedule()
    await asyncio.sleep(0.1)
    assert len(sink.drafts) == 1  # the rest wait for DRAFT_MIN_INTERVAL
    await checkpoints.stop()


async def test_stop_ends_the_schedule() -> None:
    call, sink = make_call(), Sink()
    call.started = True
    checkpoints = Checkpoints(call, sink, Annotations(None), interval=1.0)
    checkpoints.start()
    await asyncio.sleep(0.1)
    await checkpoints.stop()
    count = len(sink.drafts)
    checkpoints.schedule()
    await asyncio.sleep(0.05)
    assert count == 1 and len(sink.drafts) == 1


def test_the_interval_is_at_most_thirty_seconds() -> None:
    assert Checkpoints(make_call(), Sink(), Annotations(None), interval=300).interval == 30.0
    assert Checkpoints(make_call(), Sink(), Annotations(None), interval=0.1).interval == 1.0


async def test_the_minimal_draft_needs_no_session() -> None:
    call = make_call()
    doc = json.loads(Checkpoints(call, Sink(), Annotations(None)).minimal_draft())
    assert doc["end_id"] == call.end_id and doc["complete"] is False
