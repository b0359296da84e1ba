"""The endcall wire protocol, version 1: pure codecs for every message (no I/O).

`protocol.md` is the contract; this module and `web/src/protocol.ts` implement it and both pass
the shared vectors in `tests/vectors/`. Parsing never raises anything but `ProtocolError`.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Literal, NoReturn, cast

__all__ = [
    "ACK_STATUSES",
    "ATTR_END_ID",
    "ATTR_REASON",
    "ATTR_REPORT",
    "ATTR_REQUEST",
    "ATTR_REQUEST_ID",
    "ATTR_STATE",
    "CLIENT_REASON_PREFIX",
    "DEFAULT_METHOD",
    "DEFAULT_REASON",
    "DRAFT_WEBHOOK_SUFFIX",
    "ERROR_CODES",
    "ERROR_RPC_CODES",
    "INITIATOR_KINDS",
    "MAX_DEPTH",
    "MAX_IDENTITY_BYTES",
    "MAX_ID_LENGTH",
    "MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_TEXT_LENGTH",
    "MAX_META_BYTES",
    "MAX_SAFE_INTEGER",
    "MISSING_CAUSES",
    "MISSING_WEBHOOK_SUFFIX",
    "PING_TYPE",
    "SUPPORTED_VERSIONS",
    "VERSION",
    "EndAck",
    "EndError",
    "EndReason",
    "EndRequest",
    "ErrorCode",
    "Initiator",
    "MissingParticipant",
    "Origin",
    "ProtocolError",
    "SessionEnded",
    "SessionMissing",
    "ack_topic",
    "canonical_json",
    "check_annotations",
    "draft_webhook_id",
    "encode_ack",
    "encode_error",
    "encode_missing",
    "encode_report",
    "encode_request",
    "is_valid_id",
    "is_valid_reason",
    "json_size",
    "missing_webhook_id",
    "parse_ack",
    "parse_error",
    "parse_missing",
    "parse_report",
    "parse_request",
    "report_supersedes",
    "rpc_code",
    "webhook_id",
    "with_ending",
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

Origin = Literal["client", "server"]
AckStatus = Literal["accepted", "already_ending", "already_ended"]
ACK_STATUSES: tuple[str, ...] = ("accepted", "already_ending", "already_ended")
InitiatorKind = Literal["customer", "agent", "server", "system"]
INITIATOR_KINDS: tuple[str, ...] = ("customer", "agent", "server", "system")

_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_REASON_RE = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")
_CODE_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


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


# --------------------------------------------------------------------------- helpers


_MAX_FINITE = int(sys.float_info.max)


def _js_number(value: int | float) -> str:
    """A number as ECMAScript's Number::toString prints it (what JSON.stringify writes), so that
    both languages measure the same byte sizes. Integers outside +-2^53 are rounded to a double
    first, as JSON.parse does."""
    if isinstance(value, int) and abs(value) <= MAX_SAFE_INTEGER:
        return str(value)
    x = float(value)
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    mantissa, _, exp_text = repr(abs(x)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    # position of the decimal point relative to the first significant digit
    point = (
        len(int_part.lstrip("0"))
        if int_part.strip("0")
        else -(len(frac_part) - len(frac_part.lstrip("0")))
    )
    point += int(exp_text or 0)
    digits = digits.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    exponent = n - 1
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{head}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"


def json_size(value: Any) -> int:
    """UTF-8 bytes of `JSON.stringify(value)`: how every sub-object limit (`meta`) is measured."""
    if value is None:
        return 4
    if isinstance(value, bool):
        return 4 if value else 5
    if isinstance(value, (int, float)):
        return len(_js_number(value))
    if isinstance(value, str):
        return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if isinstance(value, list):
        return 2 + max(0, len(value) - 1) + sum(json_size(v) for v in value)
    if isinstance(value, dict):
        return (
            2
            + max(0, len(value) - 1)
            + sum(json_size(str(k)) + 1 + json_size(v) for k, v in value.items())
        )
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """Compact JSON (no spaces, raw UTF-8): the form every size limit is measured in."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def ack_topic(method: str = DEFAULT_METHOD) -> str:
    return f"{method}.ack"


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def is_valid_reason(value: object) -> bool:
    return isinstance(value, str) and _REASON_RE.fullmatch(value) is not None


