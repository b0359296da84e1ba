"""Version, limits, names and the closed sets of the wire protocol (protocol.md §1-§5)."""

from __future__ import annotations

import re
from typing import Literal

__all__ = [
    "ACK_STATUSES",
    "ANNOTATIONS_SOURCES",
    "ATTR_CUSTOMER",
    "ATTR_END_ID",
    "ATTR_ERROR",
    "ATTR_REASON",
    "ATTR_REPORT",
    "ATTR_REQUEST",
    "ATTR_REQUEST_ID",
    "ATTR_STATE",
    "CLIENT_REASON_PREFIX",
    "DEFAULT_METHOD",
    "DEFAULT_REASON",
    "INITIATOR_KINDS",
    "MAX_DEPTH",
    "MAX_IDENTITY_BYTES",
    "MAX_ID_LENGTH",
    "MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_TEXT_LENGTH",
    "MAX_META_BYTES",
    "MAX_SAFE_INTEGER",
    "SUPPORTED_VERSIONS",
    "VERSION",
    "AnnotationsSource",
    "Origin",
]

VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
MAX_MESSAGE_BYTES = 15_360
"""Largest serialized message: LiveKit's RPC payload limit (MAX_V1_PAYLOAD_BYTES)."""
MAX_META_BYTES = 4_096
MAX_DEPTH = 32
"""Deepest nesting of arrays/objects in a message; the message object itself is depth 1."""
MAX_ID_LENGTH = 64
MAX_IDENTITY_BYTES = 256
MAX_MESSAGE_TEXT_LENGTH = 1_024
MAX_REPORT_BYTES = 16 * 1024 * 1024
MAX_SAFE_INTEGER = 2**53 - 1

DEFAULT_METHOD = "end_interview"
"""RPC method name and data topic; the data ack topic is `ack_topic(DEFAULT_METHOD)`."""
DEFAULT_REASON = "customer-ended-call"
CLIENT_REASON_PREFIX = "customer-"

ATTR_STATE = "endcall.state"
ATTR_REASON = "endcall.reason"
ATTR_END_ID = "endcall.end_id"
ATTR_REQUEST_ID = "endcall.request_id"
ATTR_REPORT = "endcall.report"
ATTR_REQUEST = "endcall.request"
#: the end.error JSON of the last server-channel request the agent refused
ATTR_ERROR = "endcall.error"
#: the identity of the participant the agent serves (only they may end the call by default)
ATTR_CUSTOMER = "endcall.customer"

Origin = Literal["client", "server"]
AckStatus = Literal["accepted", "already_ending", "already_ended"]
ACK_STATUSES: tuple[str, ...] = ("accepted", "already_ending", "already_ended")
InitiatorKind = Literal["customer", "agent", "server", "system"]
INITIATOR_KINDS: tuple[str, ...] = ("customer", "agent", "server", "system")
#: where a report's `annotations` came from (§6): the agent's code, a dispatch claim the
#: backend signed, or job metadata nobody signed (the least trusted field decides)
AnnotationsSource = Literal["code", "signed", "unsigned"]
ANNOTATIONS_SOURCES: tuple[str, ...] = ("code", "signed", "unsigned")

_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_REASON_RE = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")
_CODE_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
