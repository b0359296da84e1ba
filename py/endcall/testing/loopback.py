"""Loopback LiveKit: an in-process stand-in for the SFU, for tests of real agents.

:class:`LoopbackServer` hosts rooms; :meth:`LoopbackServer.connect` returns a
:class:`LoopbackRoom`, a subclass of ``rtc.Room`` whose local participant is a subclass of
``rtc.LocalParticipant`` and whose remote participants are ``rtc.RemoteParticipant``
instances. Only the transport is replaced: method names, signatures, event names, payload
shapes, ``rtc.RpcError`` codes and disconnect reasons follow livekit-rtc (checked against
livekit 1.1.x and the Rust SDK it wraps), so ``isinstance(room, rtc.Room)`` holds and
livekit-agents' ``RoomIO`` runs on it unchanged.

Events are delivered asynchronously, like the real SDK: each room has its own event
queue, drained in order by a task, and a room's view of other participants (their
attributes, metadata, publications) changes only when that room processes the event.
Use :meth:`LoopbackServer.settle` to wait until every queued event has been handled.

The hub also exposes the server API side (``list_participants``, ``update_participant``,
``send_data``, ``delete_room``, ``remove_participant``) used by the RoomService double,
and fault injection (RPC latency, dropped RPC requests, data filters, dropped clients).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypeVar

from livekit import rtc
from livekit.protocol import models
from livekit.rtc._proto import participant_pb2 as proto_participant
from livekit.rtc._proto import room_pb2 as proto_room
from livekit.rtc._proto import track_pb2 as proto_track
from livekit.rtc.participant import PublishDataError, PublishTrackError, UnpublishTrackError

from endcall.testing._streams import (
    LoopbackByteStreamReader,
    LoopbackByteStreamWriter,
    LoopbackStreamReader,
    LoopbackTextStreamReader,
    LoopbackTextStreamWriter,
)

__all__ = [
    "RPC_DEFAULT_RESPONSE_TIMEOUT",
    "RPC_MAX_PAYLOAD_BYTES",
    "RPC_MAX_ROUND_TRIP_LATENCY",
    "DataFilter",
    "LoopbackLocalParticipant",
    "LoopbackRemoteParticipant",
    "LoopbackRoom",
    "LoopbackServer",
]

logger = logging.getLogger("endcall.testing.loopback")

RPC_MAX_PAYLOAD_BYTES = 15_360
"""Request and response payload limit in UTF-8 bytes (``MAX_PAYLOAD_BYTES`` in the SDKs)."""
RPC_MAX_ROUND_TRIP_LATENCY = 7.0
"""Seconds the caller waits for the recipient's ACK before ``CONNECTION_TIMEOUT``."""
RPC_DEFAULT_RESPONSE_TIMEOUT = 15.0
"""``perform_rpc`` default ``response_timeout`` (seconds) in the Rust SDK."""
_RPC_MIN_EFFECTIVE_TIMEOUT = 1.0

Kind: TypeAlias = proto_participant.ParticipantKind.ValueType
Reason: TypeAlias = proto_participant.DisconnectReason.ValueType

DataFilter = Callable[[str | None, str, bytes, str], bool]
"""``(sender_identity or None for the server, recipient_identity, data, topic) -> deliver?``"""

_KIND_TO_SERVER: dict[int, int] = {
    rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD: models.ParticipantInfo.Kind.STANDARD,
    rtc.ParticipantKind.PARTICIPANT_KIND_INGRESS: models.ParticipantInfo.Kind.INGRESS,
    rtc.ParticipantKind.PARTICIPANT_KIND_EGRESS: models.ParticipantInfo.Kind.EGRESS,
    rtc.ParticipantKind.PARTICIPANT_KIND_SIP: models.ParticipantInfo.Kind.SIP,
    rtc.ParticipantKind.PARTICIPANT_KIND_AGENT: models.ParticipantInfo.Kind.AGENT,
    rtc.ParticipantKind.PARTICIPANT_KIND_CONNECTOR: models.ParticipantInfo.Kind.CONNECTOR,
    rtc.ParticipantKind.PARTICIPANT_KIND_BRIDGE: models.ParticipantInfo.Kind.BRIDGE,
}

_sid_counter = itertools.count(1)


def _sid(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}{next(_sid_counter)}"


def _rpc_error(code: rtc.RpcError.ErrorCode, data: str | None = None) -> rtc.RpcError:
    return rtc.RpcError(code, rtc.RpcError.ErrorMessage[code], data)


def _over_the_wire(err: rtc.RpcError) -> rtc.RpcError:
    """A copy of ``err`` as the caller receives it (unset ``data`` arrives as "")."""
    return rtc.RpcError(err.code, err.message, err.data or "")