def rpc_code(code: str) -> int:
    """The RpcError code for a protocol error code (unknown codes map to `internal`)."""
    return ERROR_RPC_CODES.get(code, ERROR_RPC_CODES["internal"])


def _bad(message: str, request_id: str | None = None) -> NoReturn:
    raise ProtocolError("bad_request", message, request_id=request_id)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_SUSPECT_RE = re.compile(r"\\u[dD][89a-fA-F]|[eE][+-]?[0-9]{3}|[0-9]{300}")


def _may_need_tree_check(text: str) -> bool:
    """Cheap pre-scan: the tree walk only matters when the text could hold a lone surrogate
    escape, a number too large for a double, or more brackets than the depth limit."""
    return _SUSPECT_RE.search(text) is not None or text.count("[") + text.count("{") > MAX_DEPTH


def _check_tree(value: Any) -> None:
    """Reject what JSON.parse and json.loads disagree on: deep nesting, lone surrogate escapes
    (not encodable as UTF-8) and numbers too large to be finite."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                _bad(f"message nests deeper than {MAX_DEPTH} levels")
            children = list(item.values()) if isinstance(item, dict) else item
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                _bad("message contains a lone surrogate escape")
        elif isinstance(item, float) and not math.isfinite(item):
            _bad("message contains a number that is not finite")
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > _MAX_FINITE:
            _bad("message contains a number that is not finite")


def _load(
    raw: str | bytes | bytearray | memoryview, limit: int = MAX_MESSAGE_BYTES
) -> dict[str, Any]:
    if isinstance(raw, str):
        if len(raw) > limit:  # every character is at least one UTF-8 byte
            _bad(f"message is over {limit} bytes; the limit is {limit}")
        try:
            size = len(raw.encode("utf-8"))
        except UnicodeEncodeError:
            _bad("message is not valid UTF-8 (lone surrogate)")
        if size > limit:
            _bad(f"message is {size} bytes; the limit is {limit}")
        text = raw
    elif isinstance(raw, (bytes, bytearray, memoryview)):
        data = bytes(raw)
        if len(data) > limit:
            _bad(f"message is {len(data)} bytes; the limit is {limit}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            _bad("message is not valid UTF-8")
    else:
        _bad(f"message must be str or bytes, not {type(raw).__name__}")
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        _bad(f"message nests deeper than {MAX_DEPTH} levels")
    except (ValueError, TypeError) as exc:
        _bad(f"message is not valid JSON: {exc}")
    if not isinstance(value, dict):
        _bad("message must be a JSON object")
    if _may_need_tree_check(text):
        _check_tree(value)
    return value


def _integer(value: Any, name: str, rid: str | None, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _bad(f"{name} must be an integer", rid)
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            _bad(f"{name} must be an integer", rid)
        value = int(value)
    if value < minimum or value > MAX_SAFE_INTEGER:
        _bad(f"{name} must be between {minimum} and {MAX_SAFE_INTEGER}", rid)
    return int(value)


def _version(obj: Mapping[str, Any], rid: str | None) -> int:
    if "v" not in obj:
        _bad("v is required", rid)
    v = _integer(obj["v"], "v", rid, minimum=1)
    if v not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(s) for s in SUPPORTED_VERSIONS)
        raise ProtocolError(
            "unsupported_version",
            f"version {v} is not supported; supported versions: {supported}",
            request_id=rid,
        )
    return v


def _type(obj: Mapping[str, Any], expected: str, rid: str | None) -> None:
    if obj.get("type") != expected:
        _bad(f'type must be "{expected}"', rid)


def _id(value: Any, name: str, rid: str | None) -> str:
    if not is_valid_id(value):
        _bad(f"{name} must be 1-{MAX_ID_LENGTH} characters of [A-Za-z0-9_-]", rid)
    return cast(str, value)


def _reason(value: Any, rid: str | None, name: str = "reason") -> str:
    if not is_valid_reason(value):
        _bad(f"{name} must match ^[a-z0-9][a-z0-9.-]{{0,63}}$", rid)
    return cast(str, value)


def _identity(value: Any, name: str, rid: str | None) -> str:
    if not isinstance(value, str) or not value:
        _bad(f"{name} must be a non-empty string", rid)
    if len(value.encode("utf-8")) > MAX_IDENTITY_BYTES:
        _bad(f"{name} must be at most {MAX_IDENTITY_BYTES} bytes", rid)
    if _CONTROL_RE.search(value):
        _bad(f"{name} must not contain control characters", rid)
    return value


def _meta(value: Any, rid: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        _bad("meta must be a JSON object", rid)
    size = json_size(value)
    if size > MAX_META_BYTES:
        _bad(f"meta is {size} bytes serialized; the limit is {MAX_META_BYTES}", rid)
    return value


def _request_id_hint(obj: Mapping[str, Any]) -> str | None:
    rid = obj.get("id")
    return rid if is_valid_id(rid) else None


# --------------------------------------------------------------------------- end.request


def parse_request(raw: str | bytes, *, origin: Origin) -> EndRequest:
    """Decode an end.request. `origin="client"` only admits reasons starting with `customer-`."""
    if origin not in ("client", "server"):
        raise ValueError(f"origin must be 'client' or 'server', not {origin!r}")
    obj = _load(raw)
    rid = _request_id_hint(obj)
    v = _version(obj, rid)
    _type(obj, "end.request", rid)
    request_id = rid if rid is not None else _id(obj.get("id"), "id", rid)
    reason_value = obj.get("reason")
    reason = DEFAULT_REASON if reason_value is None else _reason(reason_value, rid)
    if origin == "client" and not reason.startswith(CLIENT_REASON_PREFIX):
        _bad(f'a client may only send reasons starting with "{CLIENT_REASON_PREFIX}"', rid)
    initiator_value = obj.get("initiator")
    initiator = None if initiator_value is None else _identity(initiator_value, "initiator", rid)
    sent_at_value = obj.get("sent_at")
    sent_at = None if sent_at_value is None else _integer(sent_at_value, "sent_at", rid)
    meta = _meta(obj.get("meta"), rid)
    return EndRequest(
        id=request_id, reason=reason, initiator=initiator, sent_at=sent_at, meta=meta, v=v
    )


def encode_request(request: EndRequest) -> str:
    """Serialize an end.request; optional fields that are unset are left out."""
    body = {k: v for k, v in request.to_dict().items() if v is not None}
    return _encode_checked(body)


# --------------------------------------------------------------------------- end.ack


def parse_ack(raw: str | bytes) -> EndAck:
    obj = _load(raw)
    rid = _request_id_hint(obj)
    v = _version(obj, rid)
    _type(obj, "end.ack", rid)
    request_id = rid if rid is not None else _id(obj.get("id"), "id", rid)
    status = obj.get("status")
    if status not in ACK_STATUSES:
        _bad("status must be one of " + ", ".join(ACK_STATUSES), rid)
    end_id = _id(obj.get("end_id"), "end_id", rid)
    reason = _reason(obj.get("reason"), rid)
    if "drain_ms" not in obj:
        _bad("drain_ms is required", rid)
    drain_ms = _integer(obj["drain_ms"], "drain_ms", rid)
    return EndAck(
        id=request_id,
        status=cast(AckStatus, status),
        end_id=end_id,
        reason=reason,
        drain_ms=drain_ms,
        v=v,
    )


def encode_ack(ack: EndAck) -> str:
    return _encode_checked(ack.to_dict())


# --------------------------------------------------------------------------- end.error


def parse_error(raw: str | bytes) -> EndError:
    obj = _load(raw)
    v = _version(obj, None)
    _type(obj, "end.error", None)
    id_value = obj.get("id")
    request_id = None if id_value is None else _id(id_value, "id", None)
    code = obj.get("code")
    if not isinstance(code, str) or _CODE_RE.fullmatch(code) is None:
        _bad("code must match ^[a-z][a-z0-9_]{0,31}$")
    message = obj.get("message")
    if not isinstance(message, str):
        _bad("message must be a string")
    if len(message) > MAX_MESSAGE_TEXT_LENGTH:
        _bad(f"message must be at most {MAX_MESSAGE_TEXT_LENGTH} characters")
    return EndError(id=request_id, code=code, message=message, v=v)


def encode_error(error: EndError | ProtocolError) -> str:
    if isinstance(error, ProtocolError):
        error = error.to_error()
    return _encode_checked(error.to_dict())


# --------------------------------------------------------------------------- session.ended


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _bad(f"{name} must be a finite number")
    if value < 0:
        _bad(f"{name} must not be negative")
    return float(value)


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _bad(f"{name} must be a JSON object")
    return value


def check_annotations(value: Any) -> dict[str, Any]:
    """A report's `annotations` (the job's own fields): a JSON object of at most
    `MAX_META_BYTES` serialized; null or missing is `{}`. Raises `ProtocolError`."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        _bad("annotations must be a JSON object")
    size = json_size(value)
    if size > MAX_META_BYTES:
        _bad(f"annotations is {size} bytes serialized; the limit is {MAX_META_BYTES}")
    return value


