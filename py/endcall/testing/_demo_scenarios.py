"""The scenarios of `endcall demo`: every way an interview ends, as data.

:data:`SCENARIOS` is the table the demo plays (and ``--scenario`` chooses from); each
:class:`Scenario` says how many answers the candidate gives, how the interview ends and which
``ended_reason`` the report must carry. :data:`CANDIDATE_ANSWERS` are the candidate's lines.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CANDIDATE_ANSWERS", "SCENARIOS", "Scenario"]

CANDIDATE_ANSWERS = (
    "I built the payments ledger at my last job: double-entry, idempotent writes, "
    "about two thousand requests a second.",
    "Alerts on error budgets, and a nightly reconciliation job that compared the ledger "
    "with the bank's files.",
    "Write it to a durable outbox before sending, sign it, and retry with the same id "
    "until the receiver says 2xx.",
)


@dataclass(frozen=True)
class Scenario:
    """One way an interview ends."""

    name: str
    title: str
    #: how many of the candidate's answers are given before the end
    answers: int = 1
    #: "click" (the candidate clicks End), "close" (the tab closes), "wait" (the agent or a
    #: timer ends it)
    action: str = "click"
    #: the LLM calls the end tool after the last answer
    agent_ends: bool = False
    max_duration: float | None = None
    silence_timeout: float | None = None
    rpc_disabled: bool = False
    agent_unreachable: bool = False
    receiver_down: float = 0.0
    expect_reason: str = ""
    #: where the loopback double ends differently (it drops what a partitioned agent misses;
    #: a real stopped process reads it when it runs again)
    expect_reason_loopback: str | None = None

    def expected(self, *, loopback: bool) -> str:
        if loopback and self.expect_reason_loopback is not None:
            return self.expect_reason_loopback
        return self.expect_reason


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "candidate-ends",
        "the candidate clicks End",
        answers=2,
        expect_reason="customer-ended-call",
    ),
    Scenario(
        "agent-ends",
        "the agent ends with a goodbye",
        answers=3,
        action="wait",
        agent_ends=True,
        expect_reason="assistant-ended-call",
    ),
    Scenario(
        "max-duration",
        "the interview reaches its maximum duration",
        answers=1,
        action="wait",
        # the greeting, the first question and the answer must fit, also on two loaded cores
        # where a Node job's start stalls for seconds
        max_duration=18.0,
        expect_reason="exceeded-max-duration",
    ),
    Scenario(
        "silence",
        "the candidate stays silent",
        answers=1,
        action="wait",
        # counted from the start or the last answer: the greeting and the first question
        # (about 5 s; 10 s and more on two loaded cores, where a Node job's start stalls) must
        # fit, then the silence after the answer ends it
        silence_timeout=16.0,
        expect_reason="silence-timed-out",
    ),
    Scenario(
        "tab-closed",
        "the tab closes mid-interview",
        answers=1,
        action="close",
        expect_reason="customer-tab-closed",
    ),
    Scenario(
        "rpc-disabled",
        "RPC is disabled on the agent: data channel",
        answers=1,
        rpc_disabled=True,
        expect_reason="customer-ended-call",
    ),
    Scenario(
        "agent-unreachable",
        "the agent is unreachable: REST escalation",
        answers=1,
        agent_unreachable=True,
        # the hung agent runs again after the server deleted the room, and reads the
        # candidate's request (the server channel) before the deletion: the customer ended it
        expect_reason="customer-ended-call",
        expect_reason_loopback="room-deleted",
    ),
    Scenario(
        "receiver-down",
        "the receiver is down for 20 s, then up",
        answers=1,
        receiver_down=20.0,
        expect_reason="customer-ended-call",
    ),
)
