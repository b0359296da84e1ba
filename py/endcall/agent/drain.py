"""The drain (step 2 of the end path): the goodbye plays out and running tool calls finish.

A customer end interrupts the agent's speech (`interrupt_on_customer_end`) and says no
goodbye; the tool, `max_duration` and `silence_timeout` let the goodbye play out in full
(`endcall.agent.end_tool`); tool calls still running (but the end tool itself) get to finish. The
caller bounds it with `drain_timeout`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from endcall.agent.end_machine import Trigger
from endcall.agent.end_tool import GoodbyePlan, wait_speech, wait_turn
from endcall.agent.waits import settle

__all__ = ["drain", "wait_tool_calls"]

logger = logging.getLogger("endcall")


async def drain(
    session: Any,
    trigger: Trigger,
    plan: GoodbyePlan | None,
    *,
    interrupt_on_customer_end: bool,
    tool_name: str,
    closing: Callable[[], bool],
) -> None:
    """Play the goodbye of `plan` out and wait for running tool calls; `closing()` is True
    once the session is closing (no goodbye is said then)."""
    if trigger.initiator.kind == "customer" and interrupt_on_customer_end:
        try:
            await settle(session.interrupt(force=True), None, cancel=False)
        except Exception as e:  # not running, or uninterruptible speech
            logger.debug("endcall: interrupt failed: %s", e)
    if plan is not None:
        if plan.turn is not None:
            await wait_turn(plan.turn)
        if plan.say and not closing():
            handle = None
            try:
                handle = session.say(plan.say, allow_interruptions=False)
            except Exception as e:
                # e.g. a realtime model without a TTS: have the model say it
                logger.debug("endcall: say() failed (%s); asking the model instead", e)
                try:
                    handle = session.generate_reply(
                        instructions=f'Say exactly this to the user: "{plan.say}"',
                        allow_interruptions=False,
                    )
                except Exception as e2:
                    logger.warning("endcall: could not say the goodbye: %s", e2)
            if handle is not None:
                await wait_speech(handle)
    await wait_tool_calls(session, skip=tool_name)


async def wait_tool_calls(session: Any, *, skip: str) -> None:
    """Wait for the session's running tool calls, but the current task and `skip` (a name)."""
    try:
        from livekit.agents.voice.tool_executor import _RunningTasks
    except ImportError:  # pragma: no cover - other livekit-agents versions
        return
    me = asyncio.current_task()
    tasks = [
        t.exe_task
        for t in list(_RunningTasks.get(session, {}).values())
        if not t.exe_task.done()
        and t.exe_task is not me
        and getattr(t.ctx.function_call, "name", "") != skip
    ]
    if tasks:
        await asyncio.wait(tasks)