def _apply_attributes(target: Any, updates: Mapping[str, str]) -> dict[str, str]:
    """Merge ``updates`` into a protobuf attributes map; "" deletes. Returns what changed."""
    changed: dict[str, str] = {}
    for key, value in updates.items():
        if value == "":
            if key in target:
                del target[key]
                changed[key] = ""
        elif target.get(key) != value:
            target[key] = value
            changed[key] = value
    return changed


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


_Event = Callable[[], None]
_STOP: _Event = lambda: None  # noqa: E731 (sentinel ending a room's dispatcher)


class LoopbackRoom(rtc.Room):
    """An ``rtc.Room`` connected to a :class:`LoopbackServer` (get one from ``hub.connect``).

    Differences from ``rtc.Room``: ``connect()`` is not supported (the hub connects),
    ``get_rtc_stats`` and ``simulate_scenario`` raise ``NotImplementedError``, data tracks,
    E2EE and room metadata are absent, and no media flows (published tracks are announced
    and "subscribed"; audio frames are not carried to other participants).
    """

    def __init__(
        self, hub: LoopbackServer, room_name: str, room_sid: str, created_at: float
    ) -> None:
        super().__init__()
        self._hub = hub
        self._room_name = room_name
        self._info.name = room_name
        self._info.sid = room_sid
        self._info.creation_time = int(created_at * 1000)
        self._resolve_first_sid(room_sid)
        self._lb_events: asyncio.Queue[_Event] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None
        self._joined = False
        self._lb_readers: set[LoopbackStreamReader] = set()

    # -- plumbing ------------------------------------------------------------------------
    def _start(self, info: proto_participant.ParticipantInfo) -> None:
        self._local_participant = LoopbackLocalParticipant(self, info)
        self._connection_state = rtc.ConnectionState.CONN_CONNECTED
        self._joined = True
        self._dispatcher = asyncio.get_running_loop().create_task(
            self._dispatch(), name=f"loopback-room-{self._room_name}-{info.identity}"
        )

    def _post(self, event: _Event) -> None:
        if self._joined:
            self._lb_events.put_nowait(event)

    async def _dispatch(self) -> None:
        while True:
            event = await self._lb_events.get()
            try:
                if event is _STOP:
                    return
                event()
            except Exception:
                logger.exception("error while handling a loopback room event")
            finally:
                self._lb_events.task_done()

    def _dispatcher_running(self) -> bool:
        return self._dispatcher is not None and not self._dispatcher.done()

    async def _settle(self) -> None:
        if self._dispatcher is not None and not self._dispatcher.done():
            await self._lb_events.join()

    def _lp(self) -> LoopbackLocalParticipant:
        assert isinstance(self._local_participant, LoopbackLocalParticipant)
        return self._local_participant

    def _server_disconnect(self, reason: Reason) -> None:
        """The server ended this connection: emit like the SDK, then stop the dispatcher."""
        if not self._joined:
            return
        self._joined = False

        def handle() -> None:
            self._lp()._info.disconnect_reason = reason
            self._connection_state = rtc.ConnectionState.CONN_DISCONNECTED
            self._error_stream_readers()
            self.emit("connection_state_changed", self._connection_state)
            self.emit("disconnected", reason)

        self._lb_events.put_nowait(handle)
        self._lb_events.put_nowait(_STOP)
        drain = asyncio.get_running_loop().create_task(self._drain_rpc_invocation_tasks())
        self._hub._background.add(drain)
        drain.add_done_callback(self._hub._background.discard)

    def _error_stream_readers(self) -> None:
        for reader in list(self._lb_readers):
            reader._signal_disconnect()
        self._lb_readers.clear()

    # -- rtc.Room API ---------------------------------------------------------------------
    def isconnected(self) -> bool:
        return self._connection_state != rtc.ConnectionState.CONN_DISCONNECTED

    async def connect(
        self,
        url: str,
        token: str,
        options: rtc.RoomOptions = rtc.RoomOptions(),  # noqa: B008 (the SDK's signature)
    ) -> None:
        raise RuntimeError("a LoopbackRoom is connected by LoopbackServer.connect()")

    async def disconnect(self, *, reason: Reason = rtc.DisconnectReason.CLIENT_INITIATED) -> None:
        """Leave the room; the others see ``participant_disconnected`` with ``reason``."""
        if not self.isconnected():
            return
        await self._drain_rpc_invocation_tasks()
        if self._joined:
            self._joined = False
            self._hub._leave(self, reason)
            self._lb_events.put_nowait(_STOP)
        if self._dispatcher is not None:
            await asyncio.shield(self._dispatcher)
        self._error_stream_readers()
        if self._connection_state != rtc.ConnectionState.CONN_DISCONNECTED:
            self._lp()._info.disconnect_reason = reason
            self._connection_state = rtc.ConnectionState.CONN_DISCONNECTED
            self.emit("connection_state_changed", self._connection_state)
            self.emit("disconnected", reason)

    async def get_rtc_stats(self) -> rtc.RtcStats:
        raise NotImplementedError("LoopbackRoom carries no media")

    async def simulate_scenario(self, scenario: Any) -> None:
        raise NotImplementedError("use LoopbackServer fault injection instead")

    def __repr__(self) -> str:
        identity = self._local_participant.identity if self._local_participant else "?"
        return f"LoopbackRoom(name={self._room_name!r}, identity={identity!r})"


