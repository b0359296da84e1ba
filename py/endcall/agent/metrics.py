"""Prometheus metrics of the agent: end requests by channel and outcome, and how fast they
are acknowledged.

Registered in ``prometheus_client``'s default registry on import; a livekit-agents worker
started with ``prometheus_port`` (and its multiprocess directory, which it sets up) exposes
them for all its job processes. Counters and histograms only; labels from fixed sets (the
trigger's channel, an ack status or a protocol error code).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from endcall.protocol import ERROR_CODES

__all__ = ["ACK_SECONDS", "END_REQUESTS", "count_end"]

END_REQUESTS = Counter(
    "endcall_end_requests",
    "Ends submitted to a session's end machine, by channel (rpc, data, server, tool, api, timer,"
    " disconnect, room, job, session) and outcome (accepted, already_ending, already_ended, or"
    " the protocol error code a request was refused with).",
    ["channel", "outcome"],
)
ACK_SECONDS = Histogram(
    "endcall_end_ack_seconds",
    "Seconds from an end request arriving (rpc, data) to its answer being sent, the accepted"
    " end made durable first.",
    ["channel"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

#: protocol error codes (protocol.md); anything else is counted as "error"
_ERROR_CODES = frozenset(ERROR_CODES)


def count_end(channel: str, outcome: str) -> None:
    """Count one end; an outcome outside the known set becomes ``error`` (bounded labels)."""
    if outcome not in ("accepted", "already_ending", "already_ended") and (
        outcome not in _ERROR_CODES
    ):
        outcome = "error"
    END_REQUESTS.labels(channel, outcome).inc()
