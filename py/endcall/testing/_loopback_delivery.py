"""What the loopback hub carries between rooms: data packets, DTMF, data streams, tracks.

:class:`_Delivery` is the part of :class:`~endcall.testing.loopback.LoopbackServer` that fans
a participant's data packet (or the server API's), DTMF digits, the opening of a text or byte
stream, and the publishing of a track out to the other rooms of the sender's room, as events
each room handles in order (with the data filter of the fault injection applied to packets).
No media flows: a published track is announced and "subscribed", never carried.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from livekit import rtc
from livekit.rtc._proto import room_pb2 as proto_room
from livekit.rtc._proto import track_pb2 as proto_track

from endcall.testing._loopback_state import _HubState
from endcall.testing._streams import (
    LoopbackByteStreamReader,
    LoopbackStreamReader,
    LoopbackTextStreamReader,
)

if TYPE_CHECKING:
    from endcall.testing._loopback_room import LoopbackRoom

logger = logging.getLogger("endcall.testing.loopback")


class _Delivery(_HubState):
    """The hub's fan-out of data, DTMF, streams and tracks (a part of ``LoopbackServer``)."""

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
