"""The report-loss benchmark's scenarios: the 12 ways production ends an interview.

One `Scenario` row per fault (how the interview ends, what `ended_reason` the kit should report,
how long to wait for the reports, whether the fault needs its own livekit-server and worker),
the two agents compared, and the kit's shortened retry schedule for this bench. Data only:
`loss_runner.py` applies the faults, `bench/report_loss.py` is the entry point.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the kit's retry schedule for this bench (job metadata "webhook_schedule"), seconds before
#: each attempt: 11 attempts over ~8 min instead of ~46 h
BENCH_SCHEDULE = [0, 5, 10, 20, 30, 30, 60, 60, 60, 90, 120]
AGENTS = ("naive", "kit")


@dataclass(frozen=True)
class Scenario:
    number: int
    name: str
    title: str
    expect: str | None
    #: how the interview ends: click, close, wait, kill-browser, job-kill, worker-term,
    #: worker-kill, signal-cut, server-restart
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
