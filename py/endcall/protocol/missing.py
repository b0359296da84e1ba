"""The `session.missing` event (protocol.md §7): a room that finished without a report."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from endcall.protocol.constants import (
    MAX_REPORT_BYTES,
    VERSION,
)
from endcall.protocol.messages import (
    ProtocolError,
)
from endcall.protocol.report import (
    _number,
    _object,
    wire_utf8,
)
from endcall.protocol.validation import (
    _bad,
    _identity,
    _load,
    _reason,
    _type,
    _version,
    canonical_json,
)

__all__ = [
    "MISSING_CAUSES",
    "MISSING_WEBHOOK_SUFFIX",
    "PING_TYPE",
    "MissingParticipant",
    "SessionMissing",
    "encode_missing",
    "missing_webhook_id",
    "parse_missing",
]

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
        return wire_utf8(canonical_json(event.to_dict()))
    except (ValueError, TypeError) as exc:
        raise ProtocolError("internal", f"event is not serializable: {exc}") from exc
