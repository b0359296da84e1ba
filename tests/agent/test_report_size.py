"""Report size: a documented cap, trimmed events first, transcript last (a draft that leaves the
event loop free, with the same bytes: test_report_slices.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from livekit.agents.llm import ChatContext, FunctionCall

from endcall.agent import report


class Event:
    def __init__(self, i: int, size: int) -> None:
        self.type = "user_state_changed"
        self.i, self.size = i, size

    def model_dump(self) -> dict[str, Any]:
        return {"type": self.type, "i": self.i, "pad": "e" * self.size}


class Session:
    """The parts of an AgentSession a draft reads."""

    def __init__(self, messages: int, msg_size: int, events: int, event_size: int) -> None:
        self.history = ChatContext()
        for i in range(messages):
            role = "user" if i % 2 == 0 else "assistant"
            self.history.add_message(role=role, content=f"m{i} " + "x" * msg_size)
            if i % 10 == 5:
                self.history.items.append(
                    FunctionCall(call_id=f"c{i}", name="lookup", arguments="{}" + " " * msg_size)
                )
        self._recorded_events = [Event(i, event_size) for i in range(events)]


def draft(session: Session) -> dict[str, Any]:
    body = report.build_draft("e_1", ctx=None, session=session, room_name="r", started_at=1.0)
    assert len(body) <= report.MAX_REPORT_SIZE
    doc: dict[str, Any] = json.loads(body)
    return doc


def texts(doc: dict[str, Any]) -> list[str]:
    return [
        item["content"][0]
        for item in doc["session"]["chat_history"]["items"]
        if item.get("type") == "message"
    ]


def test_small_reports_are_not_trimmed() -> None:
    doc = draft(Session(messages=4, msg_size=10, events=3, event_size=10))
    assert "trimmed" not in doc["end"] and len(doc["session"]["events"]) == 3


def test_events_go_first_and_the_transcript_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11 point 11: reports had no size bound."""
    monkeypatch.setattr(report, "MAX_REPORT_SIZE", 200_000)
    doc = draft(Session(messages=20, msg_size=2_000, events=200, event_size=2_000))
    assert doc["session"]["events"] == []
    assert doc["end"]["trimmed"]["events"] == 200
    assert len(texts(doc)) == 20  # the whole transcript is kept
    assert doc["end"]["trimmed"]["original_bytes"] > 200_000


def test_then_tool_calls_then_the_oldest_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "MAX_REPORT_SIZE", 100_000)
    doc = draft(Session(messages=100, msg_size=2_000, events=10, event_size=100))
    trimmed = doc["end"]["trimmed"]
    assert trimmed["events"] == 10 and trimmed["items"] == 10  # every tool call went
    kept = texts(doc)
    assert 0 < len(kept) < 100 and trimmed["messages"] == 100 - len(kept)
    assert kept[-1].startswith("m99 ")  # the end of the conversation is kept
    assert all(i.get("type") == "message" for i in doc["session"]["chat_history"]["items"])
