"""`Checkpoints`: crash drafts of the report, and their schedule.

While the call runs, a `complete: false` draft of the report is saved to the outbox every
`checkpoint_interval` seconds (at most 30) and after every conversation item or annotation, at
most one per `DRAFT_MIN_INTERVAL` in a burst; a process that dies then still delivers the call
so far. `stop` ends them before the full report is stored. A draft is serialized in slices on
the event loop, and `cache` keeps each chat item's and event's bytes for the next draft and the
final report (`endcall.agent.report_json`): a long call's draft never holds the loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from endcall.agent.annotations import Annotations
from endcall.agent.call import Call
from endcall.agent.report import build_draft, build_draft_async
from endcall.agent.report_json import ReportJson
from endcall.agent.waits import settle

__all__ = ["CHECKPOINT_INTERVAL", "DRAFT_MIN_INTERVAL", "Checkpoints"]

logger = logging.getLogger("endcall")

CHECKPOINT_INTERVAL = 30.0
#: drafts are rebuilt at most this often (seconds)
DRAFT_MIN_INTERVAL = 2.0
#: how long the end waits for a draft being written
STOP_TIMEOUT = 5.0


class Checkpoints:
    """Saves drafts through `sink.save_draft(end_id, body)` while `call` has started."""

    def __init__(
        self, call: Call, sink: Any, annotations: Annotations, interval: float = CHECKPOINT_INTERVAL
    ) -> None:
        self._call = call
        self._sink = sink
        self._annotations = annotations
        self.interval = max(1.0, min(interval, CHECKPOINT_INTERVAL))
        self._loop_task: asyncio.Task[None] | None = None
        self._draft_task: asyncio.Task[None] | None = None
        self._dirty = False
        self._stopped = False
        #: the serialized chat items and events, kept from one draft to the next
        self.cache = ReportJson()

    def start(self) -> None:
        """A draft now, then every `interval` seconds."""
        self._loop_task = asyncio.create_task(self._every_interval(), name="endcall_drafts")

    def schedule(self) -> None:
        """A draft soon (the call changed)."""
        if self._stopped or not self._call.started:
            return
        if self._draft_task is not None and not self._draft_task.done():
            self._dirty = True
            return
        self._draft_task = asyncio.get_running_loop().create_task(self._save())

    async def stop(self) -> None:
        """No more drafts; waits (bounded) for one being written."""
        self._stopped = True
        if self._loop_task is not None:
            self._loop_task.cancel()
        if self._draft_task is not None and not self._draft_task.done():
            if not await settle(self._draft_task, STOP_TIMEOUT, cancel=False):
                logger.warning("endcall: a draft checkpoint was still running at the end")

    def minimal_draft(self) -> bytes:
        """A draft without the session's history: the body of a row written in a hurry."""
        call = self._call
        return build_draft(
            call.end_id,
            ctx=call.ctx,
            session=None,
            room_name=call.room_name(),
            started_at=call.started_at,
        )

    async def _save(self) -> None:
        call = self._call
        while not self._stopped:
            self._dirty = False
            try:
                body = await build_draft_async(
                    call.end_id,
                    ctx=call.ctx,
                    session=call.session,
                    room_name=call.room_name(),
                    started_at=call.started_at,
                    annotations=self._annotations.snapshot(),
                    cache=self.cache,
                )
                await self._sink.save_draft(call.end_id, body)
            except Exception:
                logger.exception("endcall: could not checkpoint the draft")
            if not self._dirty:
                return
            await asyncio.sleep(DRAFT_MIN_INTERVAL)  # a burst of turns: one draft per interval

    async def _every_interval(self) -> None:
        while not self._stopped:
            self.schedule()
            await asyncio.sleep(self.interval)
