"""The Node example agent (examples/node: @livekit/agents 1.9.0 for Node with endcall-agent's
``EndCall``) on a real livekit-server, in a real browser.

Every demo scenario runs once for the module with ``endcall demo --agent node``'s code
(``run_demo(..., agent="node")``): the Node worker (``node examples/node/dist/
interview_agent.js start``, scripted models in TypeScript) registered for explicit dispatch,
the example page with the real ``livekit-client`` in Debian's Chromium, the fallback server
on the real RoomService, the example receiver. Each test checks one scenario's row, as
test_e2e_real does for the Python agent. Then a Node job is SIGKILLed mid-interview and its
crash draft, left in the SQLite outbox the Node and Python kits share, is delivered by a Python
relay (the one ``endcall.prewarm`` runs). Runs inside ``scripts/in-netns``; never skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from e2e_helpers import assert_demo_row
from livekit import rtc

from endcall.agent.prewarm import livekit_gone_check
from endcall.reports.outbox.sqlite import SqliteOutbox
from endcall.reports.relay import BackgroundRelay
from endcall.testing.demo import SCENARIOS, ScenarioResult, _preflight, run_demo
from endcall.testing.node_agent import NodeRealStack

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "test-output" / "e2e-node"

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(900)]

#: a crash draft's lease: a relay taking it over on LiveKit's word sends it well before
LEASE = 90.0


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def results() -> dict[str, ScenarioResult]:
    problem = _preflight(need_browser=True, loopback=False, agent="node")
    assert problem is None, problem
    lines: list[str] = []
    rows = await run_demo(list(SCENARIOS), output_dir=OUT, progress=lines.append, agent="node")
    # A scenario whose page never reached its end (the interviewer's first question or the
    # answer box did not come within the page's timeouts: seen only with the whole suite
    # loading both cores, where a Node job process's start blocks its loop for seconds) runs
    # once more on a fresh stack. Only that: a wrong reason, a missing or unverified report is
    # never retried, and a second failure fails the test.
    unreached = {r.scenario for r in rows if _page_never_reached_the_end(r)}
    if unreached:
        lines.append(f"once more, the page never reached the end: {', '.join(sorted(unreached))}")
        # the fresh stack's worker is cold: a quick scenario first, whose row is not used
        warm = next(s for s in SCENARIOS if s.name == "tab-closed")
        again = await run_demo(
            [warm, *(s for s in SCENARIOS if s.name in unreached)],
            output_dir=OUT / "again",
            progress=lines.append,
            agent="node",
        )
        rows = [r for r in rows if r.scenario not in unreached] + again[1:]
    (OUT / "progress.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {r.scenario: r for r in rows}


def _page_never_reached_the_end(r: ScenarioResult) -> bool:
    return r.error is not None and r.error.startswith("BrowserError") and r.ended_reason is None


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
async def test_node_scenario_delivers_one_verified_report_with_the_right_reason(
    results: dict[str, ScenarioResult], name: str
) -> None:
    assert_demo_row(results[name], name)


async def test_node_click_end_is_accepted_over_rpc(results: dict[str, ScenarioResult]) -> None:
    r = results["candidate-ends"]
    assert r.channel == "rpc" and r.ack_ms is not None and r.report_channel == "rpc", r
    assert r.ended_reason == "customer-ended-call"


async def test_node_end_tool_ends_with_the_assistants_reason(
    results: dict[str, ScenarioResult],
) -> None:
    r = results["agent-ends"]
    assert r.report_channel == "tool" and r.ended_reason == "assistant-ended-call", r


async def test_node_tab_close_reaches_the_agent_through_the_fallback_server(
    results: dict[str, ScenarioResult],
) -> None:
    r = results["tab-closed"]
    assert r.report_channel == "server" and r.ended_reason == "customer-tab-closed", r


async def test_node_unreachable_agent_is_escalated_over_rest(
    results: dict[str, ScenarioResult],
) -> None:
    r = results["agent-unreachable"]
    assert r.channel is not None and r.channel.startswith("rest"), r


# ----------------------------------------------------------------------------- a killed job


@pytest_asyncio.fixture(loop_scope="module")
async def node_stack(tmp_path: Path) -> AsyncIterator[NodeRealStack]:
    assert os.environ.get("ENDCALL_NODE_IP"), "run inside scripts/in-netns"
    stack = NodeRealStack(tmp_path / "stack")
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


def _draft_of(outbox_path: Path, room: str) -> tuple[str, str] | None:
    """(webhook id, status) of ``room``'s crash draft in the outbox, if written."""
    outbox = SqliteOutbox(outbox_path)
    try:
        for rec in outbox.records(limit=1000):
            try:
                doc = json.loads(rec.body)
            except ValueError:
                continue
            if doc.get("room", {}).get("name") == room and doc.get("complete") is False:
                return rec.end_id, rec.status
        return None
    finally:
        outbox.close()


async def test_a_sigkilled_node_jobs_draft_is_delivered_by_a_python_relay(
    node_stack: NodeRealStack,
) -> None:
    """The Node job checkpoints its crash draft into the SQLite outbox; SIGKILL it mid-call;
    the relay ``endcall.prewarm`` runs (early takeover: LiveKit's RoomService says the agent is
    gone and its draft went silent) delivers it, signed, with ``agent-crashed``."""
    stack = node_stack
    room_name = f"node-kill-{secrets.token_hex(3)}"
    stack.prepare(room_name, {"scenario": {}})
    gone = livekit_gone_check(stack.info.http_url, stack.info.api_key, stack.info.api_secret)
    assert gone is not None
    relay = BackgroundRelay(stack.outbox_path, (stack.webhook_secret,), poll=300, gone=gone)
    relay.start()
    candidate = rtc.Room()
    await candidate.connect(stack.info.url, stack.access_token(room_name, "candidate-k"))
    try:
        pid = await stack.job(room_name).agent_pid(timeout=30)
        deadline = time.monotonic() + 30
        draft = None
        while draft is None and time.monotonic() < deadline:
            draft = await asyncio.to_thread(_draft_of, stack.outbox_path, room_name)
            await asyncio.sleep(0.25)
        assert draft is not None, "the Node job wrote no crash draft"
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        receiver = stack.receiver
        assert receiver is not None
        reports = await receiver.wait_for(
            lambda rs: any(r.room == room_name for r in rs), timeout=LEASE + 60
        )
        took = time.monotonic() - killed
    finally:
        await candidate.disconnect()
        await asyncio.to_thread(relay.stop)
    mine = [r for r in reports if r.room == room_name]
    assert len(mine) == 1, mine
    stored = mine[0]
    doc = json.loads(stored.body)
    assert stored.verified, stored
    assert stored.webhook_id.endswith(".draft"), stored  # protocol.md §6: `<end_id>.draft`
    assert doc["complete"] is False and doc["ended_reason"] == "agent-crashed", doc
    assert doc["agent_name"] == "interview-agent"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sigkill-draft.txt").write_text(f"draft delivered {took:.1f} s after the kill\n")
    # LiveKit's word, not the lease: the 90 s lease would come later
    assert took < LEASE - 10, f"the draft came {took:.1f} s after the kill"