@dataclass
class _Member:
    room: LoopbackRoom
    info: proto_participant.ParticipantInfo
    publications: dict[str, proto_track.TrackPublicationInfo] = field(default_factory=dict)
    # futures of RPC calls addressed to this member, failed if it leaves
    inbound_rpcs: set[asyncio.Future[tuple[str, rtc.RpcError | None]]] = field(default_factory=set)


@dataclass
class _HubRoom:
    name: str
    sid: str
    created_at: float
    members: dict[str, _Member] = field(default_factory=dict)


class LoopbackServer:
    """An in-process LiveKit server for tests: rooms, participants, RPC, data, attributes.

    Fault injection (all default off):

    - ``rpc_latency``: one-way seconds added to every RPC request and response.
    - ``rpc_ack_timeout``: seconds a caller waits for the ACK (7 s in the SDK).
    - :meth:`drop_rpc_requests`: requests to an identity are lost (no ACK), so the caller
      gets ``CONNECTION_TIMEOUT`` after ``rpc_ack_timeout``.
    - ``missing_recipient``: ``"not_found"`` (default) answers ``RECIPIENT_NOT_FOUND`` at
      once for an identity not in the room; ``"connection_timeout"`` behaves like an SFU
      that silently drops the request (``CONNECTION_TIMEOUT`` after ``rpc_ack_timeout``),
      which is what livekit-server 1.13 does.
    - ``rpc_payload_limit``: request/response limit in UTF-8 bytes (``RPC_MAX_PAYLOAD_BYTES``,
      the RPC v1 limit, by default). ``None`` models peers that send RPC over data streams
      (livekit 1.1.x, livekit-client 2.x) on livekit-server 1.13: no limit.
    - :meth:`set_data_filter`: drop data packets selectively.
    - :meth:`drop_connection`: a client vanishes without leaving (network loss, killed tab);
      the others see ``participant_disconnected`` with ``SIGNAL_CLOSE`` by default.
    """

    def __init__(
        self,
        *,
        rpc_latency: float = 0.0,
        rpc_ack_timeout: float = RPC_MAX_ROUND_TRIP_LATENCY,
        missing_recipient: Literal["not_found", "connection_timeout"] = "not_found",
        rpc_payload_limit: int | None = RPC_MAX_PAYLOAD_BYTES,
    ) -> None:
        self.rpc_latency = rpc_latency
        self.rpc_payload_limit = rpc_payload_limit
        self.rpc_ack_timeout = rpc_ack_timeout
        self.missing_recipient: Literal["not_found", "connection_timeout"] = missing_recipient
        self._rooms: dict[str, _HubRoom] = {}
        self._dropped_rpc_targets: set[tuple[str, str]] = set()
        self._data_filter: DataFilter | None = None
        self._connections: list[LoopbackRoom] = []
        self._background: set[asyncio.Task[None]] = set()

    # -- joining -------------------------------------------------------------------------
    async def connect(
        self,
        room: str,
        identity: str,
        *,
        kind: Kind = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
        attributes: Mapping[str, str] | None = None,
        name: str = "",
        metadata: str = "",
        can_update_metadata: bool = True,
    ) -> LoopbackRoom:
        """Join ``room`` as ``identity`` (the room is created on first join).

        A second connection with the same identity replaces the first, which is
        disconnected with ``DUPLICATE_IDENTITY`` (as LiveKit does).
        ``can_update_metadata=False`` models a token without that grant: ``set_attributes``
        / ``set_metadata`` / ``set_name`` then change nothing (the Python SDK does not raise).
        """
        if not identity:
            raise ValueError("identity must not be empty")
        hub_room = self._rooms.get(room)
        if hub_room is None:
            hub_room = _HubRoom(name=room, sid=_sid("RM_"), created_at=time.time())
            self._rooms[room] = hub_room
        if identity in hub_room.members:
            old = hub_room.members[identity]
            self._remove(hub_room, old, rtc.DisconnectReason.DUPLICATE_IDENTITY, notify_self=True)

        info = proto_participant.ParticipantInfo(
            sid=_sid("PA_"),
            identity=identity,
            name=name,
            metadata=metadata,
            kind=kind,
            state=proto_participant.PARTICIPANT_STATE_ACTIVE,
            joined_at=int(time.time() * 1000),
        )
        info.attributes.update({k: v for k, v in (attributes or {}).items() if v != ""})
        info.permission.can_subscribe = True
        info.permission.can_publish = True
        info.permission.can_publish_data = True
        info.permission.can_update_metadata = can_update_metadata

        lb_room = LoopbackRoom(self, room, hub_room.sid, hub_room.created_at)
        lb_room._start(info)
        self._connections = [r for r in self._connections if r._dispatcher_running()]
        self._connections.append(lb_room)
        # the join response: everyone already there, with their publications
        for other in hub_room.members.values():
            remote = LoopbackRemoteParticipant(other.info)
            for pub_info in other.publications.values():
                remote._track_publications[pub_info.sid] = self._remote_publication(pub_info)
            lb_room._remote_participants[other.info.identity] = remote
        member = _Member(room=lb_room, info=info)
        hub_room.members[identity] = member
        for other in list(hub_room.members.values()):
            if other is member:
                continue
            self._post_participant_connected(other.room, info)
            # auto-subscribe: the newcomer subscribes to what the others publish
            for pub_info in other.publications.values():
                self._mark_subscribed(other.room, pub_info.sid)
        self._update_counts(hub_room)
        return lb_room

    # -- server API (RoomService) --------------------------------------------------------
    def rooms(self) -> list[str]:
        """Names of the rooms that exist (a room exists from its first join until deleted)."""
        return list(self._rooms)

    def room_exists(self, name: str) -> bool:
        return name in self._rooms

    def list_participants(self, room: str) -> list[models.ParticipantInfo]:
        """Participants of ``room`` as the server API returns them (empty if no such room)."""
        hub_room = self._rooms.get(room)
        if hub_room is None:
            return []
        return [self._to_server_info(m) for m in hub_room.members.values()]

    def get_participant(self, room: str, identity: str) -> models.ParticipantInfo:
        """Raises ``LookupError`` when the room or the participant does not exist."""
        return self._to_server_info(self._member(room, identity))

    async def update_participant(
        self,
        room: str,
        identity: str,
        *,
        attributes: Mapping[str, str] | None = None,
        metadata: str | None = None,
        name: str | None = None,
    ) -> models.ParticipantInfo:
        """``RoomService.UpdateParticipant``: merges ``attributes`` ("" deletes a key)."""
        member = self._member(room, identity)
        self._commit_update(
            self._rooms[room],
            member,
            attributes=dict(attributes) if attributes is not None else None,
            metadata=metadata,
            name=name,
        )
        return self._to_server_info(member)

    async def send_data(
        self,
        room: str,
        data: bytes,
        *,
        kind: proto_room.DataPacketKind.ValueType = proto_room.KIND_RELIABLE,
        destination_identities: Iterable[str] = (),
        topic: str | None = None,
    ) -> None:
        """``RoomService.SendData``: delivered with ``participant=None``. Raises
        ``LookupError`` if the room does not exist."""
        if room not in self._rooms:
            raise LookupError(f"room {room!r} does not exist")
        self._deliver_data(
            room,
            sender=None,
            data=bytes(data),
            kind=kind,
            destination_identities=list(destination_identities),
            topic=topic or "",
        )

    async def delete_room(self, room: str) -> None:
        """``RoomService.DeleteRoom``: every participant gets ``disconnected`` with
        ``ROOM_DELETED`` (no ``participant_disconnected`` events: their connections end).
        Raises ``LookupError`` if the room does not exist."""
        self._end_room(room, rtc.DisconnectReason.ROOM_DELETED)

    async def close_room(self, room: str) -> None:
        """What livekit-server does ``departure_timeout`` after the last standard participant
        left (or ``empty_timeout`` after nobody came): the participants still there (agents)
        get ``disconnected`` with ``ROOM_CLOSED``, and nothing else first. The double never
        does it by itself; call it where a test needs the server's timeout."""
        self._end_room(room, rtc.DisconnectReason.ROOM_CLOSED)

    def _end_room(self, room: str, reason: Reason) -> None:
        hub_room = self._rooms.pop(room, None)
        if hub_room is None:
            raise LookupError(f"room {room!r} does not exist")
        for member in list(hub_room.members.values()):
            self._fail_inbound_rpcs(member)
            member.room._server_disconnect(reason)
        hub_room.members.clear()

    async def remove_participant(self, room: str, identity: str) -> None:
        """``RoomService.RemoveParticipant``: ``PARTICIPANT_REMOVED`` for everyone."""
        member = self._member(room, identity)
        self._remove(
            self._rooms[room], member, rtc.DisconnectReason.PARTICIPANT_REMOVED, notify_self=True
        )

    async def aclose(self) -> None:
        """Shut the server down: every connection ends with ``SERVER_SHUTDOWN``."""
        for hub_room in list(self._rooms.values()):
            for member in list(hub_room.members.values()):
                self._fail_inbound_rpcs(member)
                member.room._server_disconnect(rtc.DisconnectReason.SERVER_SHUTDOWN)
            hub_room.members.clear()
        self._rooms.clear()
        dispatchers = [r._dispatcher for r in self._connections if r._dispatcher is not None]
        if dispatchers:
            await asyncio.wait(dispatchers, timeout=5)
        if self._background:
            await asyncio.wait(list(self._background), timeout=5)

    async def __aenter__(self) -> LoopbackServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- fault injection -----------------------------------------------------------------
    async def drop_connection(
        self,
        room: str,
        identity: str,
        *,
        reason: Reason = rtc.DisconnectReason.SIGNAL_CLOSE,
    ) -> None:
        """The client vanishes without a leave (network loss, killed process).

        The others see ``participant_disconnected`` with ``reason`` (default
        ``SIGNAL_CLOSE``, "the signal websocket was closed unexpectedly"; a client that
        stops answering without closing is reported by LiveKit after its timeout, use
        ``CONNECTION_TIMEOUT`` for that). The dropped room itself gets no event: its
        process is assumed gone; it is marked disconnected and its handlers stop.
        """
        member = self._member(room, identity)
        self._remove(self._rooms[room], member, reason, notify_self=False)
        lb_room = member.room
        lb_room._joined = False
        lb_room._connection_state = rtc.ConnectionState.CONN_DISCONNECTED
        lb_room._lb_events.put_nowait(_STOP)
        await lb_room._drain_rpc_invocation_tasks()

    def drop_rpc_requests(self, room: str, identity: str, drop: bool = True) -> None:
        """Lose RPC requests addressed to ``identity`` (callers get CONNECTION_TIMEOUT)."""
        key = (room, identity)
        if drop:
            self._dropped_rpc_targets.add(key)
        else:
            self._dropped_rpc_targets.discard(key)

    def set_rpc_delay(self, seconds: float) -> None:
        """One-way latency added to every RPC request and response."""
        self.rpc_latency = seconds

    def set_data_filter(self, data_filter: DataFilter | None) -> None:
        """``data_filter(sender, recipient, data, topic) -> bool``; False drops the packet."""
        self._data_filter = data_filter

    async def settle(self) -> None:
        """Wait until every room has handled every event queued so far, including events
        that handlers queue synchronously while they run (not work they start in tasks)."""
        for _ in range(100):
            rooms = [r for r in self._connections if r._dispatcher_running()]
            if all(r._lb_events.empty() for r in rooms):
                # one more pass so handlers that queued follow-up work get to run
                await asyncio.sleep(0)
                if all(r._lb_events.empty() for r in rooms):
                    return
            for lb_room in rooms:
                await lb_room._settle()

    # -- internals: membership ------------------------------------------------------------
    def _member(self, room: str, identity: str) -> _Member:
        hub_room = self._rooms.get(room)
        if hub_room is None:
            raise LookupError(f"room {room!r} does not exist")
        member = hub_room.members.get(identity)
        if member is None:
            raise LookupError(f"participant {identity!r} is not in room {room!r}")
        return member

    def _leave(self, lb_room: LoopbackRoom, reason: Reason) -> None:
        hub_room = self._rooms.get(lb_room._room_name)
        if hub_room is None:
            return
        identity = lb_room._lp().identity
        member = hub_room.members.get(identity)
        if member is None or member.room is not lb_room:
            return
        self._remove(hub_room, member, reason, notify_self=False)

    def _remove(
        self, hub_room: _HubRoom, member: _Member, reason: Reason, *, notify_self: bool
    ) -> None:
        identity = member.info.identity
        if hub_room.members.get(identity) is member:
            del hub_room.members[identity]
        self._fail_inbound_rpcs(member)
        for other in hub_room.members.values():
            self._post_participant_disconnected(other.room, identity, reason)
        if notify_self:
            member.room._server_disconnect(reason)
        self._update_counts(hub_room)

    def _fail_inbound_rpcs(self, member: _Member) -> None:
        for fut in list(member.inbound_rpcs):
            if not fut.done():
                fut.set_result(("", _rpc_error(rtc.RpcError.ErrorCode.RECIPIENT_DISCONNECTED)))
        member.inbound_rpcs.clear()

    def _update_counts(self, hub_room: _HubRoom) -> None:
        count = len(hub_room.members)
        for member in hub_room.members.values():
            member.room._info.num_participants = count

    def _post_participant_connected(
        self, lb_room: LoopbackRoom, info: proto_participant.ParticipantInfo
    ) -> None:
        snapshot = proto_participant.ParticipantInfo()
        snapshot.CopyFrom(info)

        def handle() -> None:
            remote = LoopbackRemoteParticipant(snapshot)
            lb_room._remote_participants[snapshot.identity] = remote
            lb_room.emit("participant_connected", remote)

        lb_room._post(handle)

    def _post_participant_disconnected(
        self, lb_room: LoopbackRoom, identity: str, reason: Reason
    ) -> None:
        def handle() -> None:
            remote = lb_room._remote_participants.pop(identity, None)
            if remote is None:
                return
            remote._info.disconnect_reason = reason
            remote._info.state = proto_participant.PARTICIPANT_STATE_DISCONNECTED
            lb_room.emit("participant_disconnected", remote)

        lb_room._post(handle)

    def _to_server_info(self, member: _Member) -> models.ParticipantInfo:
        info = member.info
        out = models.ParticipantInfo(
            sid=info.sid,
            identity=info.identity,
            name=info.name,
            metadata=info.metadata,
            state=models.ParticipantInfo.State.ACTIVE,
            joined_at=info.joined_at // 1000,
            joined_at_ms=info.joined_at,
            kind=_KIND_TO_SERVER.get(info.kind, models.ParticipantInfo.Kind.STANDARD),  # type: ignore[arg-type]
            is_publisher=bool(member.publications),
        )
        out.attributes.update(dict(info.attributes))
        out.permission.can_subscribe = info.permission.can_subscribe
        out.permission.can_publish = info.permission.can_publish
        out.permission.can_publish_data = info.permission.can_publish_data
        out.permission.can_update_metadata = info.permission.can_update_metadata
        out.permission.agent = info.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        for pub in member.publications.values():
            out.tracks.add(
                sid=pub.sid,
                name=pub.name,
                type=models.TrackType.AUDIO
                if pub.kind == rtc.TrackKind.KIND_AUDIO
                else models.TrackType.VIDEO,
                mime_type=pub.mime_type,
            )
        return out

    # -- internals: attributes / metadata / name ----------------------------------------
    def _participant_update(
        self,
        lb_room: LoopbackRoom,
        *,
        attributes: dict[str, str] | None,
        metadata: str | None,
        name: str | None,
    ) -> None:
        hub_room = self._rooms.get(lb_room._room_name)
        identity = lb_room._lp().identity
        member = hub_room.members.get(identity) if hub_room else None
        if hub_room is None or member is None or member.room is not lb_room:
            return  # not connected: the SDK's request fails silently
        if not member.info.permission.can_update_metadata:
            logger.warning(
                "%s has no can_update_metadata permission: update ignored by the server",
                identity,
            )
            return
        self._commit_update(hub_room, member, attributes=attributes, metadata=metadata, name=name)

    def _commit_update(
        self,
        hub_room: _HubRoom,
        member: _Member,
        *,
        attributes: dict[str, str] | None,
        metadata: str | None,
        name: str | None,
    ) -> None:
        info = member.info
        changed = _apply_attributes(info.attributes, attributes) if attributes else {}
        new_metadata = metadata if metadata is not None and metadata != info.metadata else None
        new_name = name if name is not None and name != info.name else None
        if new_metadata is not None:
            info.metadata = new_metadata
        if new_name is not None:
            info.name = new_name
        if not changed and new_metadata is None and new_name is None:
            return
        identity = info.identity
        all_attributes = dict(info.attributes)
        for other in hub_room.members.values():
            self._post_update(other.room, identity, changed, all_attributes, new_metadata, new_name)

    def _post_update(
        self,
        lb_room: LoopbackRoom,
        identity: str,
        changed: dict[str, str],
        all_attributes: dict[str, str],
        new_metadata: str | None,
        new_name: str | None,
    ) -> None:
        def handle() -> None:
            participant: rtc.Participant | None
            if lb_room._local_participant is not None and (
                lb_room._local_participant.identity == identity
            ):
                participant = lb_room._local_participant
            else:
                participant = lb_room._remote_participants.get(identity)
            if participant is None:
                return
            if new_metadata is not None:
                old = participant._info.metadata
                participant._info.metadata = new_metadata
                lb_room.emit("participant_metadata_changed", participant, old, new_metadata)
            if new_name is not None:
                old = participant._info.name
                participant._info.name = new_name
                lb_room.emit("participant_name_changed", participant, old, new_name)
            if changed:
                participant._info.attributes.clear()
                participant._info.attributes.update(all_attributes)
                lb_room.emit("participant_attributes_changed", dict(changed), participant)

        lb_room._post(handle)

    # -- internals: data -----------------------------------------------------------------
    def _deliver_data(
        self,
        room: str,
        *,
        sender: str | None,
        data: bytes,
        kind: proto_room.DataPacketKind.ValueType,
        destination_identities: list[str],
        topic: str,
    ) -> None:
        hub_room = self._rooms.get(room)
        if hub_room is None:
            return
        if sender is not None and sender not in hub_room.members:
            return  # the sender was removed: the server drops what it still sends
        for identity, member in hub_room.members.items():
            if identity == sender:
                continue
            if destination_identities and identity not in destination_identities:
                continue
            if self._data_filter is not None and not self._data_filter(
                sender, identity, data, topic
            ):
                continue
            self._post_data(member.room, sender, data, kind, topic)

    @staticmethod
    def _post_data(
        lb_room: LoopbackRoom,
        sender: str | None,
        data: bytes,
        kind: proto_room.DataPacketKind.ValueType,
        topic: str,
    ) -> None:
        def handle() -> None:
            participant = lb_room._remote_participants.get(sender) if sender else None
            lb_room.emit(
                "data_received",
                rtc.DataPacket(data=data, kind=kind, participant=participant, topic=topic),
            )

        lb_room._post(handle)

    def _deliver_dtmf(self, lb_room: LoopbackRoom, *, code: int, digit: str) -> None:
        hub_room = self._rooms.get(lb_room._room_name)
        if hub_room is None:
            return
        sender = lb_room._lp().identity
        for identity, member in hub_room.members.items():
            if identity == sender:
                continue
            target = member.room

            def handle(target: LoopbackRoom = target) -> None:
                participant = target._remote_participants.get(sender)
                target.emit(
                    "sip_dtmf_received",
                    rtc.SipDTMF(code=code, digit=digit, participant=participant),
                )

            target._post(handle)

    # -- internals: text streams ---------------------------------------------------------
    def _open_streams(
        self,
        lb_room: LoopbackRoom,
        info: rtc.TextStreamInfo | rtc.ByteStreamInfo,
        sender_identity: str,
        destinations: list[str] | None,
    ) -> list[LoopbackStreamReader]:
        hub_room = self._rooms.get(lb_room._room_name)
        if hub_room is None:
            return []
        own = lb_room._lp().identity
        readers: list[LoopbackStreamReader] = []
        for identity, member in hub_room.members.items():
            if identity == own or (destinations and identity not in destinations):
                continue
            reader: LoopbackStreamReader
            if isinstance(info, rtc.TextStreamInfo):
                reader = LoopbackTextStreamReader(
                    dataclasses.replace(
                        info,
                        attributes=dict(info.attributes or {}),
                        attachments=list(info.attachments),
                    )
                )
            else:
                reader = LoopbackByteStreamReader(
                    dataclasses.replace(info, attributes=dict(info.attributes or {}))
                )
            readers.append(reader)
            self._post_stream_opened(member.room, reader, sender_identity)
        return readers

    @staticmethod
    def _post_stream_opened(
        target: LoopbackRoom, reader: LoopbackStreamReader, sender_identity: str
    ) -> None:
        def handle() -> None:
            topic = reader.info.topic
            if isinstance(reader, LoopbackTextStreamReader):
                text_handler = target._text_stream_handlers.get(topic)
                if text_handler is not None:
                    target._lb_readers.add(reader)
                    text_handler(reader, sender_identity)
                    return
            else:
                byte_handler = target._byte_stream_handlers.get(topic)
                if byte_handler is not None:
                    target._lb_readers.add(reader)
                    byte_handler(reader, sender_identity)
                    return
            logger.debug("no stream handler for topic %r in %r", topic, target)

        target._post(handle)

    # -- internals: tracks ---------------------------------------------------------------
    @staticmethod
    def _remote_publication(info: proto_track.TrackPublicationInfo) -> rtc.RemoteTrackPublication:
        owned = proto_track.OwnedTrackPublication()
        owned.info.CopyFrom(info)
        owned.info.remote = True
        return rtc.RemoteTrackPublication(owned)

    def _track_published(
        self, lb_room: LoopbackRoom, publication: rtc.LocalTrackPublication
    ) -> None:
        hub_room = self._rooms.get(lb_room._room_name)
        if hub_room is None:
            return
        identity = lb_room._lp().identity
        member = hub_room.members[identity]
        pub_info = proto_track.TrackPublicationInfo()
        pub_info.CopyFrom(publication._info)
        member.publications[pub_info.sid] = pub_info

        def local() -> None:
            lb_room.emit("local_track_published", publication, publication.track)

        lb_room._post(local)
        others = [m for m in hub_room.members.values() if m is not member]
        for other in others:
            target = other.room

            def remote(target: LoopbackRoom = target) -> None:
                participant = target._remote_participants.get(identity)
                if participant is None:
                    return
                remote_pub = self._remote_publication(pub_info)
                participant._track_publications[pub_info.sid] = remote_pub
                target.emit("track_published", remote_pub, participant)

            target._post(remote)
        if others:
            self._mark_subscribed(lb_room, pub_info.sid)

    @staticmethod
    def _mark_subscribed(lb_room: LoopbackRoom, track_sid: str) -> None:
        def handle() -> None:
            publication = lb_room._lp()._track_publications.get(track_sid)
            if publication is None or publication._first_subscription.done():
                return
            publication._first_subscription.set_result(None)
            lb_room.emit("local_track_subscribed", publication.track)

        lb_room._post(handle)

    def _track_unpublished(
        self, lb_room: LoopbackRoom, publication: rtc.LocalTrackPublication
    ) -> None:
        hub_room = self._rooms.get(lb_room._room_name)
        if hub_room is None:
            return
        identity = lb_room._lp().identity
        member = hub_room.members.get(identity)
        if member is None:
            return
        member.publications.pop(publication.sid, None)
        lb_room._post(lambda: lb_room.emit("local_track_unpublished", publication))
        for other in hub_room.members.values():
            if other is member:
                continue
            target = other.room

            def remote(target: LoopbackRoom = target) -> None:
                participant = target._remote_participants.get(identity)
                if participant is None:
                    return
                remote_pub = participant._track_publications.pop(publication.sid, None)
                if remote_pub is not None:
                    target.emit("track_unpublished", remote_pub, participant)

            target._post(remote)

    # -- internals: RPC ------------------------------------------------------------------
    async def _perform_rpc(self, caller_room: LoopbackRoom, call: rtc.RpcCallInfo) -> str:
        limit = self.rpc_payload_limit
        if limit is not None and len(call.payload.encode("utf-8")) > limit:
            raise _rpc_error(rtc.RpcError.ErrorCode.REQUEST_PAYLOAD_TOO_LARGE)
        if not caller_room.isconnected():
            raise _rpc_error(rtc.RpcError.ErrorCode.SEND_FAILED, "the room isn't connected")
        response_timeout = (
            call.response_timeout
            if call.response_timeout is not None
            else RPC_DEFAULT_RESPONSE_TIMEOUT
        )
        ack_timeout = (
            call.max_round_trip_latency
            if call.max_round_trip_latency is not None
            else self.rpc_ack_timeout
        )
        effective_timeout = max(response_timeout - ack_timeout, _RPC_MIN_EFFECTIVE_TIMEOUT)
        room = caller_room._room_name
        caller = caller_room._lp().identity
        hub_room = self._rooms.get(room)
        caller_member = hub_room.members.get(caller) if hub_room else None
        if caller_member is None or caller_member.room is not caller_room:
            raise _rpc_error(rtc.RpcError.ErrorCode.SEND_FAILED, "the room isn't connected")
        target = hub_room.members.get(call.destination_identity) if hub_room else None
        if target is None or call.destination_identity == caller:
            if self.missing_recipient == "not_found":
                raise _rpc_error(rtc.RpcError.ErrorCode.RECIPIENT_NOT_FOUND)
            await asyncio.sleep(ack_timeout)
            raise _rpc_error(rtc.RpcError.ErrorCode.CONNECTION_TIMEOUT)
        if (room, call.destination_identity) in self._dropped_rpc_targets or (
            2 * self.rpc_latency > ack_timeout
        ):
            await asyncio.sleep(ack_timeout)
            raise _rpc_error(rtc.RpcError.ErrorCode.CONNECTION_TIMEOUT)

        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[str, rtc.RpcError | None]] = loop.create_future()
        target.inbound_rpcs.add(answer)
        request_id = str(uuid.uuid4())
        latency = self.rpc_latency

        async def deliver() -> None:
            if latency:
                await asyncio.sleep(latency)
            target_room = target.room
            if not target_room._joined or answer.done():
                return
            lp = target_room._lp()
            task = loop.create_task(
                lp._handle_loopback_invocation(
                    request_id=request_id,
                    caller_identity=caller,
                    method=call.method,
                    payload=call.payload,
                    response_timeout=effective_timeout,
                )
            )
            target_room._rpc_invocation_tasks.add(task)
            task.add_done_callback(target_room._rpc_invocation_tasks.discard)
            try:
                result = await task
            except asyncio.CancelledError:
                result = ("", _rpc_error(rtc.RpcError.ErrorCode.RECIPIENT_DISCONNECTED))
            if latency:
                await asyncio.sleep(latency)
            if not answer.done():
                answer.set_result(result)

        delivery = loop.create_task(deliver())
        try:
            payload, error = await asyncio.wait_for(
                asyncio.shield(answer), timeout=response_timeout + 2 * latency
            )
        except asyncio.TimeoutError:
            raise _rpc_error(rtc.RpcError.ErrorCode.RESPONSE_TIMEOUT) from None
        finally:
            target.inbound_rpcs.discard(answer)
            if not delivery.done():
                # the caller stopped waiting; the handler keeps running to its own deadline
                delivery.add_done_callback(lambda t: t.cancelled() or t.exception())
        if error is not None:
            raise _over_the_wire(error)
        return payload
