"""How a livekit-agents job ends, and how EndCall learns that it is ending (1.8.x).

The job process (`ipc/job_proc_lazy_main.py`, `_JobProc`) resolves one shutdown future when
`ctx.shutdown(reason)` is called (`user_initiated=True`), when the room disconnects
(`reason="room disconnected"`), when the entrypoint crashes (`"job crashed"`) or when the worker
sends a ShutdownRequest (deploy, drain, SIGTERM, the server terminating the job: the request's
reason or `"parent process shutdown"`). Then, in order:

1. the entrypoint gets **15 s** to return, then it is cancelled;
2. `session.aclose()` of the primary AgentSession, bounded at **60 s** (no drain: speech is
   interrupted);
3. `on_session_end(ctx)` from `@server.rtc_session(on_session_end=...)`, bounded by
   `session_end_timeout` (default **300 s**) — this is where EndCall delivers the report;
4. LiveKit Cloud's report upload, ShuttingDown to the worker, `room.disconnect()`;
5. the `ctx.add_shutdown_callback(...)` callbacks, which have about **10 s**: the supervisor
   (`ipc/supervised_proc.py`) kills the process `shutdown_process_timeout` (default 10 s) after
   ShuttingDown.

A worker shutdown reaches nothing but that future before step 2 closes the session, so
`watch_job_shutdown` attaches a callback to it: it runs in the loop iteration after the future
resolves — on Python 3.11 before `session.aclose()` starts, on 3.12+ at its first suspension —
and in any case before the session emits `close`, which lets EndCall record `worker-shutdown`
(and the shutdown reason) while the session still exists. The future is private to `_JobProc`; it is
found through the closure of `ctx._on_shutdown`. When it cannot be found (another runner, a
fake job), EndCall falls back to classifying the session's `close` event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["JobShutdown", "watch_job_shutdown"]

logger = logging.getLogger("endcall")

ROOM_DISCONNECTED = "room disconnected"
JOB_CRASHED = "job crashed"


@dataclass(frozen=True)
class JobShutdown:
    """Why the job is shutting down, as `_JobProc` recorded it."""

    user_initiated: bool
    reason: str

    @property
    def room_disconnected(self) -> bool:
        return not self.user_initiated and self.reason == ROOM_DISCONNECTED

    @property
    def crashed(self) -> bool:
        return not self.user_initiated and self.reason == JOB_CRASHED

    @property
    def from_worker(self) -> bool:
        """A ShutdownRequest from the worker (deploy, drain, SIGTERM, server termination)."""
        return not self.user_initiated and not self.room_disconnected and not self.crashed


def _find_shutdown_future(ctx: Any) -> asyncio.Future[Any] | None:
    fn = getattr(ctx, "_on_shutdown", None)
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # empty cell
            continue
        fut = getattr(value, "_shutdown_fut", None)
        if isinstance(fut, asyncio.Future):
            return fut
    return None


def watch_job_shutdown(ctx: Any, callback: Callable[[JobShutdown], None]) -> bool:
    """Call `callback` as soon as the job's shutdown future resolves. False if not found."""
    fut = _find_shutdown_future(ctx)
    if fut is None:
        return False

    def _done(f: asyncio.Future[Any]) -> None:
        if f.cancelled() or f.exception() is not None:
            return
        info = f.result()
        try:
            callback(
                JobShutdown(
                    user_initiated=bool(getattr(info, "user_initiated", False)),
                    reason=str(getattr(info, "reason", "") or ""),
                )
            )
        except Exception:
            logger.exception("endcall: job shutdown callback failed")

    fut.add_done_callback(_done)
    return True
