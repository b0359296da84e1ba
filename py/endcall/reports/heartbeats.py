"""A running session's hold on its crash draft: a lease renewed every few seconds.

While its process lives, a session's draft row is renewed every `HEARTBEAT` seconds — from its
first checkpoint until its final report is stored (or the pipeline closes) — so "no renewal for
a while" means the owner is dead or stalled. That is what lets a relay take a draft over early
when LiveKit says the agent left its room (`Outbox.release_scope`): a job that is alive and
finishing keeps renewing, and its own final report is never overtaken by its draft.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from endcall.reports.outbox.base import Outbox

__all__ = ["HEARTBEAT", "TAKEOVER_QUIET", "Heartbeats"]

#: seconds between two renewals of a running session's draft
HEARTBEAT = 5.0
#: a draft whose owner LiveKit says is gone may be taken over once it was not renewed for this
#: long (three missed heartbeats): the owner is dead or stalled, not busy finishing
TAKEOVER_QUIET = 3 * HEARTBEAT

logger = logging.getLogger("endcall.report")


class Heartbeats:
    """One renewal task per session draft (``start(end_id)``, ``stop(end_id)``)."""

    def __init__(
        self,
        outbox: Callable[[], Awaitable[Outbox | None]],
        owner: str,
        lease: float,
        every: float = HEARTBEAT,
    ) -> None:
        self._outbox = outbox
        self._owner = owner
        self._lease = lease
        self.every = every
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, end_id: str) -> None:
        task = self._tasks.get(end_id)
        if task is None or task.done():
            self._tasks[end_id] = asyncio.get_running_loop().create_task(self._beat(end_id))

    def stop(self, end_id: str) -> None:
        task = self._tasks.pop(end_id, None)
        if task is not None:
            task.cancel()

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _beat(self, end_id: str) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.every)
            try:
                ob = await self._outbox()
                if ob is None:
                    continue
                held = await asyncio.to_thread(ob.renew_draft, end_id, self._owner, self._lease)
            except Exception as e:  # the database is down: the next beat tries again
                if not failing:
                    logger.warning("endcall: could not renew the draft of %s: %s", end_id, e)
                failing = True
                continue
            failing = False
            if not held:  # taken over, or replaced by the final report: nothing to hold
                return
