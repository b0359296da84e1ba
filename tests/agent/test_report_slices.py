"""Reports serialized in slices (`endcall.agent.report_json`, issue 21): the same bytes as the
whole document, draft after draft, trimmed or not; and a long call's draft leaves the event
loop free."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
from typing import Any

import pytest
from livekit.agents import AgentSession
from livekit.agents.llm import ChatContext, ChatMessage, FunctionCall, FunctionCallOutput
from livekit.agents.voice.report import SessionReport

from endcall.agent import report, report_json
from endcall.agent.end_machine import EndRecord, EndState
from endcall.protocol import Initiator, canonical_json

NOW = 1_700_000_000.25

# odd_session's int keys in ChatMessage.extra (on purpose)
pytestmark = pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")


class Thing:
    """No model_dump: serialized through repr."""

    def __repr__(self) -> str:
        return "<thing>"


class Event:
    def __init__(self, i: int, extra: dict[str, Any] | None = None, kind: str = "") -> None:
        self.type = kind or ("agent_state_changed" if i % 3 else "user_input_transcribed")
        self.i = i
        self.extra = extra or {}

    def model_dump(self) -> dict[str, Any]:
        return {"type": self.type, "i": self.i, "transcript": f"words {self.i}", **self.extra}


class Session:
    """What reports read from an AgentSession."""

    def __init__(self, turns: int, text: str = "an answer of some length, café ☕") -> None:
        self.history = ChatContext()
        self._recorded_events: list[Any] = []
        for i in range(turns):
            self.add_turn(i, text)

    def add_turn(self, i: int, text: str) -> None:
        self.history.add_message(role="user", content=f"q{i} {text}")
        msg = self.history.add_message(role="assistant", content=f"a{i} {text}")
        msg.metrics = {"llm_node_ttft": 0.25}
        if i % 7 == 3:
            call = FunctionCall(call_id=f"c{i}", name="lookup", arguments='{"q": 1}')
            self.history.items.append(call)
            out = FunctionCallOutput(call_id=f"c{i}", name="lookup", output="42", is_error=False)
            self.history.items.append(out)
        self._recorded_events.append(Event(i))
        self._recorded_events.append(Event(i, kind="metrics_collected"))
        self._recorded_events.append(Event(i + 10_000))


def odd_session() -> Session:
    """Everything a JSON-safe copy has to work on."""
    s = Session(30)
    s.history.add_message(role="user", content="a lone surrogate \ud800 and NUL \x00, NaN text")
    odd = s.history.add_message(role="assistant", content="keys")
    odd.extra = {1: "one", "1": "uno", "n": float("nan")}  # no validation on assignment
    s._recorded_events += [
        Event(1, {"at": datetime.datetime(2026, 1, 1)}),
        Event(2, {"bad": float("inf"), "thing": Thing(), 3: [1, {"x": float("-inf")}]}),
        Event(3, {"text": "\udc00 low surrogate"}),
    ]
    return s


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: NOW)


@pytest.fixture
def sliced_only(caplog: pytest.LogCaptureFixture) -> Any:
    """Fails a test whose sliced build fell back to the whole document."""
    caplog.set_level(logging.DEBUG, logger="endcall")
    yield
    whole = [r.getMessage() for r in caplog.records if "serialized whole" in r.getMessage()]
    assert not whole, whole


def _draft(session: Any, **kw: Any) -> bytes:
    return report.build_draft(
        "e_1", ctx=None, session=session, room_name="r", started_at=1.0, annotations={"a": 1}, **kw
    )


async def _draft_sliced(session: Any, cache: report.ReportJson) -> bytes:
    return await report.build_draft_async(
        "e_1",
        ctx=None,
        session=session,
        room_name="r",
        started_at=1.0,
        annotations={"a": 1},
        cache=cache,
    )


@pytest.mark.usefixtures("frozen", "sliced_only")
async def test_drafts_are_the_whole_documents_bytes_draft_after_draft() -> None:
    session = odd_session()
    cache = report.ReportJson()
    for step in range(5):
        assert await _draft_sliced(session, cache) == _draft(session), step
        # what happens between two drafts: new turns, an old item changed in place, an item
        # replaced, an item removed, an event added and one changed
        session.add_turn(100 + step, "more")
        items = session.history.items
        items[3].metrics = {"llm_node_ttft": float(step)}
        items[5] = ChatMessage(role="user", content=[f"replaced {step}"], id=items[5].id)
        del items[7]
        session._recorded_events[0].extra["changed"] = step
        session._recorded_events.append(
            Event(500 + step, {"when": datetime.date(2026, 1, step + 1)})
        )


@pytest.mark.usefixtures("frozen", "sliced_only")
async def test_a_draft_encodes_only_what_is_new_or_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    session = odd_session()
    cache = report.ReportJson()
    first = await _draft_sliced(session, cache)
    encoded: list[Any] = []
    real = report_json._loose  # measured once per element encoded

    def spy(value: Any) -> int:
        encoded.append(value)
        return real(value)

    monkeypatch.setattr(report_json, "_loose", spy)
    assert await _draft_sliced(session, cache) == first and encoded == []
    session.add_turn(99, "new")  # 2 messages, 2 events
    session.history.items[0].metrics = {"llm_node_ttft": 1.5}
    assert await _draft_sliced(session, cache) == _draft(session)
    assert len(encoded) == 5, encoded


@pytest.mark.usefixtures("frozen", "sliced_only")
async def test_trimmed_drafts_are_the_whole_documents_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = odd_session()
    for i in range(200):
        session.add_turn(i, "x" * 300)
    size = len(_draft(session))
    cache = report.ReportJson()
    for limit in (size, size - 1, size // 2, size // 4, size // 10, 20_000, 3_000):
        monkeypatch.setattr(report, "MAX_REPORT_SIZE", limit)
        whole = _draft(session)
        assert await _draft_sliced(session, cache) == whole, limit
        if limit < size:
            assert "trimmed" in json.loads(whole)["end"]


class Ctx:
    """A job context whose `make_session_report` makes livekit's own `SessionReport`."""

    def __init__(self, options: Any, fails: bool = False) -> None:
        self.options = options
        self.fails = fails
        self.job = type("Job", (), {"id": "AJ_1", "agent_name": "a", "room": None})()
        self.job.room = type("Room", (), {"sid": "RM_1", "name": "r"})()

    def make_session_report(self, session: Any) -> SessionReport:
        if self.fails:
            raise RuntimeError("the RecorderIO is still recording")
        return SessionReport(
            job_id="AJ_1",
            room_id="RM_1",
            room="r",
            options=self.options,
            events=session._recorded_events,
            chat_history=session.history.copy(),
            started_at=NOW - 60,
            timestamp=NOW,
        )


