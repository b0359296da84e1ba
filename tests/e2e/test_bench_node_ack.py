"""bench/ack_latency.py --agent node still runs: the Node agent (bench/node_ack_agent.mjs, a real
@livekit/agents AgentSession with endcall-agent's EndCall) on a real livekit-server, measured
by the Python customer, with a tiny N. Behaviour only (both rows, the end it went through),
never speed. Runs inside ``scripts/in-netns``; without a server it fails with the bench's reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)


def test_bench_ack_latency_measures_the_node_kit_and_the_echo_handler() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ack_latency.py"), "--agent", "node", "20", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    r = json.loads(run.stdout.strip().splitlines()[-1])
    assert r["agent"] == "node" and r["calls"] == 20, r
    assert r["server"].startswith(("livekit-server", "external")), r
    for row in ("kit", "echo"):
        assert set(r[row]) == {"p50_ms", "p99_ms", "mean_ms"}, r
        assert 0 < r[row]["p50_ms"] <= r[row]["p99_ms"], r
    assert r["ratio"]["p50"] > 0 and r["ratio"]["p99"] > 0, r
    # the first request was accepted and the Node agent ended the call through the kit, its
    # report handed to the MemorySink once
    end = r["end"]
    assert end["state"] == "ended" and end["reason"] == "customer-ended-call", r
    assert end["reports"] == 1 and end["shutdowns"] == ["customer-ended-call"], r
    # the agent timed both handlers in-process: every measured call reached it (the first
    # request and the 100 warm-up pairs besides)
    assert end["handlers"]["end_interview"]["calls"] == 20 + 101, r
    assert end["handlers"]["echo"]["calls"] == 20 + 100, r
