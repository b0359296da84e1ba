"""An accepted end is durable before it is acknowledged.

When a trigger is accepted, its reason, initiator, request id and meta are written to the
session's draft row in the outbox (`ReportPipeline.mark_ending`) at once, and every ack of that
end — the RPC answer, the data packet, the `endcall.state`/`endcall.request_id` attributes the
fallback server reads — waits for that write, at most `ACK_DURABLE_TIMEOUT` (the browser waits
2.5 s for an ack, the fallback server 3 s). A crash from then on delivers the accepted reason
in the `complete: false` draft instead of `agent-crashed`. A sink without `mark_ending` (a
custom `ReportSink`) skips the write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from endcall.agent.end_machine import EndRecord

__all__ = ["ACK_DURABLE_TIMEOUT", "DurableEnd", "ending_fields"]

logger = logging.getLogger("endcall")

#: the longest an ack waits for the accepted end to be in the outbox
ACK_DURABLE_TIMEOUT = 1.0


def ending_fields(record: EndRecord) -> dict[str, Any]:
    """The accepted end as the outbox row's ``ending`` (what `protocol.with_ending` reads)."""
    who = record.initiator
    return {
        "ended_reason": record.reason,
        "initiator": None if who is None else who.to_dict(),
        "request_id": record.request_id,
        "meta": record.meta,
        "channel": record.channel,
        "requested_at": None if record.requested_at is None else round(record.requested_at, 3),
    }


class DurableEnd:
    """The one write that makes an accepted end durable, and the wait acks do for it."""

    def __init__(self, timeout: float = ACK_DURABLE_TIMEOUT) -> None:
        self.timeout = timeout
        self.task: asyncio.Task[bool] | None = None

    def begin(self, sink: Any, record: EndRecord, minimal_draft: Callable[[], bytes]) -> None:
        """Start writing ``record`` to ``sink``'s draft row (once; later calls do nothing).
        ``minimal_draft()`` gives the body for a row that does not exist yet."""
        mark = getattr(sink, "mark_ending", None)
        if self.task is not None or mark is None:
            return
        fields = ending_fields(record)

        async def write() -> bool:
            started = time.monotonic()
            try:
                ok = bool(await mark(record.end_id, fields, minimal_draft()))
            except Exception as e:
                logger.error("endcall: could not record the accepted end: %s", e)
                return False
            if not ok:
                logger.warning(
                    "endcall: the accepted end of %s is not in the outbox", record.end_id
                )
            elif time.monotonic() - started > self.timeout:
                logger.warning("endcall: recording the accepted end took longer than the ack waits")
            return ok

        self.task = asyncio.get_running_loop().create_task(write(), name="endcall_ending")

    async def wait(self) -> bool:
        """Wait (at most `timeout`) for the write; True when it is durable. Never raises."""
        task = self.task
        if task is None:
            return False
        if not task.done():
            await asyncio.wait({task}, timeout=self.timeout)
        return task.done() and not task.cancelled() and task.exception() is None and task.result()
