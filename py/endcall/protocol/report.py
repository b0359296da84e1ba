"""The `session.ended` report on the wire (protocol.md §6): parse, encode, webhook ids, which
report supersedes which, and the crash draft's ending."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, cast

from endcall.protocol.constants import (
    ANNOTATIONS_SOURCES,
    INITIATOR_KINDS,
    MAX_META_BYTES,
    MAX_REPORT_BYTES,
    AnnotationsSource,
    InitiatorKind,
)
from endcall.protocol.messages import (
    Initiator,
    ProtocolError,
    SessionEnded,
)
from endcall.protocol.validation import (
    _bad,
    _id,
    _identity,
    _load,
    _reason,
    _type,
    _version,
    canonical_json,
    is_valid_id,
    is_valid_reason,
    json_size,
)

__all__ = [
    "DRAFT_WEBHOOK_SUFFIX",
    "check_annotations",
    "check_annotations_source",
    "draft_webhook_id",
    "encode_report",
    "parse_report",
    "report_supersedes",
    "webhook_id",
    "wire_utf8",
    "with_ending",
]


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


def check_annotations_source(value: Any) -> AnnotationsSource:
    """A report's `annotations_source`: `"code"`, `"signed"` or `"unsigned"`; null or missing
    is `"unsigned"` (a report that does not say where its annotations came from is trusted
    no more than job metadata). Raises `ProtocolError`."""
    if value is None:
        return "unsigned"
    if value not in ANNOTATIONS_SOURCES:
        _bad("annotations_source must be one of " + ", ".join(ANNOTATIONS_SOURCES))
    return cast(AnnotationsSource, value)


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
    annotations_source = check_annotations_source(obj.get("annotations_source"))
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
        annotations_source=annotations_source,
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


def wire_utf8(text: str) -> bytes:
    """UTF-8 of `text` as the wire carries it: lone surrogates (which no UTF-8 can carry)
    become U+FFFD."""
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
        return wire_utf8(canonical_json(report.to_dict()))
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
