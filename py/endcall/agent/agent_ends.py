"""`AgentEnds`: the ends the agent decides itself — the LLM's end tool and the timers.

The tool (`end.tool`, `endcall.agent.end_tool`) ends with `assistant-ended-call`, initiated by the
agent participant, and its goodbye plays out in full; a second call while ending returns None.
`max_duration` and `silence_timeout` end with `exceeded-max-duration` / `silence-timed-out`
and say the goodbye configured for that reason, if any.
"""

from __future__ import annotations

from typing import Any

from endcall.agent.call import Call
from endcall.agent.decisions import Decisions
from endcall.agent.end_machine import EndState
from endcall.agent.end_tool import GoodbyePlan, Goodbyes, capture_turn, goodbye_plan, tool_result
from endcall.protocol import EndReason

__all__ = ["AgentEnds"]


class AgentEnds:
    """Triggers for the end tool and the timers, with their goodbyes."""

    def __init__(self, call: Call, decisions: Decisions, goodbyes: Goodbyes) -> None:
        self._call = call
        self._decisions = decisions
        self._goodbyes = goodbyes

    def on_tool(self, ctx: Any) -> str | None:
        """The LLM called the end tool; what the tool returns to it."""
        turn = capture_turn(ctx)
        if self._call.machine.state is not EndState.ACTIVE:
            if turn.reply_fut is not None:
                turn.reply_fut.cancel()
            return None
        reason = EndReason.ASSISTANT_ENDED_CALL.value
        goodbye = self._goodbyes(reason)
        identity = None
        try:
            identity = self._call.ctx.room.local_participant.identity or None
        except Exception:
            pass
        plan = goodbye_plan(turn, goodbye)
        self._decisions.trigger(reason, "agent", "tool", identity=identity, plan=plan)
        return tool_result(turn, goodbye)

    def on_max_duration(self) -> None:
        self.on_timer(EndReason.EXCEEDED_MAX_DURATION.value)

    def on_silence(self) -> None:
        self.on_timer(EndReason.SILENCE_TIMED_OUT.value)

    def on_timer(self, reason: str) -> None:
        say = self._goodbyes(reason)
        plan = GoodbyePlan(say=say) if say else None
        self._decisions.trigger(reason, "system", "timer", plan=plan)
