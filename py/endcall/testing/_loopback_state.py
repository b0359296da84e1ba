"""The loopback hub's bookkeeping: which rooms exist, who is in each, what each one publishes.

:class:`_HubState` declares the state :class:`~endcall.testing.loopback.LoopbackServer` keeps
(its ``__init__`` sets it), so the parts of the server that live in other modules
(``_loopback_members``, ``_loopback_delivery``, ``_loopback_rpc``) can be mixins over it.
Also here: the type aliases and the id generator every loopback module shares.

It depends on the SDK only; the other loopback modules import it, and it imports none of them
(but for type checking).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeAlias

from livekit import rtc
from livekit.rtc._proto import participant_pb2 as proto_participant
from livekit.rtc._proto import track_pb2 as proto_track

if TYPE_CHECKING:
    from endcall.testing._loopback_room import LoopbackRoom

__all__ = ["DataFilter", "Kind", "Reason"]

Kind: TypeAlias = proto_participant.ParticipantKind.ValueType
Reason: TypeAlias = proto_participant.DisconnectReason.ValueType

DataFilter = Callable[[str | None, str, bytes, str], bool]
"""``(sender_identity or None for the server, recipient_identity, data, topic) -> deliver?``"""

_sid_counter = itertools.count(1)


def _sid(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}{next(_sid_counter)}"


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


class _HubState:
    """What the hub knows (set by ``LoopbackServer.__init__``), and the lookup of a member."""

    rpc_latency: float
    rpc_payload_limit: int | None
    rpc_ack_timeout: float
    missing_recipient: Literal["not_found", "connection_timeout"]
    _rooms: dict[str, _HubRoom]
    _dropped_rpc_targets: set[tuple[str, str]]
    _data_filter: DataFilter | None
    _connections: list[LoopbackRoom]
    _background: set[asyncio.Task[None]]

    def _member(self, room: str, identity: str) -> _Member:
        hub_room = self._rooms.get(room)
        if hub_room is None:
            raise LookupError(f"room {room!r} does not exist")
        member = hub_room.members.get(identity)
        if member is None:
            raise LookupError(f"participant {identity!r} is not in room {room!r}")
        return member
