"""`Call`: what the parts of one `EndCall` share about its call.

The job and the session, the end machine, the journal, the attribute writer (once started),
and what was learned on the way: when the call started, how the session closed, whether the
agent left the room, how the job is shutting down, and the extra fields of the report's `end`
section.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from endcall.agent.attributes import AttributeWriter
from endcall.agent.end_machine import EndMachine
from endcall.agent.job_lifecycle import JobShutdown
from endcall.agent.journal import Journal

__all__ = ["Call"]


class Call:
    """One call as every part of its `EndCall` sees it."""

    def __init__(self, ctx: Any, session: Any, machine: EndMachine) -> None:
        self.ctx = ctx
        self.session = session
        self.machine = machine
        self.journal = Journal(machine.end_id, self.room_name)
        self.attrs: AttributeWriter | None = None
        self.started = False
        self.started_at = time.time()
        #: extra fields of the report's `end` section (`drain_timed_out`, …)
        self.end_info: dict[str, Any] = {}
        #: the session emitted `close` (or is known not to run)
        self.closed = asyncio.Event()
        self.close_reason: str | None = None
        #: the agent is no longer in the room
        self.room_gone = asyncio.Event()
        #: why (`rtc.DisconnectReason`), once it is gone
        self.disconnect_reason: int | None = None
        self.job_shutdown: JobShutdown | None = None
        #: EndCall called `ctx.shutdown()` itself
        self.shutdown_requested = False

    @property
    def end_id(self) -> str:
        return self.machine.end_id

    def room_name(self) -> str:
        try:
            name = self.ctx.room.name or self.ctx.job.room.name
        except Exception:
            name = ""
        return name or "unknown"

    def session_closing(self) -> bool:
        if self.closed.is_set():
            return True
        s = self.session
        return bool(getattr(s, "_closing", False) or getattr(s, "_closing_task", None))

    def set_attributes(self, values: Mapping[str, str], *, coalesce: float = 0.0) -> None:
        """Write agent attributes, once started (before, there is no writer yet)."""
        if self.attrs is not None:
            self.attrs.update(dict(values), coalesce=coalesce)
