"""`JobHooks`: what the job's hooks wait for before the job may go.

`on_session_end` (`EndCall.on_session_end`, given up to `session_end_timeout`) and the job's
shutdown callback (about 10 s before the process is killed, of which EndCall takes
`SHUTDOWN_CALLBACK_BUDGET`) both: let a running grace run out, end a call that is still
active (`worker-shutdown` or `server-ended-call`), then wait for the end path, the room
deletion and the in-process delivery (`EndPath.finish`). A job whose `start()` never ran is
ended here with `agent-error` (`endcall.agent.misuse`). The shutdown callback runs last: it also
detaches the channels and closes the attribute writer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from endcall.agent import misuse
from endcall.agent.call import Call
from endcall.agent.channels import Channels
from endcall.agent.customer import Presence
from endcall.agent.decisions import Decisions
from endcall.agent.end_machine import EndRecord, EndState
from endcall.agent.end_path import EndPath
from endcall.agent.job_lifecycle import JobShutdown
from endcall.agent.room_signals import Signals
from endcall.agent.waits import remaining, settle
from endcall.protocol import EndReason

__all__ = ["SHUTDOWN_CALLBACK_BUDGET", "JobHooks"]

logger = logging.getLogger("endcall")

#: the job's shutdown callbacks get ~10 s before the process is killed; keep a margin
SHUTDOWN_CALLBACK_BUDGET = 8.0


class JobHooks:
    """The job's end of one EndCall; `channels()` gives the attached channels, if any."""

    def __init__(
        self,
        call: Call,
        path: EndPath,
        *,
        presence: Presence,
        signals: Signals,
        decisions: Decisions,
        channels: Callable[[], Channels | None],
    ) -> None:
        self._call = call
        self._path = path
        self._presence = presence
        self._signals = signals
        self._decisions = decisions
        self._channels = channels
        self.session_end_called = False

    async def on_session_end(self) -> None:
        self.session_end_called = True
        await self.finish(deadline=None)

    async def on_shutdown_callback(self, reason: str) -> None:
        deadline = time.monotonic() + SHUTDOWN_CALLBACK_BUDGET
        if not self.session_end_called:
            logger.error("endcall: %s", misuse.NO_SESSION_END)
        call = self._call
        if call.job_shutdown is None:
            call.job_shutdown = JobShutdown(user_initiated=call.shutdown_requested, reason=reason)
        await self.finish(deadline=deadline)
        channels = self._channels()
        if channels is not None:
            channels.detach()
        if call.attrs is not None:
            call.attrs.close()

    async def finish(self, *, deadline: float | None) -> None:
        """Wait for the end path and delivery; `deadline` is a `time.monotonic()` bound."""
        machine = self._call.machine
        done = self._path.done if self._path.done is not None else self._start_late()
        if machine.held is not None and machine.state is EndState.ACTIVE:
            # a tentative end (a grace) is still waiting for a request: let it run out
            bound = remaining(deadline, self._presence.longest_grace + 0.5)
            await settle(self._presence.settled.wait(), bound)
        self._signals.job_ending()
        await self._path.finish(done, deadline)

    def _start_late(self) -> asyncio.Future[EndRecord]:
        """The job ends and `start()` never ran: build and hand over the report anyway."""
        logger.error("endcall: %s", misuse.NOT_STARTED)
        call = self._call
        call.started = True
        call.started_at = getattr(call.session, "_started_at", None) or call.started_at
        done = self._path.begin()
        if not getattr(call.session, "_started", False):
            call.closed.set()  # not running (any more): nothing to drain or close
        else:
            call.session.on("close", self._signals.on_session_close)
        self._decisions.trigger(
            EndReason.AGENT_ERROR.value, "system", "job", error=misuse.NOT_STARTED
        )
        return done
