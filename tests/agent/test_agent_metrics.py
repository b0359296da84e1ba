"""The agent's Prometheus metrics (issue 20): one interview ended over RPC and data, with a
refused stranger, shows up in the default registry — ends by channel and outcome, the ack
latency, the report stored, attempted and delivered — with bounded labels only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from agent_harness import AGENT_ID, start_job
from prometheus_client import REGISTRY, generate_latest

from endcall.protocol import ProtocolError
from endcall.testing import request_end


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def deltas(*series: tuple[str, dict[str, str]]) -> Callable[[], list[float]]:
    """What each series gained since this call."""
    before = [sample(n, **lb) for n, lb in series]

    def now() -> list[float]:
        return [sample(n, **lb) - b for (n, lb), b in zip(series, before, strict=True)]

    return now


async def test_an_interview_is_counted_by_channel_outcome_and_report(tmp_path: Path) -> None:
    gained = deltas(
        ("endcall_end_requests_total", {"channel": "rpc", "outcome": "accepted"}),
        ("endcall_end_requests_total", {"channel": "data", "outcome": "already_ending"}),
        ("endcall_end_requests_total", {"channel": "data", "outcome": "already_ended"}),
        ("endcall_end_requests_total", {"channel": "rpc", "outcome": "forbidden"}),
        ("endcall_end_ack_seconds_count", {"channel": "rpc"}),
        ("endcall_end_ack_seconds_count", {"channel": "data"}),
        ("endcall_reports_stored_total", {"kind": "final"}),
        ("endcall_delivery_attempts_total", {"result": "2xx"}),
        ("endcall_reports_delivered_total", {"kind": "final"}),
        ("endcall_report_delivery_seconds_count", {"kind": "final"}),
    )
    job = await start_job(tmp_path, endcall_kwargs={"delete_room": False})
    stranger = await job.hub.connect("interview-1", "someone-else")
    with pytest.raises(ProtocolError):
        await request_end(stranger)
    ack = await request_end(job.customer)
    assert ack.status == "accepted"
    await request_end(job.customer, via="data", agent_identity=AGENT_ID)
    await job.finished()
    assert len(job.receiver.reports()) == 1
    (
        rpc_accepted,
        data_ending,
        data_ended,
        forbidden,
        rpc_acks,
        data_acks,
        stored,
        attempts_2xx,
        delivered,
        delivery_seconds,
    ) = gained()
    assert (rpc_accepted, data_ending + data_ended, forbidden) == (1, 1, 1)
    assert (rpc_acks, data_acks) == (1, 1)
    assert (stored, attempts_2xx, delivered, delivery_seconds) == (1, 1, 1, 1)
    await stranger.disconnect()


def test_labels_are_bounded_and_names_follow_the_conventions() -> None:
    """No room name, end id or identity as a label value; counters end in _total, durations
    are in seconds."""
    import endcall.agent.metrics
    import endcall.reports.metrics
    import endcall.server.metrics  # noqa: F401

    text = generate_latest(REGISTRY).decode()
    ours = [line for line in text.splitlines() if line.startswith("endcall_")]
    assert ours
    allowed_labels = {"channel", "outcome", "kind", "result", "loop", "code", "cause", "le"}
    for line in ours:
        name = line.split("{")[0].split(" ")[0]
        if "{" in line:
            labels = line.split("{", 1)[1].split("}", 1)[0]
            keys = {pair.split("=", 1)[0] for pair in labels.split(",") if pair}
            assert keys <= allowed_labels, line
            assert "interview" not in labels and "e_" not in labels, line
        if "_seconds" in name:
            assert name.rsplit("_seconds", 1)[1] in ("", "_bucket", "_count", "_sum", "_created")
    families = {m.name for m in REGISTRY.collect() if m.name.startswith("endcall_")}
    assert {
        "endcall_end_requests",
        "endcall_end_ack_seconds",
        "endcall_reports_stored",
        "endcall_delivery_attempts",
        "endcall_reports_delivered",
        "endcall_reports_dead",
        "endcall_report_delivery_seconds",
        "endcall_loop_passes",
        "endcall_loop_pass_seconds",
        "endcall_livekit_webhooks",
        "endcall_fallback_end_requests",
        "endcall_session_missing",
    } <= families