def parse_report(raw: str | bytes) -> SessionEnded:
    """Decode a `session.ended` report (what a receiver gets). Limit: 16 MiB."""
    obj = _load(raw, MAX_REPORT_BYTES)
    v = _version(obj, None)
    _type(obj, "session.ended", None)
    end_id = _id(obj.get("end_id"), "end_id", None)
    ended_reason = _reason(obj.get("ended_reason"), None, "ended_reason")
    initiator_obj = _object(obj.get("initiator"), "initiator")
    kind = initiator_obj.get("kind")
    if kind not in INITIATOR_KINDS:
        _bad("initiator.kind must be one of " + ", ".join(INITIATOR_KINDS))
    identity_value = initiator_obj.get("identity")
    identity = (
        None if identity_value is None else _identity(identity_value, "initiator.identity", None)
    )
    request_value = obj.get("request_id")
    request_id = None if request_value is None else _id(request_value, "request_id", None)
    meta_value = obj.get("meta")
    meta = None if meta_value is None else _object(meta_value, "meta")
    annotations = check_annotations(obj.get("annotations"))
    room = _object(obj.get("room"), "room")
    room_name = room.get("name")
    if not isinstance(room_name, str) or not room_name:
        _bad("room.name must be a non-empty string")
    room_sid = room.get("sid")
    if room_sid is not None and not isinstance(room_sid, str):
        _bad("room.sid must be a string or null")
    optional: dict[str, str | None] = {}
    for key in ("job_id", "agent_name"):
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            _bad(f"{key} must be a string or null")
        optional[key] = value
    started_at = _number(obj.get("started_at"), "started_at")
    ended_at = _number(obj.get("ended_at"), "ended_at")
    if ended_at < started_at:
        _bad("ended_at must not be before started_at")
    complete = obj.get("complete")
    if not isinstance(complete, bool):
        _bad("complete must be a boolean")
    session = _object(obj.get("session", {}), "session")
    usage = _object(obj.get("usage", {}), "usage")
    end = _object(obj.get("end", {}), "end")
    return SessionEnded(
        end_id=end_id,
        ended_reason=ended_reason,
        initiator=Initiator(kind=cast(InitiatorKind, kind), identity=identity),
        request_id=request_id,
        meta=meta,
        annotations=annotations,
        room_name=room_name,
        room_sid=room_sid,
        job_id=optional["job_id"],
        agent_name=optional["agent_name"],
        started_at=started_at,
        ended_at=ended_at,
        complete=complete,
        session=session,
        usage=usage,
        end=end,
        v=v,
    )


