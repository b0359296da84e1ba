"""Report loss: the naive agent vs the kit on a real LiveKit, under the faults of production.

Out of N interviews ending in each of the ways production ends them, how many session reports
reach the backend — the naive agent (`bench/naive_agent.py`) vs the kit
(`examples/interview_agent.py` deployed as the README says) — on livekit-server 1.13.5 with
real `AgentServer` worker processes (explicit dispatch), the example page in Chromium (fake
audio; the answer box stands in for speech) and one receiver per (scenario, agent) that
verifies Standard Webhooks signatures (kit) or takes plain JSON (naive) and records what
arrived and when.

The kit deployed as the README tells users: `setup_fnc=endcall.prewarm` (a relay in every job
process), `on_session_end=EndCall.on_session_end`, a SQLite outbox on a durable path
(`ENDCALL_OUTBOX`, one per host; the worker that replaces a killed one uses the same file),
`ENDCALL_WEBHOOK_SECRET` set for the relays. One host, so no `endcall outbox deliver` sidecar
(the README asks for one for a fleet). For the receiver-fault scenarios the retry schedule is
shortened through the job metadata (`"webhook_schedule"` in a dispatch claim signed with the
workers' `ENDCALL_DISPATCH_KEY`, read by the example agent's `endcall.job_config`; printed).

Scenarios (expected `ended_reason` for the kit; `—`: nothing the agent can know):

 1 candidate-ends        the candidate clicks End                   customer-ended-call
 2 agent-ends            the agent's tool ends it after the goodbye assistant-ended-call
 3 max-duration          a 12 s limit                               exceeded-max-duration
 4 tab-closed            the candidate closes the tab               customer-tab-closed
 5 browser-killed        Chromium is SIGKILLed mid-interview        customer-disconnected
 6 worker-sigterm        SIGTERM to the worker (a redeploy); it     customer-ended-call
                         drains, the candidate clicks End 5 s later
 7 job-sigkill           the job process is SIGKILLed (OOM)         agent-crashed, complete:false
 8 worker-sigkill        the worker's process group is SIGKILLed,   agent-crashed, complete:false
                         a new worker starts on the same volume
 9 receiver-503          the receiver answers 503 for 120 s, then   customer-ended-call (late)
                         recovers; the candidate clicks End
10 receiver-unreachable  the receiver is down (connection refused)  customer-ended-call (late)
                         during the end, back 60 s later
11 signalling-cut        toxiproxy between the worker and LiveKit   —
                         cuts the agent's signalling for 60 s
12 server-restart        livekit-server is restarted mid-interview  —

With ``--outbox postgres`` the kit's outbox is one database of a real PostgreSQL cluster the
bench starts (Debian's initdb/pg_ctl, `endcall.testing.pgcluster`) for every worker:
`ENDCALL_OUTBOX=postgresql://…`, two kit workers on the shared stack, the workers of 6, 8, 11,
12 on the same database (any relay of the fleet may deliver any host's leftovers). Then the
fleet scenarios run too (``--fleet``: only them). Each fleet batch has a fleet of its own
(`loss_fleet.py`): a livekit-server whose own webhooks go to every `endcall serve` replica
(`webhook.urls`), a PostgreSQL cluster, `endcall serve` (`ENDCALL_OUTBOX` = the workers'
database, `ENDCALL_WEBHOOK_URL` = the cell's receiver, so its reconciler's `session.missing`
lands there; it settles a room 60 s after `room_finished`, sweeps every 30 s, relays every
5 s), and two worker hosts (each worker's working directory and TMPDIR stand for the host's
local disk). The naive agent has no database and no `endcall serve`: its fleet cells run the
same interviews, ends, host and receiver faults on a livekit-server and workers of their own.

13 pg-restart            PostgreSQL restarted (pg_ctl stop, 5 s,    customer-ended-call
                         start) mid-interview; the candidate answers
                         once more, then the server stops again,
                         the candidate clicks End, and it is back
                         10 s later (the end is accepted, the report
                         stored and sent while it is down)
14 pg-late               PostgreSQL down when the workers and       customer-ended-call
                         endcall serve start, up 60 s after they
                         are; the candidates arrive at once and wait
                         up to 2 min for the interviewer
15 host-lost             worker host A lost mid-interview: its      agent-crashed, complete:false
                         processes SIGKILLed, its disk deleted; host
                         B is up (PostgreSQL outbox: another host's
                         relay, or endcall serve's, sends the draft)
16 host-lost-sqlite      the same with a SQLite outbox on A's disk: session.missing:no-report-
                         endcall serve (its own SQLite ledger)      from-agent
                         sends `session.missing`
17 serve-replica-killed  two endcall serve replicas; the receiver   customer-ended-call
                         answers 503 for 90 s from the End click,
                         replica 1 is SIGKILLed 10 s after it

Counting. The kit's receiver keeps one report per `end_id` (protocol.md §6: a crash draft has
webhook-id `<end_id>.draft`, the final report `<end_id>`; the final one replaces the draft):
`received` = sessions with at least one report; the report kept decides `with_expected_reason`
and `incomplete`; a draft followed by its final report is counted in `superseded_drafts`, not
as a duplicate. `dup_same_body` / `dup_diff_body`: a webhook-id (kit) or a room (naive)
accepted again with the same / a different body. `p50_ms`/`p99_ms`: from the end (the
click — in 6 too, the candidate's click after the SIGTERM —, the close, the kill, the fault;
for 2 and 3 the report's `ended_at`) to the first report accepted for the session. Fleet
cells: a `session.missing` event from `endcall serve`
(webhook-id `<room_sid>.missing`, protocol.md §7) counts as received — the backend knows the
session ended without a report — under the reason `session.missing:<cause>` (the expected one
in 16); a room that gets a report *and* a `session.missing` counts the event in
`dup_diff_body` (they contradict each other). The wait for a fleet cell lasts until every room
has a report and `endcall serve`'s ledger has settled it, so a late `session.missing` is seen.

Run inside the test namespace::

    scripts/in-netns .venv/bin/python bench/report_loss.py --quick        # 1 session each, ≤ 10 min
    scripts/in-netns .venv/bin/python bench/report_loss.py --sessions 20  # the README's table
    scripts/in-netns .venv/bin/python bench/report_loss.py --outbox postgres --quick  # 12 + fleet
    scripts/in-netns .venv/bin/python bench/report_loss.py --fleet --sessions 3       # fleet only
    scripts/in-netns .venv/bin/python bench/report_loss.py --agent kit-node --quick   # Node
    ... [--scenario NAME]... [--agent naive|kit|kit-node] [--outbox sqlite|postgres] [--fleet]
    [--json]

``--agent kit-node``: the kit's Node example (`examples/node/interview_agent.ts`, built by
`cd examples/node && npm run build`) in place of the Python one, deployed as README "Agent
(Node)" says: the same environment (`ENDCALL_OUTBOX` a SQLite file of the Node workers,
`ENDCALL_WEBHOOK_SECRET`, `ENDCALL_DISPATCH_KEY`: its `jobConfig` reads the same signed
claim), registered as `interview-agent-node` (`AGENT_NAME`), and beside each worker host a
sidecar relay, `endcall outbox deliver --forever --ask-livekit` (Node workers have no
`endcall.prewarm`): it delivers the crash drafts of 7 and 8 (in 8 it outlives the killed
worker: a separate container). Not in the default run (`naive` and `kit`); the fleet
scenarios run Python workers only.

The code, next to this file (run as a script, bench/ is on ``sys.path``): `loss_scenarios.py`
(the scenarios as a table), `loss_stack.py` (livekit-server, the agent workers, toxiproxy),
`loss_receiver.py` (the receiver of each scenario and agent), `loss_runner.py` (the interviews
and the faults), `loss_fleet.py` (the PostgreSQL outbox, the fleets and their faults),
`loss_table.py` (the counts, the table, the totals). This file parses the flags, runs every
cell and prints the results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from loss_fleet import PG_LATE, RECONCILE_AFTER, FleetBench
from loss_receiver import CellReceiver
from loss_runner import Cell, logger
from loss_scenarios import AGENTS, ALL_SCENARIOS, BENCH_SCHEDULE, DEFAULT_AGENTS, FLEET, SCENARIOS
from loss_table import fmt_table, tally, totals

from endcall.testing.livekit_server import node_ip
from endcall.testing.node_agent import ensure_built, node_agent_unavailable


async def run(args: argparse.Namespace, output: Path, say: Any) -> list[dict[str, Any]]:
    if args.scenario:
        chosen = [s for s in ALL_SCENARIOS if s.name in args.scenario]
    elif args.fleet:
        chosen = list(FLEET)
    else:
        chosen = list(SCENARIOS) + (list(FLEET) if args.outbox == "postgres" else [])
    agents = [args.agent] if args.agent else list(DEFAULT_AGENTS)
    if "kit-node" in agents:
        problem = node_agent_unavailable()
        if problem:
            sys.exit(f"bench/report_loss.py --agent kit-node: {problem}")
        await asyncio.to_thread(ensure_built)
    # the long waits first, so they overlap the rest
    chosen.sort(key=lambda s: -s.wait)
    bench = FleetBench(output, args.sessions, args.parallel, say, outbox=args.outbox)
    cells: list[Cell] = []
    try:
        # the shared stack's workers only for the 12 (a fleet scenario brings its own)
        await bench.start_shared(agents if any(not s.fleet for s in chosen) else [])
        for sc in chosen:
            for agent in agents:
                if sc.fleet and agent == "kit-node":
                    say(f"{sc.number} {sc.name}: not run for kit-node (the fleets run Python)")
                    continue
                rec = CellReceiver(bench.secret, output / f"reports-{sc.number}-{agent}.sqlite")
                await rec.start()
                cells.append(Cell(sc, agent, rec))
        say(
            f"server: livekit-server (shared + one per batch for 6, 8, 11, 12 and the fleet), "
            f"{len(cells)} cells × {args.sessions} sessions, {args.parallel} interviews at a "
            f"time; kit outbox of 1-12: {args.outbox}"
            f"{' (one database, 2 kit workers on the shared stack)' if bench.outbox else ''}; "
            f"kit retry schedule for this bench: {BENCH_SCHEDULE} s; fleet: endcall serve "
            f"reconciles {RECONCILE_AFTER:g} s after room_finished, pg-late: {PG_LATE:g} s"
        )
        started = time.monotonic()

        async def one(cell: Cell) -> None:
            await bench.run_cell(cell)
            row = tally(cell)
            say(
                f"[{time.monotonic() - started:4.0f} s] {cell.scenario.number:2} "
                f"{cell.scenario.name}/{cell.agent}: received {row['received']}/"
                f"{row['sessions']}, reasons {row['reasons']}"
            )

        await asyncio.gather(*(one(c) for c in cells))
    finally:
        await bench.stop()
        for c in cells:
            with contextlib.suppress(Exception):
                await c.receiver.stop()
    order = {s.name: s.number for s in ALL_SCENARIOS}
    rows = sorted((tally(c) for c in cells), key=lambda r: (order[r["scenario"]], r["agent"]))
    for c in cells:
        c.receiver.example.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 session per scenario and agent")
    parser.add_argument("--sessions", type=int, default=None, help="sessions per scenario/agent")
    parser.add_argument("--parallel", type=int, default=3, help="interviews active at a time")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[s.name for s in ALL_SCENARIOS],
        help="only this scenario (repeatable)",
    )
    parser.add_argument(
        "--outbox",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the kit's outbox for the 12: a SQLite file per host (default), or one PostgreSQL "
        "database for every worker (then the fleet scenarios run too)",
    )
    parser.add_argument("--fleet", action="store_true", help="only the fleet scenarios")
    parser.add_argument("--agent", choices=AGENTS, help="only this agent")
    parser.add_argument("--json", action="store_true", help="one JSON object per line and cell")
    parser.add_argument("--output", type=Path, default=Path("test-output/report-loss"))
    args = parser.parse_args()
    args.sessions = args.sessions or (1 if args.quick else 20)
    if node_ip() is None:
        sys.exit(
            "bench/report_loss.py: run it inside the test network namespace: "
            "scripts/in-netns .venv/bin/python bench/report_loss.py --quick"
        )
    output = args.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    for old in output.glob("*.sqlite*"):
        old.unlink()
    # a previous run's host disks, serve ledgers and PostgreSQL clusters
    for old in (*output.glob("host-*"), *output.glob("serve-*"), *output.glob("pg-*")):
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    handler = logging.FileHandler(output / "bench.log", mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    for noisy in ("livekit", "livekit.agents", "httpx", "httpcore", "asyncio", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def say(msg: str) -> None:
        logger.info("%s", msg)
        print(msg, file=sys.stderr, flush=True)

    t0 = time.monotonic()
    rows = asyncio.run(run(args, output, say))
    say(f"done in {time.monotonic() - t0:.0f} s; logs in {output}")
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return
    print(fmt_table(rows))
    for agent in AGENTS:
        if any(r["agent"] == agent for r in rows):
            print(totals(rows, agent))


if __name__ == "__main__":
    main()
