"""`endcall.agent.agent_ends`: the end tool and the timers, with their goodbyes."""

from __future__ import annotations

from typing import Any

from parts_fakes import make_call

from endcall.agent.agent_ends import AgentEnds
from endcall.agent.decisions import Decisions
from endcall.agent.durable_end import DurableEnd
from endcall.agent.end_machine import Trigger
from endcall.agent.end_tool import GoodbyePlan, Goodbyes


def _ends(goodbye: Any) -> tuple[AgentEnds, list[tuple[Trigger, GoodbyePlan | None]]]:
    call = make_call()
    accepted: list[tuple[Trigger, GoodbyePlan | None]] = []
    decisions = Decisions(
        call,
        sink=object(),
        durable=DurableEnd(),
        allow=None,
        customer=lambda: None,
        minimal_draft=lambda: b"{}",
        on_accepted=lambda t, p: accepted.append((t, p)),
    )
    return AgentEnds(call, decisions, Goodbyes(goodbye)), accepted


async def test_timers_end_with_their_reason_and_goodbye() -> None:
    ends, accepted = _ends({"exceeded-max-duration": "Time is up.", "*": "Bye."})
    ends.on_max_duration()
    trigger, plan = accepted[0]
    assert trigger.reason == "exceeded-max-duration" and trigger.channel == "timer"
    assert plan is not None and plan.say == "Time is up."


async def test_silence_without_a_goodbye_says_nothing() -> None:
    ends, accepted = _ends(None)
    ends.on_silence()
    assert accepted[0][0].reason == "silence-timed-out" and accepted[0][1] is None
