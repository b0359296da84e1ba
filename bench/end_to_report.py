"""Click End → report verified at the receiver, on a real livekit-server with a real browser.

Runs the demo's real stack (``endcall.testing.realstack.RealStack``: livekit-server, the
example interview agent (``--agent``) as a real worker process with explicit dispatch, the
fallback server, the example receiver, the example page on ``livekit-client`` in Debian's
Chromium) and plays ``--ends`` interviews (default 50), ``--parallel`` at a time (default 3),
each the demo's ``candidate-ends`` flow with one answer: the candidate answers the first
question, waits for the second, and clicks End.

What is measured, per end:

- **end → report**: from just before the driver clicks End (wall clock, this process) to the
  arrival of the signed report that the example receiver verified and stored (its
  ``received_at``, wall clock, same machine). It spans the RPC ack, the agent's drain and
  close, ``on_session_end`` building the report, the outbox write and the webhook POST.
- **ack** (the baseline): the same click's acknowledgement as the page measures it (click →
  the agent's RPC answer, ``performance.now()`` in the page) — the part of an end a
  candidate waits for. Both come from the same ends, so the machine's noise falls on both.

Prints p50/p99 of both and the ratios (end → report / ack), then where the time goes inside the
agent: the p50/p99 of each step of its end path, from the ``endcall: end … steps (ms)`` line
the kit logs once per end (`endcall.agent.end_path.EndSteps`: accept, drain, transcript flush,
session close, report build, store, in-process delivery; read from the worker's log). An end
that fails (no report, wrong reason, not verified) is counted and left out of the figures.

Also per end, **request → report**: from the agent having the request (the report's
``end.requested_at``, the agent's wall clock) to the receiver storing the report — the agent's
whole part (accept, drain, close, report, store, the POST), without the browser's and the
driver's part of the click.

``--agent`` picks the example agent the worker runs: ``python`` (examples/interview_agent.py,
the default), ``node`` (examples/node, endcall-agent on @livekit/agents for Node:
``endcall.testing.node_agent``), or ``both``: each agent on its own stack (own livekit-server
and worker, one browser), both stacks up at once and the ends taken in turn (Python, Node,
Python, …), so the machine's load falls on both alike; then the ratios Node / Python of click →
report p50 (the goal: ≤ 1.2) and of request → report. Run::

    scripts/in-netns .venv/bin/python bench/end_to_report.py [--ends 50] [--parallel 3] \
        [--agent python|node|both] [--json]

Outside a test network namespace it needs ``LIVEKIT_URL``/``LIVEKIT_API_KEY``/
``LIVEKIT_API_SECRET`` (the agent worker and the browser join that server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from endcall.testing._demo_runner import _run_scenario
from endcall.testing.demo import (
    Scenario,
    ScenarioResult,
    _preflight,
    _setup_logging,
    candidate_voice,
    server_name,
)

SCENARIO = Scenario(
    "bench-end", "the candidate clicks End", answers=1, expect_reason="customer-ended-call"
)


#: the kit's per-end line (`endcall.agent.end_path.EndSteps.log`)
STEPS_LINE = re.compile(r"endcall: end (e_\S+) steps \(ms\): (.*?); total (\d+)")


def steps_from_log(log: Path) -> dict[str, list[float]]:
    """Milliseconds per step (and ``total``) of every end the worker logged."""
    out: dict[str, list[float]] = {}
    if not log.exists():
        return out
    for match in STEPS_LINE.finditer(log.read_text(encoding="utf-8", errors="replace")):
        for part in match.group(2).split(", "):
            name, _, value = part.partition(" ")
            out.setdefault(name, []).append(float(value))
        out.setdefault("total", []).append(float(match.group(3)))
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def clean(output: Path) -> None:
    """A fresh outbox and receiver store in ``output`` (the figures are this run's only)."""
    output.mkdir(parents=True, exist_ok=True)
    for stale in ("reports.sqlite", "outbox.sqlite"):
        for suffix in ("", "-wal", "-shm"):
            (output / (stale + suffix)).unlink(missing_ok=True)


#: ``--agent`` values: one example agent, or both in one run
AGENT_CHOICES = ("python", "node", "both")


async def run(ends: int, parallel: int, output: Path, agent: str = "python") -> dict[str, Any]:
    """``ends`` ends of the ``agent`` example (``python`` or ``node``) on its own stack."""
    return (await measure({agent: output}, ends, parallel))[agent]


async def run_both(ends: int, parallel: int, output: Path) -> dict[str, Any]:
    """``ends`` ends of each agent, taken in turn (Python, Node, Python, …) on two stacks up at
    once (``output``/python, ``output``/node), so both see the same machine; and the ratios
    Node / Python of click → report and of request → report."""
    both = await measure({"python": output / "python", "node": output / "node"}, ends, parallel)
    py, node = both["python"], both["node"]

    def ratio(key: str) -> dict[str, float]:
        p, n = py[key], node[key]
        return {
            "p50": round(n["p50_ms"] / p["p50_ms"], 2),
            "p99": round(n["p99_ms"] / p["p99_ms"], 2),
        }

    return {
        "agent": "both",
        "python": py,
        "node": node,
        "node_over_python": ratio("end_to_report"),
        "node_over_python_request_to_report": ratio("request_to_report"),
    }


async def measure(outputs: dict[str, Path], ends: int, parallel: int) -> dict[str, Any]:
    """``ends`` ends of each agent in ``outputs`` (agent → its output folder), each agent on its
    own stack, all stacks up at once and their ends interleaved; the figures per agent."""
    from endcall.testing.browser import BrowserDriver
    from endcall.testing.node_agent import real_stack
    from endcall.testing.stack import examples_dir

    stacks = {agent: real_stack(agent, out) for agent, out in outputs.items()}
    results: dict[str, list[ScenarioResult]] = {agent: [] for agent in outputs}
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    logs: dict[str, Path] = {}
    try:
        for agent, stack in stacks.items():
            await stack.start()
            assert stack.worker is not None
            logs[agent] = stack.worker.log_path
        first = next(iter(outputs.values()))
        voice = candidate_voice(first)
        async with BrowserDriver(examples_dir() / "web", fake_audio=voice) as browser:
            todo = iter(enumerate((a for _ in range(ends) for a in outputs), start=1))
            total = ends * len(outputs)

            async def lane(k: int) -> None:
                for i, agent in todo:
                    shots = outputs[agent] / "screenshots" / f"lane{k}"
                    r = await _run_scenario(stacks[agent], browser, SCENARIO, i, shots)
                    results[agent].append(r)
                    done = sum(len(v) for v in results.values())
                    status = "ok" if _timed(r) else f"FAILED ({r.error or r.ended_reason})"
                    print(f"[{done}/{total}] {agent} {status}", file=sys.stderr, flush=True)

            await asyncio.gather(*(lane(k) for k in range(parallel)))
            (first / "browser-console.log").write_text(
                "\n".join(browser.console) + "\n", encoding="utf-8"
            )
        names = {agent: server_name(stack) for agent, stack in stacks.items()}
    finally:
        for stack in stacks.values():
            with contextlib.suppress(Exception):
                await stack.stop()
    common = {
        "ends": ends,
        "parallel": parallel,
        "interleaved_with": sorted(outputs),
        "cpus": os.cpu_count(),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    out: dict[str, Any] = {}
    for agent in stacks:
        out[agent] = summary(agent, names[agent], results[agent], logs[agent], common)
    return out


def summary(
    agent: str, server: str, results: list[ScenarioResult], worker_log: Path, common: dict[str, Any]
) -> dict[str, Any]:
    """One agent's figures from its ends (failed ends counted, not measured)."""
    timed = [r for r in results if _timed(r)]
    if not timed:
        raise SystemExit(f"no end of the {agent} agent was measured: see the demo.log")
    report = [(r.report_at or 0.0) - (r.clicked_at or 0.0) for r in timed]
    agent_side = [
        (r.report_at or 0.0) - r.requested_at for r in timed if r.requested_at is not None
    ]
    ack = [(r.ack_ms or 0.0) / 1000 for r in timed]

    def ms(x: float) -> float:
        return round(x * 1000, 1)

    def figure(values: list[float]) -> dict[str, float]:
        return {"p50_ms": ms(pct(values, 50)), "p99_ms": ms(pct(values, 99))}

    channels = sorted({str(r.channel) for r in timed})
    steps = steps_from_log(worker_log)
    return {
        "agent": agent,
        "server": server,
        **common,
        "measured": len(timed),
        "failed": len(results) - len(timed),
        "end_to_report": figure(report),
        "request_to_report": figure(agent_side) if agent_side else {"p50_ms": 0, "p99_ms": 0},
        "ack": figure(ack),
        "ratio": {
            "p50": round(pct(report, 50) / pct(ack, 50), 2),
            "p99": round(pct(report, 99) / pct(ack, 99), 2),
        },
        # how the page's ack came: "rpc", or "rest (agent: rpc)" when the page escalated
        "channels": {c: sum(1 for r in timed if str(r.channel) == c) for c in channels},
        "agent_steps": {
            name: {"p50_ms": round(pct(v, 50)), "p99_ms": round(pct(v, 99)), "n": len(v)}
            for name, v in steps.items()
        },
    }


def print_run(r: dict[str, Any]) -> None:
    print(
        f"{r['agent']} agent: click End → verified report on {r['server']}: {r['measured']} ends "
        f"measured ({r['failed']} failed), {r['parallel']} at a time, {r['cpus']} CPUs, load "
        f"average {r['load_average_before']} before, {r['load_average_after']} after, "
        f"{r['wall_seconds']} s"
    )
    e, a = r["end_to_report"], r["ack"]
    q = r["request_to_report"]
    print(f"  end → report  p50 {e['p50_ms']} ms  p99 {e['p99_ms']} ms")
    print(f"  request reached the agent → report  p50 {q['p50_ms']} ms  p99 {q['p99_ms']} ms")
    print(f"  ack (baseline) p50 {a['p50_ms']} ms  p99 {a['p99_ms']} ms  via {r['channels']}")
    print(f"  ratio end → report / ack  p50 {r['ratio']['p50']}  p99 {r['ratio']['p99']}")
    steps = r["agent_steps"]
    if steps:
        print("  inside the agent, per step (ms, p50 / p99):")
        for name, v in steps.items():
            print(f"    {name:<11} {v['p50_ms']:>6} / {v['p99_ms']:<6} ({v['n']} ends)")
    else:
        print("  inside the agent: no 'steps (ms)' line in the worker's log")


def print_both(r: dict[str, Any]) -> None:
    py, node = r["python"], r["node"]
    print_run(py)
    print_run(node)
    steps_py, steps_node = py["agent_steps"], node["agent_steps"]
    names = [n for n in steps_py if n in steps_node] + [n for n in steps_node if n not in steps_py]
    print("Node vs Python, p50 (ms):")
    print(f"  {'step':<13} {'python':>7} {'node':>7}")
    for name in names:
        a = steps_py.get(name, {}).get("p50_ms", "-")
        b = steps_node.get(name, {}).get("p50_ms", "-")
        print(f"  {name:<13} {a:>7} {b:>7}")
    pe, ne = py["end_to_report"], node["end_to_report"]
    pq, nq = py["request_to_report"], node["request_to_report"]
    print(f"  {'request→report':<13} {pq['p50_ms']:>7} {nq['p50_ms']:>7}")
    print(f"  {'click→report':<13} {pe['p50_ms']:>7} {ne['p50_ms']:>7}")
    ratio = r["node_over_python"]
    verdict = "met" if ratio["p50"] <= 1.2 else "NOT met"
    print(
        f"ratio Node / Python click → report: p50 {ratio['p50']} (goal ≤ 1.2: {verdict}), "
        f"p99 {ratio['p99']}"
    )
    agent_side = r["node_over_python_request_to_report"]
    print(
        f"ratio Node / Python request reached the agent → report: p50 {agent_side['p50']}, "
        f"p99 {agent_side['p99']}"
    )


def _timed(r: ScenarioResult) -> bool:
    return (
        r.ok
        and r.verified is True
        and r.clicked_at is not None
        and r.report_at is not None
        and r.ack_ms is not None
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ends", type=int, default=50, help="interviews ended (default 50)")
    parser.add_argument("--parallel", type=int, default=3, help="interviews at a time")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("test-output/bench-end-to-report"),
        help="logs, reports, outbox, screenshots",
    )
    parser.add_argument(
        "--agent",
        choices=AGENT_CHOICES,
        default="python",
        help="the example agent measured: python, node (examples/node), or both in one run "
        "(then the ratio Node / Python of click → report)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    from endcall.testing.livekit_server import external_server, node_ip

    if external_server() is None and node_ip() is None:
        sys.exit(
            "bench/end_to_report.py: no LiveKit server to measure on: run inside a test network "
            "namespace (scripts/in-netns .venv/bin/python bench/end_to_report.py) or set "
            "LIVEKIT_URL/LIVEKIT_API_KEY/LIVEKIT_API_SECRET"
        )
    agents = ("python", "node") if args.agent == "both" else (args.agent,)
    for agent in agents:
        problem = _preflight(need_browser=True, loopback=False, agent=agent)
        if problem:
            sys.exit(f"bench/end_to_report.py: {problem}")
    output = args.output.resolve()
    _setup_logging(output)
    for agent in agents:
        clean(output / agent if args.agent == "both" else output)
    with contextlib.suppress(KeyboardInterrupt):
        if args.agent == "both":
            r = asyncio.run(run_both(args.ends, args.parallel, output))
        else:
            r = asyncio.run(run(args.ends, args.parallel, output, args.agent))
        if args.json:
            print(json.dumps(r))
        elif args.agent == "both":
            print_both(r)
        else:
            print_run(r)


if __name__ == "__main__":
    main()
