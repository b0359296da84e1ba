"""`endcall.agent.end_path`: from an accepted end to the report stored, the job shut down, the room
deleted and the report delivered."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

from parts_fakes import FakeSession, make_call, trigger

from endcall.agent.annotations import Annotations
from endcall.agent.checkpoints import Checkpoints
from endcall.agent.end_machine import EndState
from endcall.agent.end_path import EndPath, promised_seconds
from endcall.agent.transcript import Transcript


class Sink:
    def __init__(self, *, stores: bool = True, delivers: bool = True) -> None:
        self.stored: list[bytes] = []
        self.delivered: list[str] = []
        self.closed = False
        self._stores, self._delivers = stores, delivers

    async def save_draft(self, end_id: str, body: bytes) -> None:
        pass

    async def store(self, end_id: str, body: bytes) -> bool:
        self.stored.append(body)
        return self._stores

    async def deliver(self, end_id: str, *, within: float | None = None) -> Any:
        self.delivered.append(end_id)
        return SimpleNamespace(delivered=self._delivers, attempts=1, last_status=200)

    async def aclose(self) -> None:
        self.closed = True


def _path(sink: Sink, *, delete_room: bool = True) -> EndPath:
    session = FakeSession()
    call = make_call(session)
    call.closed.set()  # a session already closed: nothing to drain
    annotations = Annotations({"k": "v"})
    transcript = Transcript(session, 0.1)
    transcript.on_transcribed(SimpleNamespace(transcript="last words", is_final=True))
    return EndPath(
        call,
        sink,
        transcript=transcript,
        checkpoints=Checkpoints(call, sink, annotations),
        annotations=annotations,
        webhook=None,
        own_sink=True,
        tool_name="end_call",
        drain_timeout=1.0,
        close_timeout=0.1,
        interrupt_on_customer_end=True,
        delete_room=delete_room,
        delete_room_after=0.1,
    )


async def _end(path: EndPath) -> None:
    done = path.begin()
    t = trigger("customer-ended-call", "customer", "cand")
    assert path._call.machine.submit(t).accepted
    path.start(t, None)
    await path.finish(done, None)


async def test_the_report_is_stored_then_the_job_shut_down_and_the_room_deleted() -> None:
    sink = Sink()
    path = _end_path = _path(sink)
    await _end(_end_path)
    call = path._call
    assert call.machine.state is EndState.ENDED
    assert path.done is not None and path.done.result().reason == "customer-ended-call"
    doc = json.loads(sink.stored[0])
    assert doc["ended_reason"] == "customer-ended-call" and doc["annotations"] == {"k": "v"}
    assert path.report == sink.stored[0] and path.stored is True
    assert call.ctx.shutdowns == ["customer-ended-call"]
    assert call.ctx.deleted == 1
    assert sink.delivered == [call.end_id] and path.delivery.delivered
    assert sink.closed  # EndCall made the pipeline: it closes it


async def test_without_delete_room_the_room_stays() -> None:
    sink = Sink()
    path = _path(sink, delete_room=False)
    await _end(path)
    assert path._call.ctx.deleted == 0


async def test_a_report_not_stored_is_still_delivered() -> None:
    sink = Sink(stores=False)
    path = _path(sink)
    await _end(path)
    assert path.stored is False and sink.delivered


async def test_the_session_is_shut_down_and_its_close_awaited() -> None:
    sink = Sink()
    path = _path(sink)
    path._call.closed.clear()
    asyncio.get_running_loop().call_later(0.05, path._call.closed.set)
    await _end(path)
    assert path._call.session.shutdowns == 1
    assert "close_timed_out" not in json.loads(sink.stored[0])["end"]


def test_the_ack_promise() -> None:
    assert promised_seconds(10, 2, 5, None) == 17
    assert promised_seconds(10, 2, 5, 5) == 17 + 5 + 1
