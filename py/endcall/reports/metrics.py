"""Prometheus metrics of the reports wing: stored, attempted, delivered, dead, and the loops.

Registered in ``prometheus_client``'s default registry when this module is imported, so a
process that exposes Prometheus (`endcall serve`'s ``/metrics``, a livekit-agents worker with
``prometheus_port`` — its job processes report through its multiprocess directory) shows them.
Only counters and histograms: they add up across processes. Label values come from small fixed
sets (a report's kind, an HTTP status class, a loop's name); never an end id or a room.

The outbox's own gauges (rows by status, oldest pending age) are read from the database at
scrape time by `OutboxCollector`, which a server registers next to these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from endcall.protocol import MISSING_WEBHOOK_SUFFIX
from endcall.reports.outbox.base import Backlog

__all__ = [
    "ATTEMPTS",
    "DEAD",
    "DELIVERED",
    "DELIVERY_SECONDS",
    "LOOP_PASSES",
    "LOOP_PASS_SECONDS",
    "STORED",
    "OutboxCollector",
    "attempt_result",
    "report_kind",
]

#: seconds from a report being stored to its delivery: in-process sends take well under a
#: second, relays minutes, a receiver that was down hours
_DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600, 21600, 86400)
_PASS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

STORED = Counter(
    "endcall_reports_stored",
    "Reports committed to the outbox before any send, by kind (final, missing).",
    ["kind"],
)
ATTEMPTS = Counter(
    "endcall_delivery_attempts",
    "Signed POSTs of a report to its receiver, by result (2xx, 3xx, 4xx, 5xx, timeout,"
    " connect, error, unsigned).",
    ["result"],
)
DELIVERED = Counter(
    "endcall_reports_delivered",
    "Reports a receiver accepted (2xx), by kind (final, draft, missing).",
    ["kind"],
)
DEAD = Counter(
    "endcall_reports_dead",
    "Reports given up on (retries exhausted or 410 Gone), by kind: replay them with"
    " `endcall outbox replay --dead`.",
    ["kind"],
)
DELIVERY_SECONDS = Histogram(
    "endcall_report_delivery_seconds",
    "Seconds from a report being stored to its delivery, by kind.",
    ["kind"],
    buckets=_DELIVERY_BUCKETS,
)
LOOP_PASSES = Counter(
    "endcall_loop_passes",
    "Passes of the background loops (relay, reconcile), by result (ok, failed).",
    ["loop", "result"],
)
LOOP_PASS_SECONDS = Histogram(
    "endcall_loop_pass_seconds",
    "Duration of a pass of a background loop (relay, reconcile).",
    ["loop"],
    buckets=_PASS_BUCKETS,
)

for _kind in ("final", "draft", "missing"):  # every series exists from the start (no gaps)
    DELIVERED.labels(_kind)
    DEAD.labels(_kind)
for _result in ("ok", "failed"):
    for _loop in ("relay", "reconcile"):
        LOOP_PASSES.labels(_loop, _result)


def report_kind(webhook_id: str, is_draft: bool) -> str:
    """``final``, ``draft`` or ``missing`` (a room's `session.missing` event)."""
    if is_draft:
        return "draft"
    return "missing" if webhook_id.endswith(MISSING_WEBHOOK_SUFFIX) else "final"


def attempt_result(status: int | None, error: str | None) -> str:
    """The bounded label of one attempt: the status class, or how it failed without one."""
    if status is not None:
        return f"{min(max(status // 100, 1), 5)}xx"
    text = (error or "").lower()
    if text.startswith("timeout"):
        return "timeout"
    if text.startswith("connect"):
        return "connect"
    if text.startswith("no secret"):
        return "unsigned"
    return "error"


class OutboxCollector(Collector):
    """``endcall_outbox_reports{status}`` and ``endcall_outbox_oldest_pending_age_seconds``,
    read through ``backlog`` at every scrape. When it fails the gauges are left out of that
    scrape (an absent series, not a made-up zero)."""

    def __init__(self, backlog: Callable[[], Backlog | None]) -> None:
        self._backlog = backlog

    def collect(self) -> Iterator[GaugeMetricFamily]:
        backlog = self._backlog()
        if backlog is None:
            return
        rows = GaugeMetricFamily(
            "endcall_outbox_reports", "Rows of the outbox by status.", labels=["status"]
        )
        for status, n in sorted(backlog.counts.items()):
            rows.add_metric([status], n)
        yield rows
        yield GaugeMetricFamily(
            "endcall_outbox_oldest_pending_age_seconds",
            "Seconds since the oldest report not yet delivered was stored (0: none).",
            value=backlog.oldest_pending_age or 0.0,
        )
