"""Misuse of `EndCall`, detected and survived: each mistake is logged with what to do instead,
and a report is still produced where one can be.

- Wrong arguments raise `ValueError` naming the argument (`check_arguments`), before anything
  else is checked.
- A second `EndCall` for one `JobContext` raises `RuntimeError` (two state machines would send
  two reports with different end_ids and reasons).
- `start()` never called (forgotten, or the entrypoint raised before it): the report is still
  built when the job ends (`agent-error`, with `end.error` naming the mistake) and an ERROR is
  logged.
- `EndCall.on_session_end` not passed to `rtc_session(on_session_end=...)`: detected when the
  job's shutdown callbacks run (the job runs them after `on_session_end`) and logged with the
  fix; delivery then only has the ~10 s before the process is killed.
- An outbox that cannot be written: an ERROR at `start()` (`check_outbox`).
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["NOT_STARTED", "NO_SESSION_END", "check_arguments", "check_outbox", "second_instance"]

logger = logging.getLogger("endcall")

NOT_STARTED = (
    "EndCall.start() was never called for this job (call `await end.start()` right after"
    " `await session.start(...)`; an entrypoint that raised before it has the same effect):"
    " no channel, timer or crash draft was active. The report is built now, at job end"
)

NO_SESSION_END = (
    "EndCall.on_session_end is not wired: pass `on_session_end=EndCall.on_session_end` (or"
    " `EndCall.wrap_session_end(your_hook)`) to `@server.rtc_session(...)`. Without it the"
    " report's delivery only gets the ~10 s of the job's shutdown callbacks; what is left is"
    " delivered later by a relay"
)


def second_instance() -> RuntimeError:
    return RuntimeError(
        "an EndCall already exists for this JobContext: create one EndCall per job (two would"
        " send two reports with different end_ids); use EndCall.of(ctx) to find it"
    )


async def check_outbox(sink: Any) -> None:
    """An outbox that cannot be written is an error at start-up, not drafts silently skipped
    later (the call goes on: the report is then kept in memory and logged)."""
    check = getattr(sink, "check", None)
    if check is None:
        return
    try:
        await check()
    except Exception as e:
        logger.error("endcall: %s", e)


def check_arguments(*, has_sink: bool, method: str, **seconds: float) -> None:
    """`EndCall`'s own arguments: a webhook or a pipeline, a 1-64 character method, and
    durations (given by name) that are not negative."""
    if not has_sink:
        raise ValueError("EndCall needs a webhook (or a pipeline) for the session report")
    for name, value in seconds.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0")
    if not method or len(method) > 64:
        raise ValueError("method must be 1-64 characters")
