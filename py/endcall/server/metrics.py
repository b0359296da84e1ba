"""Prometheus metrics of the fallback server, and its ``/metrics`` page.

The server's own series (LiveKit webhooks by result, ``POST /v1/end`` answers by status,
``session.missing`` events by cause) live in ``prometheus_client``'s default registry next to
the reports wing's (`endcall.reports.metrics`: stores, attempts, deliveries, dead reports, the
relay's and reconciler's passes). `exposition` renders them with one app's outbox gauges,
which are read from its database at scrape time (several apps in one process each show their
own outbox without clashing in the default registry).
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest

from endcall.protocol import MISSING_CAUSES
from endcall.reports.metrics import OutboxCollector

__all__ = ["END_ANSWERS", "LIVEKIT_WEBHOOKS", "SESSION_MISSING", "exposition"]

LIVEKIT_WEBHOOKS = Counter(
    "endcall_livekit_webhooks",
    "LiveKit webhooks received, by result (recorded, duplicate, ignored, rejected: 4xx,"
    " failed: the ledger could not be written).",
    ["result"],
)
END_ANSWERS = Counter(
    "endcall_fallback_end_requests",
    "Answers of POST /v1/end, by HTTP status code.",
    ["code"],
)
SESSION_MISSING = Counter(
    "endcall_session_missing",
    "session.missing events stored for finished rooms without a report, by cause.",
    ["cause"],
)

for _result in ("recorded", "duplicate", "ignored", "rejected", "failed"):
    LIVEKIT_WEBHOOKS.labels(_result)
for _cause in MISSING_CAUSES:
    SESSION_MISSING.labels(_cause)


def webhook_result(status: int, body_status: str | None) -> str:
    """The bounded label of one LiveKit webhook's answer."""
    if status >= 500:
        return "failed"
    if status >= 400:
        return "rejected"
    return body_status if body_status in ("recorded", "duplicate", "ignored") else "recorded"


def exposition(outbox: OutboxCollector | None) -> bytes:
    """The text format of the default registry, plus ``outbox``'s gauges when given."""
    text = generate_latest(REGISTRY)
    if outbox is not None:
        own = CollectorRegistry(auto_describe=False)
        own.register(outbox)
        text += generate_latest(own)
    return text
