"""The fallback server's only door to LiveKit: RoomService calls through ``livekit.api``.

Every call goes through livekit-api's own ``RoomService`` client (the class behind
``LiveKitAPI.room``: Twirp, protobuf bodies, region failover) on one shared aiohttp session
(keep-alive connections) whose timeout bounds each call. One change: the access token a call
needs (LiveKit wants one per room: ``roomAdmin`` + ``room``) is minted with pyjwt, with the same
claims as livekit-api's ``AccessToken.to_jwt`` but without its costly dataclass round trip, and
reused for a few minutes instead of being minted on every call (token minting dominated the
server's CPU under load). Errors are sorted into three kinds the end flow understands:
:class:`NotFound` (the room or participant does not exist), :class:`LiveKitUnavailable`
(transport failure, timeout or a 5xx: retry later) and :class:`LiveKitError` (any other
refusal, e.g. bad API credentials).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import aiohttp
import jwt
from livekit import api
from livekit.api.room_service import RoomService
from livekit.protocol import models
from livekit.protocol import room as proto_room

__all__ = ["LiveKitError", "LiveKitUnavailable", "NotFound", "RoomGateway"]

T = TypeVar("T")


class LiveKitError(Exception):
    """LiveKit refused the call (not a missing room or participant, not an outage)."""


class LiveKitUnavailable(LiveKitError):
    """LiveKit could not be reached in time, or answered with a server error."""


class NotFound(LiveKitError):
    """The room or the participant does not exist."""


def _lower_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


_VIDEO_FIELDS = tuple((f.name, _lower_camel(f.name)) for f in dataclasses.fields(api.VideoGrants))


def _video_claim(grants: api.VideoGrants) -> dict[str, Any]:
    """The ``video`` claim livekit-api writes for ``grants`` (None and "" left out)."""
    claim: dict[str, Any] = {}
    for name, key in _VIDEO_FIELDS:
        value = getattr(grants, name)
        if value is not None and value != "":
            claim[key] = list(value) if isinstance(value, list) else value
    return claim


class _RoomService(RoomService):
    """livekit-api's RoomService, minting each grant's token once and reusing it for
    ``TOKEN_REUSE`` seconds (it is valid for ``TOKEN_TTL``)."""

    TOKEN_REUSE = 300.0
    TOKEN_TTL = 600
    MAX_TOKENS = 4096

    def __init__(self, session: aiohttp.ClientSession, url: str, key: str, secret: str) -> None:
        super().__init__(session, url, key, secret)
        self._headers: OrderedDict[str, tuple[float, dict[str, str]]] = OrderedDict()

    def _mint(self, grants: api.VideoGrants | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"video": _video_claim(grants)} if grants is not None else {}
        claims.update(sub="", iss=self.api_key, nbf=now, exp=now + self.TOKEN_TTL)
        return jwt.encode(claims, self.api_secret, algorithm="HS256")

    def _auth_header(
        self, grants: api.VideoGrants | None, sip: api.SIPGrants | None = None
    ) -> dict[str, str]:
        if sip is not None or self._token:
            return super()._auth_header(grants, sip)
        key = repr(grants)  # a dataclass: every field, in order
        now = time.monotonic()
        cached = self._headers.get(key)
        if cached is not None and cached[0] > now:
            return dict(cached[1])
        header = {"authorization": f"Bearer {self._mint(grants)}"}
        self._headers[key] = (now + self.TOKEN_REUSE, header)
        self._headers.move_to_end(key)
        while len(self._headers) > self.MAX_TOKENS:
            self._headers.popitem(last=False)
        return dict(header)


class RoomGateway:
    """RoomService calls the end flow needs. The client is created on first use (it needs a
    running event loop) and closed by :meth:`aclose`."""

    def __init__(self, url: str, api_key: str, api_secret: str, *, timeout: float = 2.0) -> None:
        self._url = url
        self._api_key = api_key
        self._api_secret = api_secret
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._room: _RoomService | None = None

    @property
    def room(self) -> RoomService:
        """livekit-api's RoomService client (created on first use: it needs a running loop)."""
        if self._room is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
            self._room = _RoomService(self._session, self._url, self._api_key, self._api_secret)
        return self._room

    async def aclose(self) -> None:
        session, self._session, self._room = self._session, None, None
        if session is not None:
            await session.close()

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        try:
            return await call  # the session's timeout bounds every attempt
        except api.TwirpError as exc:
            if exc.code == api.TwirpErrorCode.NOT_FOUND or exc.status == 404:
                raise NotFound(f"{what}: {exc.message}") from None
            if exc.status >= 500:
                raise LiveKitUnavailable(
                    f"{what}: LiveKit answered {exc.status} {exc.code}"
                ) from None
            raise LiveKitError(
                f"{what}: LiveKit refused ({exc.status} {exc.code}): {exc.message}"
            ) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise LiveKitUnavailable(f"{what}: {type(exc).__name__}: {exc}") from None

    async def list_participants(self, room: str) -> list[models.ParticipantInfo]:
        response = await self._call(
            "ListParticipants",
            self.room.list_participants(proto_room.ListParticipantsRequest(room=room)),
        )
        return list(response.participants)

    async def get_participant(self, room: str, identity: str) -> models.ParticipantInfo:
        return await self._call(
            "GetParticipant",
            self.room.get_participant(
                proto_room.RoomParticipantIdentity(room=room, identity=identity)
            ),
        )

    async def set_attributes(
        self, room: str, identity: str, attributes: dict[str, str]
    ) -> models.ParticipantInfo:
        return await self._call(
            "UpdateParticipant",
            self.room.update_participant(
                proto_room.UpdateParticipantRequest(
                    room=room, identity=identity, attributes=attributes
                )
            ),
        )

    async def delete_room(self, room: str) -> None:
        await self._call(
            "DeleteRoom",
            self.room.delete_room(proto_room.DeleteRoomRequest(room=room)),
        )

    async def live_rooms(self, names: Sequence[str]) -> set[str]:
        """The sids of the rooms with these names that LiveKit lists now."""
        response = await self._call(
            "ListRooms", self.room.list_rooms(proto_room.ListRoomsRequest(names=list(names)))
        )
        return {r.sid for r in response.rooms}

    async def room_exists(self, room: str) -> bool:
        response = await self._call(
            "ListRooms", self.room.list_rooms(proto_room.ListRoomsRequest(names=[room]))
        )
        return any(r.name == room for r in response.rooms)
