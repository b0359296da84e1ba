"""Parse and encode end.request, end.ack and end.error (protocol.md §2-§4)."""

from __future__ import annotations

from typing import cast

from endcall.protocol.constants import (
    _CODE_RE,
    ACK_STATUSES,
    CLIENT_REASON_PREFIX,
    DEFAULT_REASON,
    MAX_MESSAGE_TEXT_LENGTH,
    AckStatus,
    Origin,
)
from endcall.protocol.messages import (
    EndAck,
    EndError,
    EndRequest,
    ProtocolError,
)
from endcall.protocol.validation import (
    _bad,
    _encode_checked,
    _id,
    _identity,
    _integer,
    _load,
    _meta,
    _reason,
    _request_id_hint,
    _type,
    _version,
)

__all__ = [
    "encode_ack",
    "encode_error",
    "encode_request",
    "parse_ack",
    "parse_error",
    "parse_request",
]


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
