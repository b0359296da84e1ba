"""The participant side of the loopback: ``rtc.LocalParticipant`` and ``rtc.RemoteParticipant``.

:class:`LoopbackLocalParticipant` is what a :class:`~endcall.testing.loopback.LoopbackRoom`
gives its user as ``room.local_participant``: the SDK's own class with the FFI calls
(RPC, data, attributes, metadata, tracks, data streams, DTMF) replaced by calls into the hub,
:class:`~endcall.testing.loopback.LoopbackServer`. :class:`LoopbackRemoteParticipant` is
another participant as one room sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from livekit import rtc
from livekit.rtc._proto import participant_pb2 as proto_participant
from livekit.rtc._proto import room_pb2 as proto_room
from livekit.rtc._proto import track_pb2 as proto_track
from livekit.rtc.participant import PublishDataError, PublishTrackError, UnpublishTrackError

from endcall.testing._loopback_rpc import _rpc_error
from endcall.testing._loopback_state import _sid
from endcall.testing._streams import (
    LoopbackByteStreamWriter,
    LoopbackStreamReader,
    LoopbackTextStreamWriter,
)

if TYPE_CHECKING:
    from endcall.testing._loopback_room import LoopbackRoom

__all__ = ["LoopbackLocalParticipant", "LoopbackRemoteParticipant"]

logger = logging.getLogger("endcall.testing.loopback")


class LoopbackRemoteParticipant(rtc.RemoteParticipant):
    """``rtc.RemoteParticipant`` as seen by one :class:`LoopbackRoom`."""

    def __init__(self, info: proto_participant.ParticipantInfo) -> None:
        owned = proto_participant.OwnedParticipant()
        owned.info.CopyFrom(info)
        super().__init__(owned)


_F = TypeVar("_F", bound=Callable[[rtc.RpcInvocationData], Any])


class LoopbackLocalParticipant(rtc.LocalParticipant):
    """``rtc.LocalParticipant`` of a :class:`LoopbackRoom`.

    The real class is subclassed so RPC interceptors, the handler chain with its
    response deadline and the error mapping are the SDK's own code; only the FFI calls are
    replaced by the loopback.
    """

    def __init__(self, room: LoopbackRoom, info: proto_participant.ParticipantInfo) -> None:
        owned = proto_participant.OwnedParticipant()
        owned.info.CopyFrom(info)
        super().__init__(room._room_queue, owned)
        self._lb_room = room

    # -- RPC -----------------------------------------------------------------------------
    def register_rpc_method(
        self, method_name: str, handler: _F | None = None
    ) -> _F | Callable[[_F], _F]:
        def register(handler_func: _F) -> _F:
            self._rpc_handlers[method_name] = handler_func
            return handler_func

        if handler is not None:
            return register(handler)
        return register

    def unregister_rpc_method(self, method: str) -> None:
        self._rpc_handlers.pop(method, None)

    async def _perform_rpc_ffi(self, call: rtc.RpcCallInfo) -> str:
        return await self._lb_room._hub._perform_rpc(self._lb_room, call)

    async def _handle_loopback_invocation(
        self,
        *,
        request_id: str,
        caller_identity: str,
        method: str,
        payload: str,
        response_timeout: float,
    ) -> tuple[str, rtc.RpcError | None]:
        """What the real ``_handle_rpc_method_invocation`` does, minus the FFI reply."""
        params = rtc.RpcInvocationData(
            request_id, caller_identity, payload, response_timeout, method=method
        )
        try:
            response = await self._run_incoming_chain(params)
        except rtc.RpcError as error:
            return "", error
        except Exception:
            logger.exception(
                "Uncaught error returned by RPC handler for %s. Returning APPLICATION_ERROR.",
                method,
            )
            return "", _rpc_error(rtc.RpcError.ErrorCode.APPLICATION_ERROR)
        response = response or ""
        limit = self._lb_room._hub.rpc_payload_limit
        if limit is not None and len(response.encode("utf-8")) > limit:
            return "", _rpc_error(rtc.RpcError.ErrorCode.RESPONSE_PAYLOAD_TOO_LARGE)
        return response, None

    # -- data, attributes, metadata ------------------------------------------------------
    async def publish_data(
        self,
        payload: bytes | str,
        *,
        reliable: bool = True,
        destination_identities: list[str] = [],  # noqa: B006 (the SDK's signature)
        topic: str = "",
    ) -> None:
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        if not self._lb_room.isconnected():
            raise PublishDataError("the room isn't connected")
        if not self._lb_room._joined:
            return  # removed by the server, not told yet: the packet goes nowhere
        kind = proto_room.KIND_RELIABLE if reliable else proto_room.KIND_LOSSY
        self._lb_room._hub._deliver_data(
            self._lb_room._room_name,
            sender=self.identity,
            data=bytes(payload),
            kind=kind,
            destination_identities=list(destination_identities),
            topic=topic,
        )

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self._lb_room._hub._participant_update(
            self._lb_room, attributes=dict(attributes), metadata=None, name=None
        )

    async def set_metadata(self, metadata: str) -> None:
        self._lb_room._hub._participant_update(
            self._lb_room, attributes=None, metadata=metadata, name=None
        )

    async def set_name(self, name: str) -> None:
        self._lb_room._hub._participant_update(
            self._lb_room, attributes=None, metadata=None, name=name
        )

    async def publish_transcription(self, transcription: rtc.Transcription) -> None:
        # legacy transcription packets: accepted and dropped (no loopback consumer)
        return None

    async def publish_dtmf(self, *, code: int, digit: str) -> None:
        self._lb_room._hub._deliver_dtmf(self._lb_room, code=code, digit=digit)

    # -- tracks --------------------------------------------------------------------------
    async def publish_track(
        self,
        track: rtc.LocalTrack,
        options: rtc.TrackPublishOptions = rtc.TrackPublishOptions(),  # noqa: B008
    ) -> rtc.LocalTrackPublication:
        if not self._lb_room.isconnected():
            raise PublishTrackError("the room isn't connected")
        owned = proto_track.OwnedTrackPublication()
        info = owned.info
        info.sid = _sid("TR_")
        info.name = track.name
        info.kind = track.kind
        info.source = options.source
        info.mime_type = "audio/opus" if track.kind == rtc.TrackKind.KIND_AUDIO else "video/vp8"
        publication = rtc.LocalTrackPublication(owned)
        publication._track = track
        track._info.sid = info.sid
        self._track_publications[info.sid] = publication
        self._lb_room._hub._track_published(self._lb_room, publication)
        return publication

    async def unpublish_track(self, track_sid: str) -> None:
        publication = self._track_publications.pop(track_sid, None)
        if publication is None:
            raise UnpublishTrackError(f"track {track_sid} is not published")
        publication._track = None
        self._lb_room._hub._track_unpublished(self._lb_room, publication)

    # -- text streams --------------------------------------------------------------------
    async def stream_text(
        self,
        *,
        destination_identities: list[str] | None = None,
        topic: str = "",
        attributes: dict[str, str] | None = None,
        stream_id: str | None = None,
        reply_to_id: str | None = None,
        total_size: int | None = None,
        sender_identity: str | None = None,
    ) -> rtc.TextStreamWriter:
        return await LoopbackTextStreamWriter(
            self,
            topic=topic,
            attributes=attributes,
            stream_id=stream_id,
            total_size=total_size,
            reply_to_id=reply_to_id,
            destination_identities=destination_identities,
            sender_identity=sender_identity,
            open_readers=self._open_readers,
        )._opened()

    async def send_text(
        self,
        text: str,
        *,
        destination_identities: list[str] | None = None,
        topic: str = "",
        attributes: dict[str, str] | None = None,
        reply_to_id: str | None = None,
        compress: bool = True,
    ) -> rtc.TextStreamInfo:
        writer = await self.stream_text(
            destination_identities=destination_identities,
            topic=topic,
            attributes=attributes,
            reply_to_id=reply_to_id,
            total_size=len(text.encode("utf-8")),
        )
        await writer.write(text)
        await writer.aclose()
        return writer.info

    async def stream_bytes(
        self,
        name: str,
        *,
        total_size: int | None = None,
        mime_type: str = "application/octet-stream",
        attributes: dict[str, str] | None = None,
        stream_id: str | None = None,
        destination_identities: list[str] | None = None,
        topic: str = "",
    ) -> rtc.ByteStreamWriter:
        return await LoopbackByteStreamWriter(
            self,
            name=name,
            topic=topic,
            attributes=attributes,
            stream_id=stream_id,
            total_size=total_size,
            mime_type=mime_type,
            destination_identities=destination_identities,
            open_readers=self._open_readers,
        )._opened()

    async def send_bytes(
        self,
        data: bytes,
        *,
        topic: str = "",
        name: str | None = None,
        mime_type: str | None = None,
        destination_identities: list[str] | None = None,
        attributes: dict[str, str] | None = None,
        stream_id: str | None = None,
        compress: bool = True,
    ) -> rtc.ByteStreamInfo:
        writer = await self.stream_bytes(
            name or "unknown",
            total_size=len(data),
            mime_type=mime_type or "application/octet-stream",
            attributes=attributes,
            stream_id=stream_id,
            destination_identities=destination_identities,
            topic=topic,
        )
        await writer.write(data)
        await writer.aclose()
        return writer.info

    async def send_file(
        self,
        file_path: str,
        *,
        topic: str = "",
        destination_identities: list[str] | None = None,
        attributes: dict[str, str] | None = None,
        stream_id: str | None = None,
        compress: bool = True,
    ) -> rtc.ByteStreamInfo:
        import mimetypes
        import os

        with open(file_path, "rb") as f:  # noqa: ASYNC230 (test double, small files)
            data = f.read()
        return await self.send_bytes(
            data,
            topic=topic,
            name=os.path.basename(file_path),
            mime_type=mimetypes.guess_type(file_path)[0] or "application/octet-stream",
            destination_identities=destination_identities,
            attributes=attributes,
            stream_id=stream_id,
        )

    def _open_readers(
        self,
        info: rtc.TextStreamInfo | rtc.ByteStreamInfo,
        sender_identity: str,
        destinations: list[str] | None,
    ) -> list[LoopbackStreamReader]:
        """Open a stream at its recipients (a writer's header); raises ``rtc.StreamError``
        when this room is not connected, as the SDK's ``stream_text``/``stream_bytes`` do."""
        if not self._lb_room.isconnected():
            raise rtc.StreamError("the room isn't connected")
        return self._lb_room._hub._open_streams(self._lb_room, info, sender_identity, destinations)

    def __repr__(self) -> str:
        return f"LoopbackLocalParticipant(identity={self.identity!r}, sid={self.sid!r})"
