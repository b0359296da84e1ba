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

Where the parts live (this module re-exports the public names):

- ``_loopback_participants``: :class:`LoopbackLocalParticipant` (the SDK's class with the FFI
  calls replaced by calls into the hub) and :class:`LoopbackRemoteParticipant`.
- ``_loopback_room``: :class:`LoopbackRoom` and its event dispatcher.
- here: :class:`LoopbackServer`'s public API (joining, the server API, fault injection);
  its internals are mixins over the hub's state (``_loopback_state``): membership and
  participant updates (``_loopback_members``), data / DTMF / streams / tracks
  (``_loopback_delivery``), RPC routing with the RPC limits (``_loopback_rpc``).
- ``_streams``: the data-stream readers and writers (the SDK only; imports none of these).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Literal

from livekit import rtc
from livekit.protocol import models
from livekit.rtc._proto import participant_pb2 as proto_participant
from livekit.rtc._proto import room_pb2 as proto_room

from endcall.testing._loopback_delivery import _Delivery
from endcall.testing._loopback_members import _Membership
from endcall.testing._loopback_participants import (
    LoopbackLocalParticipant,
    LoopbackRemoteParticipant,
)
from endcall.testing._loopback_room import _STOP, LoopbackRoom
from endcall.testing._loopback_rpc import (
    RPC_DEFAULT_RESPONSE_TIMEOUT,
    RPC_MAX_PAYLOAD_BYTES,
    RPC_MAX_ROUND_TRIP_LATENCY,
    _RpcRouting,
)
from endcall.testing._loopback_state import DataFilter, Kind, Reason, _HubRoom, _Member, _sid

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


class LoopbackServer(_Membership, _Delivery, _RpcRouting):
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