def _utf8(text: str) -> bytes:
    """UTF-8 of `text`; lone surrogates (which no UTF-8 can carry) become U+FFFD."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        fixed = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return fixed.encode("utf-8", "replace")


def encode_report(report: SessionEnded) -> bytes:
    """Serialize a report once; the bytes are what is stored, signed and sent on every attempt.

    Text that UTF-8 cannot carry (a lone surrogate in the chat history or `meta`) is replaced
    with U+FFFD, never fatal."""
    try:
        return _utf8(canonical_json(report.to_dict()))
    except (ValueError, TypeError) as exc:
        raise ProtocolError("internal", f"report is not serializable: {exc}") from exc


#: appended to a crash draft's `end_id` to make its `webhook-id` (§6)
DRAFT_WEBHOOK_SUFFIX = ".draft"


def draft_webhook_id(end_id: str) -> str:
    """The `webhook-id` of a session's crash draft: `<end_id>.draft` (§6)."""
    return end_id + DRAFT_WEBHOOK_SUFFIX


def webhook_id(report: SessionEnded) -> str:
    """The `webhook-id` a report is sent with: `end_id` for the final report
    (`complete: true`), `<end_id>.draft` for a crash draft."""
    return report.end_id if report.complete else draft_webhook_id(report.end_id)


