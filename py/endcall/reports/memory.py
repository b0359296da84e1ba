"""Reports kept in memory because the outbox failed, and the writes the outbox still owes them.

A final report the outbox refused (a database restarting) is kept as a `MemoryReport` and
delivered from there; `OwedWrites` keeps trying, in the background, what the outbox owes it —
committing it (then it replaces the session's crash draft), or, once it was delivered from
memory, recording it as delivered (which replaces the draft too: no relay sends the draft
afterwards, and the reconciler finds the room's report) — every `RETRY_FIRST` seconds
doubling to `RETRY_MAX`, and for a while at close. A report neither stored nor delivered is
logged whole, once (`unsaved_report_line`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable

from endcall.reports.outbox.base import OutboxRecord

__all__ = ["MemoryReport", "OwedWrites", "log_unsaved", "unsaved_report_line"]

logger = logging.getLogger("endcall.report")

#: a logged report body is cut here (the rest is named by its size and SHA-256)
MAX_LOGGED_BODY = 1024 * 1024
#: a write the outbox owes is tried again after this long, doubling up to the max: a database
#: back after a restart holds the final report within seconds
RETRY_FIRST = 0.25
RETRY_MAX = 5.0


def unsaved_report_line(end_id: str, url: str, body: bytes, error: str) -> str:
    """The one-line JSON log record of a report the outbox could not keep. Bodies above
    `MAX_LOGGED_BODY` are cut there (``"truncated": true``, with the full size and SHA-256)."""
    doc: dict[str, object] = {"end_id": end_id, "url": url, "error": error}
    if len(body) > MAX_LOGGED_BODY:
        doc.update(truncated=True, size=len(body), sha256=hashlib.sha256(body).hexdigest())
        body = body[:MAX_LOGGED_BODY]
    try:
        doc["body"] = body.decode("utf-8")
    except UnicodeDecodeError:
        doc["body_b64"] = base64.b64encode(body).decode()
    return json.dumps({"endcall_unsaved_report": doc}, separators=(",", ":"))


class MemoryReport:
    """A report kept in memory because the outbox failed."""

    def __init__(self, end_id: str, url: str, body: bytes, now: float) -> None:
        self.end_id = end_id
        self.url = url
        self.body = body
        self.attempts = 0
        self.next_attempt_at = now
        self.status = "pending"
        self.created_at = now
        self.last_status: int | None = None
        self.last_error: str | None = None
        self.stored = False
        """True when the outbox holds it (it failed later): it is never logged whole."""
        self.settled = False
        """Delivered from memory, and written to the outbox as delivered since."""
        self.settle_failed = False
        self.logged = False

    def record(self, headers: dict[str, str]) -> OutboxRecord:
        return OutboxRecord(
            end_id=self.end_id,
            status="pending",
            is_draft=False,
            url=self.url,
            headers=headers,
            body=self.body,
            attempts=self.attempts,
            next_attempt_at=self.next_attempt_at,
            last_error=self.last_error,
            last_status=self.last_status,
            lease_owner=None,
            lease_expires_at=None,
            created_at=self.created_at,
            updated_at=self.created_at,
            delivered_at=None,
        )


def log_unsaved(rec: OutboxRecord | MemoryReport, why: str | None = None) -> None:
    """Log a report that is neither stored nor delivered, whole, once."""
    if not isinstance(rec, MemoryReport) or rec.stored or rec.logged or rec.status == "delivered":
        return
    rec.logged = True
    error = why or f"not stored and not delivered ({rec.last_error or rec.status})"
    logger.error(unsaved_report_line(rec.end_id, rec.url, rec.body, error))


def _owed(m: MemoryReport) -> bool:
    """A commit (pending, not in the outbox), or a delivered record (delivered from memory)."""
    return (m.status == "pending" and not m.stored) or (m.status == "delivered" and not m.settled)


class OwedWrites:
    """The reports kept in memory (``reports``, by end_id) and what the outbox owes them.

    ``store(report)`` commits one (True once done; it then leaves ``reports``);
    ``settle(report)`` writes one delivered from memory to the outbox as delivered, which
    replaces its crash draft (True once done).
    """

    def __init__(
        self,
        store: Callable[[MemoryReport], Awaitable[bool]],
        settle: Callable[[MemoryReport], Awaitable[bool]],
    ) -> None:
        self.reports: dict[str, MemoryReport] = {}
        self._store = store
        self._settle = settle
        self._task: asyncio.Task[None] | None = None

    def owed(self) -> list[MemoryReport]:
        return [
            m
            for m in self.reports.values()
            if (m.status == "pending" and not m.stored)
            or (m.status == "delivered" and not m.settled)
        ]

    async def try_once(self) -> None:
        for report in self.owed():
            if report.status == "pending":
                await self._store(report)
            elif await self._settle(report):
                report.settled = True

    def kick(self) -> None:
        """Keep trying in the background until nothing is owed."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._retry())

    async def _retry(self) -> None:
        delay = RETRY_FIRST
        while self.owed():
            await asyncio.sleep(delay)
            await self.try_once()
            delay = min(delay * 2, RETRY_MAX)

    async def close(self, within: float) -> None:
        """Stop the background retries, then keep trying for up to ``within`` seconds."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        deadline, delay = time.monotonic() + within, RETRY_FIRST
        while True:
            await self.try_once()
            if not self.owed() or time.monotonic() >= deadline:
                return
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, RETRY_MAX)
