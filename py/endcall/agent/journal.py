"""The INFO lines that tell one session's end, each with its `end_id` and room name:

    endcall: e_… room=interview-1: ending (customer-ended-call) by customer over rpc, request r1
    endcall: e_… room=interview-1: report stored in the outbox at /var/lib/…/outbox.sqlite3
    endcall: e_… room=interview-1: report delivered (attempt 1, HTTP 200)
    endcall: e_… room=interview-1: report left pending in the outbox at … (next attempt at …)

`where(outbox)` names an outbox for them (an SQLite path, or a DSN with its password masked).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from endcall.reports.redact import redact

__all__ = ["Journal", "where"]

logger = logging.getLogger("endcall")


def where(outbox: Any) -> str:
    """Where an outbox lives, for a log line."""
    path = getattr(outbox, "path", None)
    if path is not None:
        return str(path)
    dsn = getattr(outbox, "dsn", None)
    if isinstance(dsn, str):
        return redact(dsn)
    return "(no outbox)" if outbox is None else type(outbox).__name__


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class Journal:
    """The log lines of one EndCall; `room` is read when a line is written."""

    def __init__(self, end_id: str, room: Any) -> None:
        self._end_id = end_id
        self._room = room

    def _line(self, level: int, text: str, *args: Any) -> None:
        logger.log(level, "endcall: %s room=%s: " + text, self._end_id, self._room(), *args)

    def ending(self, reason: str | None, kind: str, channel: str, request_id: str | None) -> None:
        self._line(
            logging.INFO, "ending (%s) by %s over %s, request %s", reason, kind, channel, request_id
        )

    def stored(self, outbox: Any) -> None:
        self._line(logging.INFO, "report stored in the outbox at %s", where(outbox))

    def not_stored(self) -> None:
        self._line(logging.WARNING, "report NOT stored (see the error above); delivering it")

    def delivered(self, attempts: int, status: int | None) -> None:
        self._line(logging.INFO, "report delivered (attempt %d, HTTP %s)", attempts, status)

    def dead(self, attempts: int, status: int | None, error: str | None) -> None:
        self._line(
            logging.WARNING,
            "report refused for good after %d attempt(s) (HTTP %s, %s): it is dead; "
            "`endcall outbox replay %s` sends it again",
            attempts,
            status,
            error,
            self._end_id,
        )

    def left_pending(self, outbox: Any, next_attempt_at: float | None, error: str | None) -> None:
        self._line(
            logging.INFO,
            "report left pending in the outbox at %s (next attempt at %s; last error: %s)",
            where(outbox),
            _utc(next_attempt_at) if next_attempt_at is not None else "unknown",
            error,
        )
