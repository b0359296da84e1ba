"""Click End → report verified at the receiver, on a real livekit-server with a real browser.

Runs the demo's real stack (``endcall.testing.realstack.RealStack``: livekit-server, the
example interview agent as a real worker process with explicit dispatch, the fallback server,
the example receiver, the example page on ``livekit-client`` in Debian's Chromium) and plays
``--ends`` interviews (default 50), ``--parallel`` at a time (default 3), each the demo's
``candidate-ends`` flow with one answer: the candidate answers the first question, waits for
the second, and clicks End.

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
Run::

    scripts/in-netns .venv/bin/python bench/end_to_report.py [--ends 50] [--parallel 3] [--json]

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

from endcall.testing.demo import (
    Scenario,
    ScenarioResult,
    _preflight,
    _run_scenario,
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


async def run(ends: int, parallel: int, output: Path) -> dict[str, Any]:
    from endcall.testing.browser import BrowserDriver
    from endcall.testing.realstack import RealStack
    from endcall.testing.stack import examples_dir

    stack = RealStack(output)
    await stack.start()
    results: list[ScenarioResult] = []
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    try:
        voice = candidate_voice(output)
        async with BrowserDriver(examples_dir() / "web", fake_audio=voice) as browser:
            todo = iter(range(1, ends + 1))

            async def lane(k: int) -> None:
                shots = output / "screenshots" / f"lane{k}"
                for i in todo:
                    r = await _run_scenario(stack, browser, SCENARIO, i, shots)
                    results.append(r)
                    status = "ok" if _timed(r) else f"FAILED ({r.error or r.ended_reason})"
                    print(f"[{len(results)}/{ends}] {status}", file=sys.stderr, flush=True)

            await asyncio.gather(*(lane(k) for k in range(parallel)))
            (output / "browser-console.log").write_text(
                "\n".join(browser.console) + "\n", encoding="utf-8"
            )
        name = server_name(stack)
    finally:
        await stack.stop()
    timed = [r for r in results if _timed(r)]
    if not timed:
        raise SystemExit("no end was measured: see " + str(output / "demo.log"))
    report = [(r.report_at or 0.0) - (r.clicked_at or 0.0) for r in timed]
    ack = [(r.ack_ms or 0.0) / 1000 for r in timed]

    def ms(x: float) -> float:
        return round(x * 1000, 1)

    channels = sorted({str(r.channel) for r in timed})
    steps = steps_from_log(output / "worker.log")
    return {
        "server": name,
        "ends": ends,
        "measured": len(timed),
        "failed": len(results) - len(timed),
        "parallel": parallel,
        "cpus": os.cpu_count(),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "wall_seconds": round(time.monotonic() - started, 1),
        "end_to_report": {"p50_ms": ms(pct(report, 50)), "p99_ms": ms(pct(report, 99))},
        "ack": {"p50_ms": ms(pct(ack, 50)), "p99_ms": ms(pct(ack, 99))},
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
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    from endcall.testing.livekit_server import external_server, node_ip

    if external_server() is None and node_ip() is None:
        sys.exit(
            "bench/end_to_report.py: no LiveKit server to measure on: run inside a test network "
            "namespace (scripts/in-netns .venv/bin/python bench/end_to_report.py) or set "
            "LIVEKIT_URL/LIVEKIT_API_KEY/LIVEKIT_API_SECRET"
        )
    problem = _preflight(need_browser=True, loopback=False)
    if problem:
        sys.exit(f"bench/end_to_report.py: {problem}")
    output = args.output.resolve()
    _setup_logging(output)
    for stale in ("reports.sqlite", "outbox.sqlite"):
        for suffix in ("", "-wal", "-shm"):
            (output / (stale + suffix)).unlink(missing_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        r = asyncio.run(run(args.ends, args.parallel, output))
        if args.json:
            print(json.dumps(r))
            return
        print(
            f"click End → verified report on {r['server']}: {r['measured']} ends measured "
            f"({r['failed']} failed), {r['parallel']} at a time, {r['cpus']} CPUs, load "
            f"average {r['load_average_before']} before, {r['load_average_after']} after, "
            f"{r['wall_seconds']} s"
        )
        e, a = r["end_to_report"], r["ack"]
        print(f"  end → report  p50 {e['p50_ms']} ms  p99 {e['p99_ms']} ms")
        print(f"  ack (baseline) p50 {a['p50_ms']} ms  p99 {a['p99_ms']} ms  via {r['channels']}")
        print(f"  ratio end → report / ack  p50 {r['ratio']['p50']}  p99 {r['ratio']['p99']}")
        steps = r["agent_steps"]
        if steps:
            print("  inside the agent, per step (ms, p50 / p99):")
            for name, v in steps.items():
                print(f"    {name:<11} {v['p50_ms']:>6} / {v['p99_ms']:<6} ({v['n']} ends)")
        else:
            print("  inside the agent: no 'steps (ms)' line in worker.log")


if __name__ == "__main__":
    main()
