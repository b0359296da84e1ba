"""The protocol's messages as values: end.request, end.ack, end.error, the initiator,
session.ended, and `ProtocolError`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from endcall.protocol.constants import (
    DEFAULT_REASON,
    VERSION,
    AckStatus,
    AnnotationsSource,
    InitiatorKind,
)

__all__ = [
    "ERROR_CODES",
    "ERROR_RPC_CODES",
    "EndAck",
    "EndError",
    "EndReason",
    "EndRequest",
    "ErrorCode",
    "Initiator",
    "ProtocolError",
    "SessionEnded",
]


class EndReason(str, Enum):
    """Canonical end reasons (Vapi-compatible strings where Vapi has one)."""

    CUSTOMER_ENDED_CALL = "customer-ended-call"
    CUSTOMER_DISCONNECTED = "customer-disconnected"
    ASSISTANT_ENDED_CALL = "assistant-ended-call"
    EXCEEDED_MAX_DURATION = "exceeded-max-duration"
    SILENCE_TIMED_OUT = "silence-timed-out"
    SERVER_ENDED_CALL = "server-ended-call"
    ROOM_DELETED = "room-deleted"
    WORKER_SHUTDOWN = "worker-shutdown"
    AGENT_ERROR = "agent-error"
    AGENT_CRASHED = "agent-crashed"

    def __str__(self) -> str:
        return self.value


class ErrorCode(str, Enum):
    BAD_REQUEST = "bad_request"
    FORBIDDEN = "forbidden"
    UNSUPPORTED_VERSION = "unsupported_version"
    INTERNAL = "internal"

    def __str__(self) -> str:
        return self.value


ERROR_CODES: tuple[str, ...] = tuple(c.value for c in ErrorCode)
ERROR_RPC_CODES: Mapping[str, int] = {
    "bad_request": 4400,
    "forbidden": 4403,
    "unsupported_version": 4426,
    "internal": 4500,
}
"""RpcError code used when an end.error travels over LiveKit RPC (LiveKit reserves 1001-1999)."""


class ProtocolError(Exception):
    """A message that does not follow the protocol. `code` is one of `ERROR_CODES`.

    `request_id` is the offending request's id when it could be read, so the answer can name it.
    """

    def __init__(self, code: str, message: str, *, request_id: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id

    def to_error(self) -> EndError:
        return EndError(id=self.request_id, code=self.code, message=self.message[:1024])


@dataclass(frozen=True)
class EndRequest:
    id: str
    reason: str = DEFAULT_REASON
    initiator: str | None = None
    sent_at: int | None = None
    meta: dict[str, Any] | None = None
    v: int = VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "end.request",
            "v": self.v,
            "id": self.id,
            "reason": self.reason,
            "initiator": self.initiator,
            "sent_at": self.sent_at,
            "meta": self.meta,
        }


@dataclass(frozen=True)
class EndAck:
    id: str
    status: AckStatus
    end_id: str
    reason: str
    drain_ms: int
    v: int = VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "end.ack",
            "v": self.v,
            "id": self.id,
            "status": self.status,
            "end_id": self.end_id,
            "reason": self.reason,
            "drain_ms": self.drain_ms,
        }


@dataclass(frozen=True)
class EndError:
    id: str | None
    code: str
    message: str
    v: int = VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "end.error",
            "v": self.v,
            "id": self.id,
            "code": self.code,
            "message": self.message,
        }


@dataclass(frozen=True)
class Initiator:
    kind: InitiatorKind
    identity: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "identity": self.identity}


@dataclass(frozen=True)
class SessionEnded:
    """The `session.ended` report document (the webhook body)."""

    end_id: str
    ended_reason: str
    initiator: Initiator
    room_name: str
    started_at: float
    ended_at: float
    complete: bool = True
    request_id: str | None = None
    meta: dict[str, Any] | None = None
    annotations: dict[str, Any] = field(default_factory=dict)
    #: where `annotations` came from (§6); a receiver files by them only when not "unsigned"
    annotations_source: AnnotationsSource = "code"
    room_sid: str | None = None
    job_id: str | None = None
    agent_name: str | None = None
    session: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    end: dict[str, Any] = field(default_factory=dict)
    v: int = VERSION

    @property
    def duration_s(self) -> float:
        return round(max(0.0, self.ended_at - self.started_at), 3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "session.ended",
            "v": self.v,
            "end_id": self.end_id,
            "ended_reason": self.ended_reason,
            "initiator": self.initiator.to_dict(),
            "request_id": self.request_id,
            "meta": self.meta,
            "annotations": self.annotations,
            "annotations_source": self.annotations_source,
            "room": {"name": self.room_name, "sid": self.room_sid},
            "job_id": self.job_id,
            "agent_name": self.agent_name,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": self.duration_s,
            "complete": self.complete,
            "usage": self.usage,
            "end": self.end,
            "session": self.session,
        }
