"""Who is in a loopback room, and what they say about themselves: the hub's membership part.

:class:`_Membership` is the part of :class:`~endcall.testing.loopback.LoopbackServer` that
removes members (and fails the RPC calls waiting on them), tells the other rooms who came and
went, keeps the participant counts, answers the server API's ``ParticipantInfo``, and commits
attribute / metadata / name updates (from the participant or the server API) and announces
them to every room.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from livekit import rtc
from livekit.protocol import models
from livekit.rtc._proto import participant_pb2 as proto_participant

from endcall.testing._loopback_participants import LoopbackRemoteParticipant
from endcall.testing._loopback_rpc import _rpc_error
from endcall.testing._loopback_state import Reason, _HubRoom, _HubState, _Member

if TYPE_CHECKING:
    from endcall.testing._loopback_room import LoopbackRoom

logger = logging.getLogger("endcall.testing.loopback")

_KIND_TO_SERVER: dict[int, int] = {
    rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD: models.ParticipantInfo.Kind.STANDARD,
    rtc.ParticipantKind.PARTICIPANT_KIND_INGRESS: models.ParticipantInfo.Kind.INGRESS,
    rtc.ParticipantKind.PARTICIPANT_KIND_EGRESS: models.ParticipantInfo.Kind.EGRESS,
    rtc.ParticipantKind.PARTICIPANT_KIND_SIP: models.ParticipantInfo.Kind.SIP,
    rtc.ParticipantKind.PARTICIPANT_KIND_AGENT: models.ParticipantInfo.Kind.AGENT,
    rtc.ParticipantKind.PARTICIPANT_KIND_CONNECTOR: models.ParticipantInfo.Kind.CONNECTOR,
    rtc.ParticipantKind.PARTICIPANT_KIND_BRIDGE: models.ParticipantInfo.Kind.BRIDGE,
}


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


class _Membership(_HubState):
    """The hub's membership and participant updates (a part of ``LoopbackServer``)."""

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
