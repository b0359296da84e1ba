"""A test double of LiveKit's RoomService API, speaking Twirp as ``livekit-api`` sends it.

:class:`RoomServiceDouble` is a plain ASGI app (no framework: it sits on the hot path of the
fallback server's load benchmark): serve it on 127.0.0.1 with uvicorn and point a real
``livekit.api.LiveKitAPI`` at it, so the code under test runs the real client end to end. It
answers ``POST /twirp/livekit.RoomService/<Method>`` for ``ListParticipants``,
``GetParticipant``, ``UpdateParticipant``, ``RemoveParticipant``, ``SendData``, ``DeleteRoom``
and ``ListRooms``
(anything else: Twirp ``bad_route``):

- bodies are ``livekit.protocol`` messages, ``application/protobuf`` (or Twirp's
  ``application/json``), answered in the same encoding;
- ``Authorization: Bearer <JWT>`` is verified like LiveKit does (HS256 with the API secret,
  ``iss`` = API key, ``exp``), and the grants are checked: ``roomAdmin`` for the request's room,
  ``roomCreate`` for DeleteRoom, ``roomList`` for ListRooms;
- a SendData to a room that does not exist answers ``unavailable`` (503), as livekit-server
  1.13 does (it answers after about 3 s; the double at once);
- errors are Twirp JSON bodies ``{"code": "not_found", "msg": "..."}`` with Twirp's HTTP
  status for the code (``not_found`` 404, ``unauthenticated`` 401, ``permission_denied`` 403,
  ``malformed`` 400, ``bad_route`` 404, ``unavailable`` 503, ...).

The rooms live in a hub (:class:`RoomHub`, implemented by
:class:`endcall.testing.LoopbackServer`), so agents connected to the loopback see the
attribute writes and data packets. Every call is recorded in :attr:`RoomServiceDouble.calls`
(rejected ones too) and faults can be injected with :meth:`RoomServiceDouble.fail`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from livekit import rtc
from livekit.protocol import models
from livekit.protocol import room as proto_room
from starlette.types import Receive, Scope, Send

__all__ = [
    "MUTATING_METHODS",
    "TWIRP_STATUS",
    "RoomHub",
    "RoomServiceDouble",
    "TwirpCall",
]

TWIRP_STATUS: Mapping[str, int] = {
    "canceled": 408,
    "unknown": 500,
    "invalid_argument": 400,
    "malformed": 400,
    "deadline_exceeded": 408,
    "not_found": 404,
    "bad_route": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "unauthenticated": 401,
    "resource_exhausted": 429,
    "failed_precondition": 412,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "dataloss": 500,
}
"""Twirp error code → HTTP status (the Twirp spec's table)."""

MUTATING_METHODS = frozenset({"UpdateParticipant", "RemoveParticipant", "SendData", "DeleteRoom"})
PREFIX = "/twirp/livekit.RoomService/"


class RoomHub(Protocol):
    """What the double needs from the room host (``LoopbackServer`` provides it)."""

    def list_participants(self, room: str) -> list[models.ParticipantInfo]: ...

    def get_participant(self, room: str, identity: str) -> models.ParticipantInfo: ...

    async def update_participant(
        self,
        room: str,
        identity: str,
        *,
        attributes: Mapping[str, str] | None = None,
        metadata: str | None = None,
        name: str | None = None,
    ) -> models.ParticipantInfo: ...

    async def send_data(
        self,
        room: str,
        data: bytes,
        *,
        kind: Any = ...,
        destination_identities: Iterable[str] = (),
        topic: str | None = None,
    ) -> None: ...

    async def delete_room(self, room: str) -> None: ...

    async def remove_participant(self, room: str, identity: str) -> None: ...

    def room_exists(self, name: str) -> bool: ...


@dataclass(frozen=True)
class TwirpCall:
    """One request the double received. ``error`` is the Twirp code it answered, if any."""

    method: str
    room: str | None
    request: Message | None
    error: str | None = None

    @property
    def mutating(self) -> bool:
        return self.method in MUTATING_METHODS and self.error is None


class _TwirpError(Exception):
    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


@dataclass
class _Fault:
    method: str | None
    code: str
    remaining: int | None


_REQUESTS: dict[str, type[Message]] = {
    "ListParticipants": proto_room.ListParticipantsRequest,
    "GetParticipant": proto_room.RoomParticipantIdentity,
    "UpdateParticipant": proto_room.UpdateParticipantRequest,
    "RemoveParticipant": proto_room.RoomParticipantIdentity,
    "SendData": proto_room.SendDataRequest,
    "DeleteRoom": proto_room.DeleteRoomRequest,
    "ListRooms": proto_room.ListRoomsRequest,
}

_KIND_TO_RTC = {
    models.DataPacket.Kind.RELIABLE: rtc.DataPacketKind.KIND_RELIABLE,
    models.DataPacket.Kind.LOSSY: rtc.DataPacketKind.KIND_LOSSY,
}


class RoomServiceDouble:
    """An ASGI app serving the RoomService subset over Twirp, backed by ``hub``.

    ``delay`` adds seconds of latency to every answer. Use :meth:`fail` to make calls answer
    a Twirp error (``unavailable`` 503 by default).
    """

    def __init__(self, hub: RoomHub, *, api_key: str, api_secret: str, delay: float = 0.0) -> None:
        self.hub = hub
        self.api_key = api_key
        self.api_secret = api_secret
        self.delay = delay
        self.calls: list[TwirpCall] = []
        self._faults: list[_Fault] = []
        self._verified: dict[tuple[str, str, str], dict[str, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            raise RuntimeError(f"the RoomService double serves HTTP only, not {scope['type']!r}")
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        status, content_type, body = await self._handle(
            scope["method"], scope["path"], headers, b"".join(chunks)
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode("latin-1")),
                    (b"content-length", str(len(body)).encode("latin-1")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    # -- test helpers ----------------------------------------------------------------------
    def fail(
        self, method: str | None = None, code: str = "unavailable", times: int | None = None
    ) -> None:
        """Answer ``method`` (every method when None) with Twirp error ``code``, ``times``
        times (forever when None)."""
        if code not in TWIRP_STATUS:
            raise ValueError(f"unknown Twirp code {code!r}")
        self._faults.append(_Fault(method, code, times))

    def heal(self) -> None:
        """Remove every injected fault."""
        self._faults.clear()

    def calls_to(self, method: str) -> list[TwirpCall]:
        return [c for c in self.calls if c.method == method]

    def touched_rooms(self) -> set[str]:
        """Rooms changed by a successful UpdateParticipant, RemoveParticipant, SendData or
        DeleteRoom."""
        return {c.room for c in self.calls if c.mutating and c.room is not None}

    # -- Twirp -----------------------------------------------------------------------------
    async def _handle(
        self, http_method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, str, bytes]:
        """One Twirp call: (HTTP status, Content-Type, body)."""
        method = path[len(PREFIX) :] if path.startswith(PREFIX) else path
        message: Message | None = None
        room: str | None = None
        content_type = ""
        try:
            request_class = _REQUESTS.get(method) if path.startswith(PREFIX) else None
            if request_class is None:
                raise _TwirpError("bad_route", f"no handler for path {path!r}")
            if http_method != "POST":
                raise _TwirpError("bad_route", f"unsupported method {http_method} (only POST)")
            content_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type not in ("application/protobuf", "application/json"):
                raise _TwirpError("bad_route", f"unexpected Content-Type: {content_type!r}")
            message = self._decode(request_class, body, content_type)
            room = getattr(message, "room", None)
            self._authorize(headers.get("authorization", ""), method, message)
            self._inject_fault(method)
            if self.delay:
                await asyncio.sleep(self.delay)
            result = await self._dispatch(method, message)
        except _TwirpError as exc:
            self.calls.append(TwirpCall(method, room, message, exc.code))
            error = json.dumps({"code": exc.code, "msg": exc.msg}).encode()
            return TWIRP_STATUS[exc.code], "application/json", error
        self.calls.append(TwirpCall(method, room, message))
        if content_type == "application/json":
            return 200, "application/json", json_format.MessageToJson(result).encode()
        return 200, "application/protobuf", result.SerializeToString()

    @staticmethod
    def _decode(request_class: type[Message], body: bytes, content_type: str) -> Message:
        message = request_class()
        try:
            if content_type == "application/json":
                json_format.Parse(body.decode("utf-8"), message)
            else:
                message.ParseFromString(body)
        except (DecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
            raise _TwirpError("malformed", f"the request could not be decoded: {exc}") from None
        return message

    def _authorize(self, header: str, method: str, message: Message) -> None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _TwirpError("unauthenticated", "invalid authorization header")
        claims = self._verified.get((token, self.api_key, self.api_secret))
        if claims is None or claims["exp"] < time.time():
            try:
                claims = jwt.decode(
                    token,
                    self.api_secret,
                    algorithms=["HS256"],
                    issuer=self.api_key,
                    options={"require": ["exp", "iss"]},
                )
            except jwt.PyJWTError as exc:
                raise _TwirpError("unauthenticated", f"invalid token: {exc}") from None
            # the server reuses tokens: remember verified ones (until they expire)
            if len(self._verified) >= 1024:
                self._verified.clear()
            self._verified[(token, self.api_key, self.api_secret)] = claims
        video = claims.get("video")
        if not isinstance(video, dict):
            video = {}
        if method == "DeleteRoom":
            if video.get("roomCreate") is not True:
                raise _TwirpError("permission_denied", "permissions denied")
        elif method == "ListRooms":
            if video.get("roomList") is not True:
                raise _TwirpError("permission_denied", "permissions denied")
        else:
            room = getattr(message, "room", "")
            if video.get("roomAdmin") is not True or video.get("room") != room:
                raise _TwirpError("permission_denied", "permissions denied")

    def _inject_fault(self, method: str) -> None:
        for fault in self._faults:
            if fault.method not in (None, method):
                continue
            if fault.remaining is not None:
                if fault.remaining <= 0:
                    continue
                fault.remaining -= 1
            raise _TwirpError(fault.code, f"injected fault: {fault.code}")

    async def _dispatch(self, method: str, message: Any) -> Message:
        hub = self.hub
        try:
            if method == "ListParticipants":
                return proto_room.ListParticipantsResponse(
                    participants=hub.list_participants(message.room)
                )
            if method == "GetParticipant":
                return hub.get_participant(message.room, message.identity)
            if method == "UpdateParticipant":
                return await hub.update_participant(
                    message.room,
                    message.identity,
                    attributes=dict(message.attributes) or None,
                    metadata=message.metadata or None,
                    name=message.name or None,
                )
            if method == "RemoveParticipant":
                await hub.remove_participant(message.room, message.identity)
                return proto_room.RemoveParticipantResponse()
            if method == "SendData":
                if not hub.room_exists(message.room):
                    # livekit-server 1.13 routes the packet to the room's node, finds none
                    # and answers this after its routing timeout (about 3 s), not not_found
                    raise _TwirpError("unavailable", "no response from servers")
                destinations = list(message.destination_identities)
                if message.destination_sids:
                    sids = set(message.destination_sids)
                    destinations += [
                        p.identity for p in hub.list_participants(message.room) if p.sid in sids
                    ]
                await hub.send_data(
                    message.room,
                    bytes(message.data),
                    kind=_KIND_TO_RTC.get(message.kind, rtc.DataPacketKind.KIND_RELIABLE),
                    destination_identities=destinations,
                    topic=message.topic if message.HasField("topic") else None,
                )
                return proto_room.SendDataResponse()
            if method == "DeleteRoom":
                if not hub.room_exists(message.room):
                    raise _TwirpError("not_found", "requested room does not exist")
                await hub.delete_room(message.room)
                return proto_room.DeleteRoomResponse()
            if method == "ListRooms":
                return proto_room.ListRoomsResponse(rooms=self._rooms(list(message.names)))
        except LookupError as exc:
            raise _TwirpError("not_found", str(exc)) from None
        raise _TwirpError("bad_route", f"no handler for {method}")  # pragma: no cover

    def _rooms(self, names: list[str]) -> list[models.Room]:
        if not names:
            listing = getattr(self.hub, "rooms", None)
            names = list(listing()) if callable(listing) else []
        return [
            models.Room(name=name, num_participants=len(self.hub.list_participants(name)))
            for name in names
            if self.hub.room_exists(name)
        ]
