"""`Presence`: who the customer is, their joins and leaves, and the graces that hold an end.

The customer is the participant RoomIO links the session to. When they leave without a
request (`customer-disconnected`), the end is tentative for `disconnect_grace` seconds: a tab
being closed sends LiveKit's leave *before* its `sendBeacon` end request reaches the agent
through the fallback server, and that request explains the end better. The room being deleted
and the worker shutting the job down are tentative for `shutdown_grace` seconds the same way,
when nothing else is held: the fallback server deletes the room *because* the agent did not
acknowledge a request in time, and that request is already on its way. A customer who dropped
without leaving (the session still running) and rejoins within the grace simply goes on.

The machine holds the tentative trigger (`EndMachine.hold`); an accepted trigger cancels the
grace (`cancel_grace`); when it runs out, the held trigger is submitted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from livekit import rtc

from endcall.agent.call import Call
from endcall.agent.end_machine import Channel, EndState, Trigger
from endcall.protocol import ATTR_CUSTOMER, EndReason, Initiator, InitiatorKind

__all__ = ["Presence"]

logger = logging.getLogger("endcall")


class Presence:
    """The customer's presence in the room, and the graces of tentative ends.

    `submit(trigger)` hands a trigger to the machine (it never raises).
    """

    def __init__(
        self,
        call: Call,
        submit: Callable[[Trigger], None],
        *,
        disconnect_grace: float,
        shutdown_grace: float,
    ) -> None:
        self._call = call
        self._submit = submit
        self.disconnect_grace = disconnect_grace
        self.shutdown_grace = shutdown_grace
        self._customer: str | None = None
        #: the customer identity last written to `endcall.customer`
        self._published: str | None = None
        self._grace_handle: asyncio.TimerHandle | None = None
        #: the held trigger is a room deletion / worker shutdown (not a customer leaving)
        self._holding_system_end = False
        #: set when no grace is running (it ran out, or was cancelled)
        self.settled = asyncio.Event()

    @property
    def customer(self) -> str | None:
        """The customer's identity, as last seen."""
        return self._customer

    @property
    def longest_grace(self) -> float:
        return max(self.disconnect_grace, self.shutdown_grace)

    def refresh(self) -> str | None:
        """Look up the participant RoomIO links the session to; the customer's identity."""
        try:
            linked = self._call.session.room_io.linked_participant
        except Exception:
            linked = None
        if linked is not None and linked.identity != self._published:
            self._customer = linked.identity
            if self._call.attrs is not None:
                # the fallback server refuses to escalate for anyone else (protocol.md §4)
                self._published = linked.identity
                self._call.set_attributes({ATTR_CUSTOMER: linked.identity})
        return self._customer

    def watch_link(self, every: float = 0.05) -> None:
        """Look again every ``every`` seconds until RoomIO has linked the session to its
        customer: one who joined before the agent gets no ``participant_connected`` event, and
        may close the tab within a second of being linked — their leave and their end request
        must find them named."""
        if self.refresh() is not None or self._call.machine.state is not EndState.ACTIVE:
            return
        asyncio.get_running_loop().call_later(every, self.watch_link, every)

    # ------------------------------------------------------------------ room events

    def on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        machine = self._call.machine
        held = machine.held
        if (
            held is not None
            and held.initiator.identity == participant.identity
            and not self._call.session_closing()
        ):
            # the customer dropped (no leave: RoomIO kept the session) and is back in time
            machine.take_held()
            self.cancel_grace()
            logger.info("endcall: the customer %s is back; the call goes on", participant.identity)
        # RoomIO links the customer in its own handler/task; look again a moment later
        loop = asyncio.get_running_loop()
        loop.call_soon(self.refresh)
        loop.call_later(0.05, self.refresh)

    def on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        customer = self._customer
        if customer is None or participant.identity != customer:
            self.refresh()
            return
        code = participant.disconnect_reason or rtc.DisconnectReason.UNKNOWN_REASON
        name = rtc.DisconnectReason.Name(code)
        if self._call.machine.state is not EndState.ACTIVE:
            self._call.machine.note(disconnect_reason=name)
            return
        if not self._close_on_disconnect():
            logger.info("endcall: the customer left (%s); close_on_disconnect=False", name)
            return
        if code == rtc.DisconnectReason.ROOM_DELETED:
            self.system_end(EndReason.ROOM_DELETED.value, "server", "room", name)
        else:
            self.customer_left(customer, "disconnect", name)

    def _close_on_disconnect(self) -> bool:
        try:
            return bool(self._call.session.room_io._options.close_on_disconnect)
        except Exception:
            return True

    # ------------------------------------------------------------------ tentative ends

    def customer_left(
        self, identity: str | None, channel: Channel, disconnect_reason: str | None
    ) -> None:
        """The customer left without a request: tentative for `disconnect_grace` seconds."""
        trigger = Trigger(
            reason=EndReason.CUSTOMER_DISCONNECTED.value,
            initiator=Initiator(kind="customer", identity=identity),
            channel=channel,
            disconnect_reason=disconnect_reason,
        )
        if self._tentative(trigger, self.disconnect_grace):
            logger.info(
                "endcall: the customer left (%s); waiting %.1fs for an end request explaining it",
                disconnect_reason or channel,
                self.disconnect_grace,
            )

    def system_end(
        self, reason: str, kind: InitiatorKind, channel: Channel, disconnect_reason: str | None
    ) -> None:
        """The room was deleted or the worker shuts the job down: tentative for
        `shutdown_grace` when nothing else is held, else at once (as any other trigger)."""
        trigger = Trigger(
            reason=reason,
            initiator=Initiator(kind=kind, identity=None),
            channel=channel,
            disconnect_reason=disconnect_reason,
        )
        if self._call.machine.held is not None and not self._holding_system_end:
            self._submit(trigger)  # it beats a customer leaving, as any other trigger
        elif self._tentative(trigger, self.shutdown_grace, system=True):
            logger.info(
                "endcall: %s; waiting %.1fs for an end request already on its way",
                reason,
                self.shutdown_grace,
            )

    def cancel_grace(self) -> None:
        if self._grace_handle is not None:
            self._grace_handle.cancel()
            self._grace_handle = None
        self._holding_system_end = False
        self.settled.set()

    def room_closed(self, disconnect_reason: str) -> None:
        """The server closed the room (``ROOM_CLOSED``: every customer had left, or none came):
        no request can reach us any more. A tentative end being held is accepted now;
        otherwise the customer is gone (livekit-server may close the room without the agent
        ever seeing the customer's ``participant_disconnected``)."""
        machine = self._call.machine
        held = machine.take_held()
        self.cancel_grace()
        if held is None:
            held = Trigger(
                reason=EndReason.CUSTOMER_DISCONNECTED.value,
                initiator=Initiator(kind="customer", identity=self.customer),
                channel="room",
                disconnect_reason=disconnect_reason,
            )
        if machine.state is EndState.ACTIVE:
            self._submit(held)

    def _tentative(self, trigger: Trigger, grace: float, *, system: bool = False) -> bool:
        """Hold ``trigger`` for ``grace`` seconds (an end request arriving meanwhile wins);
        True when it is now held. With no grace it is submitted at once."""
        if grace <= 0:
            self._submit(trigger)
            return False
        if not self._call.machine.hold(trigger):
            return False  # already holding one (its details were completed) or not active
        self._holding_system_end = system
        self.settled.clear()
        self._grace_handle = asyncio.get_running_loop().call_later(grace, self._grace_over)
        return True

    def _grace_over(self) -> None:
        self._grace_handle = None
        self._holding_system_end = False
        machine = self._call.machine
        held = machine.take_held()
        if held is not None and machine.state is EndState.ACTIVE:
            self._submit(held)
        self.settled.set()
