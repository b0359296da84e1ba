"""The report-loss benchmark's scenarios: the 12 ways production ends an interview, and the
faults of a fleet's own infrastructure.

One `Scenario` row per fault (how the interview ends, what `ended_reason` the kit should report,
how long to wait for the reports, whether the fault needs its own livekit-server and worker),
the agents compared, and the kit's shortened retry schedule for this bench. The fleet
scenarios (`fleet=True`, `FLEET`) run on a fleet of their own (`loss_fleet.py`): a PostgreSQL
cluster, two worker hosts, `endcall serve` replicas fed by livekit-server's webhooks. Data
only: `loss_runner.py` and `loss_fleet.py` apply the faults, `bench/report_loss.py` is the
entry point.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the kit's retry schedule for this bench (job metadata "webhook_schedule"), seconds before
#: each attempt: 11 attempts over ~8 min instead of ~46 h
BENCH_SCHEDULE = [0, 5, 10, 20, 30, 30, 60, 60, 60, 90, 120]
#: the agents: the naive one, the kit's Python example, the kit's Node example
#: (`examples/node`, with a sidecar relay per host: `endcall outbox deliver --forever
#: --ask-livekit`); `--agent` picks one
AGENTS = ("naive", "kit", "kit-node")
#: what a run without `--agent` compares
DEFAULT_AGENTS = ("naive", "kit")
#: the agents deployed with the kit: a signed dispatch claim per job, Standard Webhooks
KIT_AGENTS = ("kit", "kit-node")
#: the reason a `session.missing` event is counted under (`session.missing:<cause>`)
MISSING_PREFIX = "session.missing:"


@dataclass(frozen=True)
class Scenario:
    number: int
    name: str
    title: str
    expect: str | None
    #: how the interview ends: click, close, wait, kill-browser, job-kill, worker-term,
    #: worker-kill, signal-cut, server-restart; fleet: pg-restart, pg-late, host-lost,
    #: serve-kill
    action: str
    answers: int = 1
    agent_ends: bool = False
    max_duration: float | None = None
    receiver_503: float = 0.0
    receiver_unreachable: float = 0.0
    #: how long to wait for the reports after the end
    wait: float = 60.0
    #: the fault needs its own server/worker per batch
    dedicated: bool = False
    expect_incomplete: bool = False
    #: a fleet of its own (`loss_fleet.py`): PostgreSQL, two worker hosts, `endcall serve`
    fleet: bool = False
    #: the fleet's outbox: "postgres" (one database for every host) or "sqlite" (a file on
    #: each worker host's disk; `endcall serve` keeps its ledger in a file of its own)
    fleet_outbox: str = "postgres"
    #: `endcall serve` replicas behind livekit-server's webhook URL list
    serve_replicas: int = 1


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(1, "candidate-ends", "the candidate clicks End", "customer-ended-call", "click"),
    Scenario(
        2,
        "agent-ends",
        "the agent's tool ends it after the goodbye",
        "assistant-ended-call",
        "wait",
        answers=3,
        agent_ends=True,
    ),
    Scenario(3, "max-duration", "a 12 s limit", "exceeded-max-duration", "wait", max_duration=12.0),
    Scenario(4, "tab-closed", "the candidate closes the tab", "customer-tab-closed", "close"),
    Scenario(
        5,
        "browser-killed",
        "Chromium is SIGKILLed mid-interview",
        "customer-disconnected",
        "kill-browser",
        wait=90.0,
    ),
    Scenario(
        6,
        "worker-sigterm",
        "SIGTERM to the worker mid-interview (it drains), the candidate ends 5 s later",
        "customer-ended-call",
        "worker-term",
        dedicated=True,
    ),
    Scenario(
        7,
        "job-sigkill",
        "the job process is SIGKILLed mid-interview",
        "agent-crashed",
        "job-kill",
        wait=200.0,
        expect_incomplete=True,
    ),
    Scenario(
        8,
        "worker-sigkill",
        "the worker is SIGKILLed, a new one starts",
        "agent-crashed",
        "worker-kill",
        wait=220.0,
        dedicated=True,
        expect_incomplete=True,
    ),
    Scenario(
        9,
        "receiver-503",
        "the receiver answers 503 for 120 s",
        "customer-ended-call",
        "click",
        receiver_503=120.0,
        wait=220.0,
    ),
    Scenario(
        10,
        "receiver-unreachable",
        "the receiver is unreachable, back 60 s later",
        "customer-ended-call",
        "click",
        receiver_unreachable=60.0,
        wait=160.0,
    ),
    Scenario(
        11,
        "signalling-cut",
        "the agent's signalling is cut for 60 s",
        None,
        "signal-cut",
        wait=180.0,
        dedicated=True,
    ),
    Scenario(
        12,
        "server-restart",
        "livekit-server restarts mid-interview",
        None,
        "server-restart",
        wait=150.0,
        dedicated=True,
    ),
)


#: the fleet's faults: its database, its hosts, its `endcall serve` replicas
FLEET: tuple[Scenario, ...] = (
    Scenario(
        13,
        "pg-restart",
        "PostgreSQL restarted mid-interview and again as the report is stored and sent",
        "customer-ended-call",
        "pg-restart",
        wait=240.0,
        fleet=True,
    ),
    Scenario(
        14,
        "pg-late",
        "PostgreSQL down when the workers and endcall serve start, up 60 s later",
        "customer-ended-call",
        "pg-late",
        wait=240.0,
        fleet=True,
    ),
    Scenario(
        15,
        "host-lost",
        "a worker host is lost with its disk mid-interview (PostgreSQL outbox)",
        "agent-crashed",
        "host-lost",
        wait=300.0,
        fleet=True,
        expect_incomplete=True,
    ),
    Scenario(
        16,
        "host-lost-sqlite",
        "a worker host is lost with its disk mid-interview (SQLite outbox on that disk)",
        MISSING_PREFIX + "no-report-from-agent",
        "host-lost",
        wait=300.0,
        fleet=True,
        fleet_outbox="sqlite",
    ),
    Scenario(
        17,
        "serve-replica-killed",
        "one of two endcall serve replicas SIGKILLed as the interviews end (receiver 503 90 s)",
        "customer-ended-call",
        "serve-kill",
        receiver_503=90.0,
        wait=300.0,
        fleet=True,
        serve_replicas=2,
    ),
)
ALL_SCENARIOS: tuple[Scenario, ...] = SCENARIOS + FLEET
