"""`end.tool`: the `end_call` function tool, and how its goodbye is played out in full.

The LLM calls `end_call` → the session is `ending` with `assistant-ended-call` at once (the
ack), then the end path waits for the goodbye before shutting the session down:

- **pipeline LLM** (or a realtime model without automatic tool replies): with a fixed
  `goodbye`, the tool returns `None` (no reply is generated), the end path waits for the turn
  that called the tool — text the model spoke alongside the call plays first — and then says
  the goodbye with interruptions disallowed. Without a fixed goodbye the tool returns "say
  goodbye to the user" and the model's reply, which reuses the same speech handle, is the
  goodbye.
- **realtime model with `auto_tool_reply_generation`** (it answers every tool result on its
  own, e.g. while it speaks during the call): the tool returns the goodbye instruction (the
  fixed goodbye as the exact words to say, when there is one) and the end path waits for the
  next speech the session creates (at most 5 s) and for its playout, as livekit-agents'
  `EndCallTool` does.

Everything is bounded by `drain_timeout`. A second call while ending returns `None`.

The tool's name (`end_call`) and description are the `EndCall(tool_name=...,
tool_description=...)` options, so a team's prompt can say "call end_interview when …".
`Goodbyes` picks the goodbye for a reason: one text for every agent-side end, or one per
reason (`{"exceeded-max-duration": "Our time is up…", "*": "Goodbye!"}`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from livekit.agents import llm
from livekit.agents.voice import RunContext, SpeechHandle

__all__ = [
    "END_CALL_DESCRIPTION",
    "END_CALL_NAME",
    "GoodbyePlan",
    "Goodbyes",
    "ToolTurn",
    "capture_turn",
    "goodbye_plan",
    "make_end_tool",
    "tool_result",
    "wait_speech",
    "wait_turn",
]

logger = logging.getLogger("endcall")

END_CALL_DESCRIPTION = (
    "Ends the call. Call it when the conversation is over: the user clearly said they are "
    "done, or you have finished and said everything you had to say. Do not call it when the "
    "user asks to pause, hold or be transferred, or when their intent is unclear. It is the "
    "last thing you do: the goodbye is said for you and the call is then disconnected."
)

END_CALL_NAME = "end_call"
#: what LLM providers accept as a function name
TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
#: the key of a goodbye mapping used for every reason it does not name
ANY_REASON = "*"

REALTIME_REPLY_TIMEOUT = 5.0


class Goodbyes:
    """The goodbye said before an agent-side end: `None` (none), one text for every reason,
    or a mapping of reason → text where `"*"` covers the reasons it does not name."""

    def __init__(self, goodbye: str | Mapping[str, str] | None) -> None:
        from endcall.protocol import is_valid_reason

        if goodbye is None or isinstance(goodbye, str):
            self._by_reason: dict[str, str] = {ANY_REASON: goodbye} if goodbye else {}
            return
        if not isinstance(goodbye, Mapping):
            raise TypeError("goodbye must be a string, a mapping of reason to text, or None")
        for reason, text in goodbye.items():
            if reason != ANY_REASON and not is_valid_reason(reason):
                raise ValueError(f"goodbye: {reason!r} is not a reason (or '*')")
            if not isinstance(text, str):
                raise TypeError(f"goodbye[{reason!r}] must be a string")
        self._by_reason = {k: v for k, v in goodbye.items() if v}

    def __call__(self, reason: str) -> str | None:
        """The goodbye for `reason`, or None."""
        return self._by_reason.get(reason, self._by_reason.get(ANY_REASON))


@dataclass
class ToolTurn:
    """The turn in which the LLM called `end_call`."""

    handle: SpeechHandle | None
    auto_reply: bool
    """True when the model will answer the tool result on its own (realtime auto reply)."""
    reply_fut: asyncio.Future[SpeechHandle] | None = None
    """The next speech created after the call (realtime auto reply only)."""


@dataclass
class GoodbyePlan:
    """What the drain must wait for / say before the session may close."""

    turn: ToolTurn | None = None
    say: str | None = None


def goodbye_plan(turn: ToolTurn, goodbye: str | None) -> GoodbyePlan:
    """What the drain does after the tool call: wait for `turn`, then say `goodbye` unless
    the model says it (an auto-replying realtime model is told the words instead)."""
    return GoodbyePlan(turn=turn, say=None if turn.auto_reply else goodbye)


def tool_result(turn: ToolTurn, goodbye: str | None) -> str | None:
    """What the end tool returns to the LLM (None: no reply is generated; the end path
    says `goodbye` itself)."""
    if turn.auto_reply:
        if goodbye:
            return f'Say exactly this goodbye to the user, nothing else: "{goodbye}"'
        return "say goodbye to the user"
    if goodbye:
        return None
    return "say goodbye to the user"


def _realtime_auto_reply(ctx: RunContext[Any]) -> bool:
    try:
        activity = ctx.session.current_agent._get_activity_or_raise()
        if not isinstance(activity.llm, llm.RealtimeModel):
            return False
        rt = activity.realtime_llm_session
        return rt is not None and bool(rt.capabilities.auto_tool_reply_generation)
    except Exception:
        return False


def capture_turn(ctx: RunContext[Any]) -> ToolTurn:
    """Record the calling turn; for an auto-replying realtime model, catch its next speech."""
    auto = _realtime_auto_reply(ctx)
    turn = ToolTurn(handle=ctx.speech_handle, auto_reply=auto)
    if auto:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[SpeechHandle] = loop.create_future()
        session = ctx.session

        def _on_created(ev: Any) -> None:
            handle = getattr(ev, "speech_handle", None)
            if handle is None or handle is ctx.speech_handle:
                return
            if not fut.done():
                fut.set_result(handle)
            session.off("speech_created", _on_created)

        session.on("speech_created", _on_created)
        fut.add_done_callback(lambda _: _safe_off(session, _on_created))
        turn.reply_fut = fut
    return turn


def _safe_off(session: Any, cb: Callable[[Any], None]) -> None:
    try:
        session.off("speech_created", cb)
    except Exception:
        pass


async def wait_speech(handle: SpeechHandle) -> None:
    """Wait until a speech handle is done, from any task (never the circular-wait error)."""
    if handle.done():
        return
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def _done(_: SpeechHandle) -> None:
        if not fut.done():
            fut.set_result(None)

    handle.add_done_callback(_done)
    await fut


async def wait_turn(turn: ToolTurn) -> None:
    """Wait for the calling turn, then (realtime auto reply) for the model's reply."""
    if turn.handle is not None:
        await wait_speech(turn.handle)
    if turn.auto_reply and turn.reply_fut is not None:
        fut = turn.reply_fut
        done, _ = await asyncio.wait({fut}, timeout=REALTIME_REPLY_TIMEOUT)
        if fut not in done or fut.cancelled():
            logger.warning("endcall: the realtime model did not reply to end_call in time")
            fut.cancel()
            return
        await wait_speech(fut.result())


ToolCallback = Callable[[RunContext[Any]], "str | None"]


def make_end_tool(
    on_call: ToolCallback,
    *,
    name: str = END_CALL_NAME,
    description: str = END_CALL_DESCRIPTION,
) -> Any:
    """The end FunctionTool; `on_call(ctx)` returns the tool output (None: no reply).

    Raises `ValueError` for a name LLM providers refuse or an empty description."""
    if not TOOL_NAME.match(name):
        raise ValueError(
            f"tool_name {name!r} must be 1-64 characters of [A-Za-z0-9_-], not starting "
            "with a digit or '-'"
        )
    if not description.strip():
        raise ValueError("tool_description must not be empty")

    async def end_call(ctx: RunContext[Any]) -> str | None:
        return on_call(ctx)

    return llm.function_tool(end_call, name=name, description=description)
