"""The fallback server's only door to LiveKit: RoomService calls through ``livekit.api``.

Every call goes through the real ``livekit.api.LiveKitAPI`` client (Twirp, protobuf bodies)
with a per-call timeout. Errors are sorted into three kinds the end flow understands:
:class:`NotFound` (the room or participant does not exist), :class:`LiveKitUnavailable`
(transport failure, timeout or a 5xx: retry later) and :class:`LiveKitError` (any other
refusal, e.g. bad API credentials).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import aiohttp
from livekit import api
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


class RoomGateway:
    """RoomService calls the end flow needs. The client is created on first use (it needs a
    running event loop) and closed by :meth:`aclose`."""

    def __init__(self, url: str, api_key: str, api_secret: str, *, timeout: float = 2.0) -> None:
        self._url = url
        self._api_key = api_key
        self._api_secret = api_secret
        self._timeout = timeout
        self._api: api.LiveKitAPI | None = None

    @property
    def client(self) -> api.LiveKitAPI:
        if self._api is None:
            self._api = api.LiveKitAPI(
                self._url,
                self._api_key,
                self._api_secret,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
        return self._api

    async def aclose(self) -> None:
        if self._api is not None:
            client, self._api = self._api, None
            await client.aclose()

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        try:
            # the aiohttp timeout bounds each attempt; this bounds the whole call
            return await asyncio.wait_for(call, timeout=self._timeout * 2)
        except api.TwirpError as exc:
            if exc.code == api.TwirpErrorCode.NOT_FOUND or exc.status == 404:
                raise NotFound(f"{what}: {exc.message}") from None
            if exc.status >= 500:
                raise LiveKitUnavailable(f"{what}: LiveKit answered {exc.status} {exc.code}") from None
            raise LiveKitError(f"{what}: LiveKit refused ({exc.status} {exc.code}): {exc.message}") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise LiveKitUnavailable(f"{what}: {type(exc).__name__}: {exc}") from None

    async def list_participants(self, room: str) -> list[models.ParticipantInfo]:
        response = await self._call(
            "ListParticipants",
            self.client.room.list_participants(proto_room.ListParticipantsRequest(room=room)),
        )
        return list(response.participants)

    async def get_participant(self, room: str, identity: str) -> models.ParticipantInfo:
        return await self._call(
            "GetParticipant",
            self.client.room.get_participant(
                proto_room.RoomParticipantIdentity(room=room, identity=identity)
            ),
        )

    async def set_attributes(
        self, room: str, identity: str, attributes: dict[str, str]
    ) -> models.ParticipantInfo:
        return await self._call(
            "UpdateParticipant",
            self.client.room.update_participant(
                proto_room.UpdateParticipantRequest(
                    room=room, identity=identity, attributes=attributes
                )
            ),
        )

    async def send_data(self, room: str, identity: str, data: bytes, topic: str) -> None:
        await self._call(
            "SendData",
            self.client.room.send_data(
                proto_room.SendDataRequest(
                    room=room,
                    data=data,
                    kind=models.DataPacket.Kind.RELIABLE,
                    destination_identities=[identity],
                    topic=topic,
                )
            ),
        )

    async def delete_room(self, room: str) -> None:
        await self._call(
            "DeleteRoom",
            self.client.room.delete_room(proto_room.DeleteRoomRequest(room=room)),
        )

    async def room_exists(self, room: str) -> bool:
        response = await self._call(
            "ListRooms", self.client.room.list_rooms(proto_room.ListRoomsRequest(names=[room]))
        )
        return any(r.name == room for r in response.rooms)
