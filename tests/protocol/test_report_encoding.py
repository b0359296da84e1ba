"""Report encoding edge cases: unencodable text, crash drafts carrying an accepted end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from endcall import protocol
from endcall.protocol import Initiator, SessionEnded


def report(**fields: object) -> SessionEnded:
    base: dict[str, object] = {
        "end_id": "e_1",
        "ended_reason": "agent-crashed",
        "initiator": Initiator(kind="system"),
        "room_name": "room-1",
        "started_at": 100.0,
        "ended_at": 160.0,
        "complete": False,
    }
    base.update(fields)
    return SessionEnded(**base)  # type: ignore[arg-type]


def test_lone_surrogates_are_replaced_not_fatal() -> None:
    """Issue 11 point 7: a lone surrogate in meta or the chat history made encoding fail."""
    doc = report(
        complete=True,
        ended_reason="customer-ended-call",
        meta={"note": "half \ud800 pair"},
        session={"chat_history": {"items": [{"content": ["hi \udfff there"]}]}},
    )
    body = protocol.encode_report(doc)
    back = protocol.parse_report(body)
    assert back.meta == {"note": "half \ufffd pair"}
    assert back.session["chat_history"]["items"][0]["content"] == ["hi \ufffd there"]


def test_with_ending_writes_the_accepted_end_into_the_draft() -> None:
    draft = protocol.encode_report(report(end={"checkpoint_at": 150.0}))
    ending = {
        "ended_reason": "server-ended-call",
        "initiator": {"kind": "server", "identity": None},
        "request_id": "r_9",
        "meta": {"by": "backend"},
        "channel": "server",
        "requested_at": 155.0,
    }
    out = protocol.with_ending(draft, ending)
    doc = protocol.parse_report(out)
    assert doc.ended_reason == "server-ended-call" and doc.complete is False
    assert doc.initiator == Initiator(kind="server") and doc.request_id == "r_9"
    assert doc.meta == {"by": "backend"}
    assert doc.end == {"checkpoint_at": 150.0, "channel": "server", "requested_at": 155.0}
    assert protocol.with_ending(draft, ending) == out  # every attempt sends the same bytes
    assert protocol.webhook_id(doc) == "e_1.draft"


def test_with_ending_ignores_invalid_values() -> None:
    draft = protocol.encode_report(report())
    out = protocol.with_ending(draft, {"ended_reason": "NOT VALID", "initiator": {"kind": "x"}})
    assert json.loads(out)["ended_reason"] == "agent-crashed"


def test_supersedes_rejects_different_sessions() -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.report_supersedes(report(), report(end_id="e_2"))
    final = report(complete=True, ended_reason="customer-ended-call")
    assert protocol.webhook_id(final) == "e_1"
    assert protocol.report_supersedes(final, report())
    assert not protocol.report_supersedes(report(), final)


def test_the_encoder_sends_what_the_u_fffd_vector_says() -> None:
    """The shared vector "report text the agent could not encode arrives as U+FFFD" is what
    `encode_report` makes of text holding lone surrogates (`protocol.report.wire_utf8`)."""
    cases = json.loads((Path(__file__).parents[1] / "vectors" / "report.json").read_text())
    (case,) = [c for c in cases if c["name"].endswith("arrives as U+FFFD")]
    wire = case["expect"]["value"]
    doc = protocol.parse_report(case["input"].encode())
    broken = dataclasses.replace(
        doc,
        meta={"note": "half \ud800 pair"},
        session={"chat_history": {"items": [{"content": ["hi \udfff there"]}]}},
    )
    sent = json.loads(protocol.encode_report(broken))
    assert sent["meta"] == wire["meta"]
    assert sent["session"] == wire["session"]
