"""The loopback's ``rtc.Room``: one connection of one participant to a loopback room.

:class:`LoopbackRoom` is what :meth:`LoopbackServer.connect
<endcall.testing.loopback.LoopbackServer.connect>` returns. The hub posts events to it;
the room's own dispatcher task runs them in order (so a room's view of the others changes
only when it handles the event, as with the real SDK), and it ends the connection when the
server or its user does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from livekit import rtc
from livekit.rtc._proto import participant_pb2 as proto_participant

from endcall.testing._loopback_participants import LoopbackLocalParticipant
from endcall.testing._loopback_state import Reason
from endcall.testing._streams import LoopbackStreamReader

if TYPE_CHECKING:
    from endcall.testing.loopback import LoopbackServer

__all__ = ["LoopbackRoom"]

logger = logging.getLogger("endcall.testing.loopback")

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
