"""Misuse of `EndCall`, detected and survived: each mistake is logged with what to do instead,
and a report is still produced where one can be.

- A second `EndCall` for one `JobContext` raises `RuntimeError` (two state machines would send
  two reports with different end_ids and reasons).
- `start()` never called (forgotten, or the entrypoint raised before it): the report is still
  built when the job ends (`agent-error`, with `end.error` naming the mistake) and an ERROR is
  logged.
- `EndCall.on_session_end` not passed to `rtc_session(on_session_end=...)`: detected when the
  job's shutdown callbacks run (the job runs them after `on_session_end`) and logged with the
  fix; delivery then only has the ~10 s before the process is killed.
"""

from __future__ import annotations

__all__ = ["NOT_STARTED", "NO_SESSION_END", "second_instance"]

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