RECORD = EndRecord(
    end_id="e_1",
    state=EndState.ENDING,
    drain_ms=1000,
    reason="customer-ended-call",
    initiator=Initiator(kind="customer", identity="cand-1"),
    channel="rpc",
    request_id="r_1",
    meta={"x": float("nan")},
    requested_at=NOW - 1,
)


@pytest.mark.parametrize("fails", [False, True], ids=["session-report", "reduced"])
@pytest.mark.usefixtures("frozen", "sliced_only")
async def test_final_reports_are_the_whole_documents_bytes(
    monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    ctx = Ctx(AgentSession(vad=None).options, fails=fails)
    session = odd_session()
    for i in range(100):
        session.add_turn(i, "y" * 200)
    cache = report.ReportJson()
    await _draft_sliced(session, cache)  # the final report reuses the drafts' items
    session.history.items[4].metrics = {"llm_node_ttft": 9.0}
    args: dict[str, Any] = {
        "room_name": "r",
        "started_at": NOW - 60,
        "end_section": {"channel": "rpc", "drain_s": 0.5},
        "flushed_transcripts": ["my last", "words"],
        "annotations": {"company": "c-7"},
    }
    size = len(report.build_report(RECORD, ctx=ctx, session=session, **args))
    for limit in (size, size - 1, size // 3, 5_000):
        monkeypatch.setattr(report, "MAX_REPORT_SIZE", limit)
        whole = report.build_report(RECORD, ctx=ctx, session=session, **args)
        prepared = await report.prepare_report(ctx, session, cache)
        assert prepared.finish(RECORD, **args) == whole, limit
    doc = json.loads(whole)
    assert doc["session"]["chat_history"]["items"][-1]["content"] == ["my last words"]


@pytest.mark.usefixtures("frozen")
async def test_what_slices_cannot_reproduce_is_serialized_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="endcall")
    session = Session(3)
    session._recorded_events.append(Event(9, {(1, 2): "a tuple key"}))  # json.dumps refuses
    body = await _draft_sliced(session, report.ReportJson())
    assert body == _draft(session)
    assert json.loads(body)["session"]["unserializable"].startswith("TypeError")
    assert any("serialized whole" in r.getMessage() for r in caplog.records)


async def test_a_long_draft_leaves_the_event_loop_free() -> None:
    """Issue 21: a draft of a long call was serialized whole, in a worker thread; but
    `json.dumps` of megabytes is one C call that holds the GIL, so the loop stopped for as long
    as each of them (a 10,000-item draft: several stops of ~100 ms each here) — voice frames are
    10-20 ms. Loose: the loop must go on serving a 1 ms ticker, its third-longest wait shorter
    than half of one `json.dumps` of the same document (a busy machine may preempt it twice)."""
    session = Session(5_000, text="x" * 300)  # 10,000 items, ~7 MB: not trimmed
    doc = json.loads(_draft(session))
    dumps = min(_timed(lambda: canonical_json(doc)) for _ in range(3))
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    body = await report.build_draft_async(
        "e_1", ctx=None, session=session, room_name="r", started_at=1.0
    )
    stop.set()
    await task
    assert json.loads(body)["complete"] is False and len(body) > 5_000_000
    third = sorted(gaps)[-3]
    assert len(gaps) > 20, gaps
    assert third < dumps / 2, (
        f"the loop waited {third * 1000:.0f} ms; json.dumps: {dumps * 1000:.0f} ms"
    )


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