def report_supersedes(incoming: SessionEnded, stored: SessionEnded) -> bool:
    """True when a receiver holding `stored` must replace it with `incoming` (§6): only a
    final report (`complete: true`) replaces a crash draft of the same session; a draft never
    replaces a final report, and a repeat changes nothing. Reports of different sessions
    (`end_id`) are no pair: `ProtocolError("bad_request")`."""
    if incoming.end_id != stored.end_id:
        raise ProtocolError("bad_request", "the reports belong to different sessions (end_id)")
    return incoming.complete and not stored.complete


def with_ending(draft: bytes, ending: Mapping[str, Any]) -> bytes:
    """A crash draft with the accepted end's `ended_reason`, `initiator`, `request_id` and
    `meta` (and `end.channel`, `end.requested_at` when given) written in; still
    `complete: false`. A pure function of its inputs, so every attempt sends the same bytes.
    `ending` values that would make an invalid report are ignored."""
    doc = parse_report(draft)
    changes: dict[str, Any] = {}
    reason = ending.get("ended_reason")
    if isinstance(reason, str) and is_valid_reason(reason):
        changes["ended_reason"] = reason
    who = ending.get("initiator")
    if isinstance(who, Mapping) and who.get("kind") in INITIATOR_KINDS:
        identity = who.get("identity")
        if identity is None or (isinstance(identity, str) and identity):
            changes["initiator"] = Initiator(
                kind=cast(InitiatorKind, who["kind"]), identity=identity
            )
    rid = ending.get("request_id")
    if rid is None or is_valid_id(rid):
        changes["request_id"] = rid
    meta = ending.get("meta")
    if meta is None or isinstance(meta, dict):
        changes["meta"] = meta
    end = dict(doc.end)
    for key in ("channel", "requested_at"):
        if ending.get(key) is not None:
            end[key] = ending[key]
    return encode_report(replace(doc, **changes, end=end, complete=False))


def _encode_checked(body: dict[str, Any]) -> str:
    try:
        text = canonical_json(body)
    except (ValueError, TypeError) as exc:
        raise ProtocolError("internal", f"message is not serializable: {exc}") from exc
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            "bad_request", f"message is {size} bytes; the limit is {MAX_MESSAGE_BYTES}"
        )
    return text


# --------------------------------------------------------------------------- session.missing

#: the known causes of a `session.missing` event (§7); others matching REASON may come later
MISSING_CAUSES = ("agent-never-joined", "no-report-from-agent")
#: appended to the room sid to make a `session.missing` event's `webhook-id` (§7)
MISSING_WEBHOOK_SUFFIX = ".missing"
#: the `type` of the signed test event `endcall doctor` sends (§8); never a report
PING_TYPE = "endcall.ping"
_KIND_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")


@dataclass(frozen=True)
class MissingParticipant:
    """One participant of a room without a report: who, which kind, when in and out."""

    identity: str
    kind: str
    sid: str | None = None
    joined_at: float | None = None
    left_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "sid": self.sid,
            "kind": self.kind,
            "joined_at": self.joined_at,
            "left_at": self.left_at,
        }


