"""Every end scenario on a real livekit-server, a real agent worker and a real browser.

The demo's scenarios (``endcall.testing.demo.SCENARIOS``) run once for the module on
``endcall.testing.realstack.RealStack``: livekit-server 1.13.5 built by ``make``, the example
interview agent as an ``AgentServer`` worker process with explicit dispatch, the example page
with the real ``livekit-client`` in Debian's Chromium (fake microphone), the fallback server
on the real RoomService, the example receiver. Each test checks one scenario's row. This runs
inside ``scripts/in-netns`` (``make test`` does it); it never skips: without a server it fails
with the reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from e2e_helpers import assert_demo_row

from endcall.testing.demo import SCENARIOS, ScenarioResult, _preflight, run_demo
from endcall.testing.stack import load_example, serve

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "test-output" / "e2e-real"

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(900)]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def results() -> dict[str, ScenarioResult]:
    problem = _preflight(need_browser=True, loopback=False)
    assert problem is None, problem
    lines: list[str] = []
    rows = await run_demo(list(SCENARIOS), output_dir=OUT, progress=lines.append)
    (OUT / "progress.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {r.scenario: r for r in rows}


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
async def test_scenario_delivers_one_verified_report_with_the_right_reason(
    results: dict[str, ScenarioResult], name: str
) -> None:
    assert_demo_row(results[name], name)


async def test_click_end_is_acknowledged_over_rpc(results: dict[str, ScenarioResult]) -> None:
    r = results["candidate-ends"]
    assert r.channel == "rpc" and r.ack_ms is not None and r.report_channel == "rpc"


async def test_rpc_disabled_falls_back_to_data(results: dict[str, ScenarioResult]) -> None:
    r = results["rpc-disabled"]
    # RPC is refused: the page sends the data packet and calls the fallback server at once;
    # the agent takes whichever reaches it first (the server channel under load)
    assert r.report_channel in ("data", "server"), r
    assert r.channel is not None and r.channel.split()[0] in ("data", "rest"), r


async def test_tab_close_reaches_the_agent_through_the_fallback_server(
    results: dict[str, ScenarioResult],
) -> None:
    r = results["tab-closed"]
    assert r.report_channel == "server" and r.ended_reason == "customer-tab-closed"


async def test_unreachable_agent_is_escalated_over_rest(
    results: dict[str, ScenarioResult],
) -> None:
    r = results["agent-unreachable"]
    assert r.channel is not None and r.channel.startswith("rest")


async def test_demo_json_to_an_external_receiver_in_the_same_namespace(tmp_path: Path) -> None:
    """`endcall demo --json --webhook-url URL --webhook-secret S`, run as a command inside
    this namespace, delivers to a receiver listening here."""
    assert os.environ.get("ENDCALL_NODE_IP"), "run inside scripts/in-netns"
    receiver_mod = load_example("receiver")
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    receiver = receiver_mod.Receiver(secret, tmp_path / "reports.sqlite")
    served = await serve(receiver_mod.create_app(receiver))
    try:
        url = served.url + "/webhooks/session-ended"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "endcall.cli",
            "demo",
            "--json",
            "--scenario",
            "candidate-ends",
            "--webhook-url",
            url,
            "--webhook-secret",
            secret,
            "--output",
            str(tmp_path / "demo"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(ROOT),
        )
        out, err = await asyncio.wait_for(proc.communicate(), 300)
        assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
        rows: list[dict[str, Any]] = [json.loads(line) for line in out.decode().splitlines()]
        assert len(rows) == 1
        row = rows[0]
        assert row["scenario"] == "candidate-ends" and row["delivered"] is True
        assert row["server"].startswith("livekit-server 1.13")
        stored = receiver.reports()
        assert len(stored) == 1 and stored[0].verified
        assert stored[0].ended_reason == "customer-ended-call"
        assert stored[0].webhook_id == row["end_id"]
    finally:
        await served.stop()
        receiver.close()