@dataclass(frozen=True)
class SessionMissing:
    """The `session.missing` event: a room finished and no report of it arrived (§7)."""

    room_name: str
    room_sid: str
    cause: str
    agent_joined: bool
    finished_at: float
    detected_at: float
    started_at: float | None = None
    participants: tuple[MissingParticipant, ...] = ()
    v: int = VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "session.missing",
            "v": self.v,
            "room": {"name": self.room_name, "sid": self.room_sid},
            "cause": self.cause,
            "agent_joined": self.agent_joined,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "detected_at": self.detected_at,
            "participants": [p.to_dict() for p in self.participants],
        }


def missing_webhook_id(room_sid: str) -> str:
    """The `webhook-id` of a room's `session.missing` event: `<room_sid>.missing` (one per room,
    the same on every attempt and after restarts)."""
    return room_sid + MISSING_WEBHOOK_SUFFIX


def _optional_number(value: Any, name: str) -> float | None:
    return None if value is None else _number(value, name)


def _participant(value: Any, i: int) -> MissingParticipant:
    name = f"participants[{i}]"
    obj = _object(value, name)
    identity = _identity(obj.get("identity"), f"{name}.identity", None)
    kind = obj.get("kind")
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
        _bad(f"{name}.kind must match ^[a-z][a-z0-9_]{{0,31}}$")
    sid = obj.get("sid")
    if sid is not None and not isinstance(sid, str):
        _bad(f"{name}.sid must be a string or null")
    joined = _optional_number(obj.get("joined_at"), f"{name}.joined_at")
    left = _optional_number(obj.get("left_at"), f"{name}.left_at")
    if joined is not None and left is not None and left < joined:
        _bad(f"{name}.left_at must not be before joined_at")
    return MissingParticipant(identity=identity, kind=kind, sid=sid, joined_at=joined, left_at=left)


def parse_missing(raw: str | bytes) -> SessionMissing:
    """Decode a `session.missing` event (§7). Limit: 16 MiB, like a report."""
    obj = _load(raw, MAX_REPORT_BYTES)
    v = _version(obj, None)
    _type(obj, "session.missing", None)
    room = _object(obj.get("room"), "room")
    room_name, room_sid = room.get("name"), room.get("sid")
    if not isinstance(room_name, str) or not room_name:
        _bad("room.name must be a non-empty string")
    if not isinstance(room_sid, str) or not room_sid:
        _bad("room.sid must be a non-empty string")
    cause = _reason(obj.get("cause"), None, "cause")
    agent_joined = obj.get("agent_joined")
    if not isinstance(agent_joined, bool):
        _bad("agent_joined must be a boolean")
    if cause == "agent-never-joined" and agent_joined:
        _bad("cause agent-never-joined contradicts agent_joined: true")
    if cause == "no-report-from-agent" and not agent_joined:
        _bad("cause no-report-from-agent needs agent_joined: true")
    started = _optional_number(obj.get("started_at"), "started_at")
    finished = _number(obj.get("finished_at"), "finished_at")
    if started is not None and finished < started:
        _bad("finished_at must not be before started_at")
    detected = _number(obj.get("detected_at"), "detected_at")
    people = obj.get("participants")
    if people is None:
        people = []
    if not isinstance(people, list):
        _bad("participants must be a JSON array")
    return SessionMissing(
        room_name=room_name,
        room_sid=room_sid,
        cause=cause,
        agent_joined=agent_joined,
        finished_at=finished,
        detected_at=detected,
        started_at=started,
        participants=tuple(_participant(p, i) for i, p in enumerate(people)),
        v=v,
    )


def encode_missing(event: SessionMissing) -> bytes:
    """Serialize a `session.missing` event once (stored, signed and sent on every attempt)."""
    try:
        return _utf8(canonical_json(event.to_dict()))
    except (ValueError, TypeError) as exc:
        raise ProtocolError("internal", f"event is not serializable: {exc}") from exc
