"""`Signals`: what the room, the job and the session say about the end, as triggers.

- the agent disconnected from the room: `room-deleted` (tentative, `shutdown_grace`) when the
  room was deleted, else `agent-error`;
- the job shuts down (`endcall.agent.job_lifecycle`): `server-ended-call` when user code called
  `ctx.shutdown()`, the room's disconnect, `agent-error` when the job crashed, else
  `worker-shutdown` (tentative);
- the session closed: `agent-error` on an error, the customer leaving when RoomIO closed it
  for that (`participant_disconnected`), `worker-shutdown` when the job closed it, else
  `server-ended-call` (user code closed it); while a tentative end is held, the close is its
  consequence and decides nothing;
- the job's hooks run while the call is still active: `worker-shutdown` or
  `server-ended-call` (`job_ending`).

Once the call is no longer active they only add details to the record.
"""

from __future__ import annotations

from typing import Any

from livekit import rtc

from endcall.agent.call import Call
from endcall.agent.customer import Presence
from endcall.agent.decisions import Decisions
from endcall.agent.end_machine import EndState
from endcall.agent.job_lifecycle import JobShutdown
from endcall.protocol import EndReason

__all__ = ["Signals", "describe_error"]


class Signals:
    """Turns room, job and session events into triggers for `decisions`."""

    def __init__(self, call: Call, decisions: Decisions, presence: Presence) -> None:
        self._call = call
        self._decisions = decisions
        self._presence = presence

    def on_room_disconnected(self, reason: Any = None) -> None:
        call = self._call
        try:
            name = rtc.DisconnectReason.Name(reason or rtc.DisconnectReason.UNKNOWN_REASON)
        except Exception:
            name = str(reason)
        call.disconnect_reason = reason
        call.room_gone.set()
        if call.machine.state is not EndState.ACTIVE:
            return
        if reason == rtc.DisconnectReason.ROOM_DELETED:
            self._presence.system_end(EndReason.ROOM_DELETED.value, "server", "room", name)
        elif reason == rtc.DisconnectReason.ROOM_CLOSED or call.machine.held is not None:
            # the room closed behind the customer, or the connection ended while a tentative
            # end waited for its request: that end (else the customer's leaving) is the reason
            self._presence.room_closed(name)
        else:
            self._decisions.trigger(
                EndReason.AGENT_ERROR.value,
                "system",
                "room",
                error=f"the agent was disconnected from the room ({name})",
                disconnect_reason=name,
            )

    def on_job_shutdown(self, info: JobShutdown) -> None:
        call = self._call
        call.job_shutdown = info
        call.end_info.setdefault("job_shutdown_reason", info.reason)
        if call.machine.state is not EndState.ACTIVE:
            return
        if info.user_initiated:
            if not call.shutdown_requested:
                self._decisions.trigger(EndReason.SERVER_ENDED_CALL.value, "server", "job")
        elif info.room_disconnected:
            if call.machine.held is None:
                # (when one is held, the room's own event already said why; its grace decides)
                self.on_room_disconnected(None)
        elif info.crashed:
            self._decisions.trigger(
                EndReason.AGENT_ERROR.value, "system", "job", error="job crashed"
            )
        else:
            self._presence.system_end(EndReason.WORKER_SHUTDOWN.value, "system", "job", None)

    def on_session_close(self, ev: Any) -> None:
        call = self._call
        reason = getattr(ev, "reason", None)
        call.close_reason = str(getattr(reason, "value", reason))
        call.closed.set()
        if call.machine.state is not EndState.ACTIVE:
            error = getattr(ev, "error", None)
            if error is not None:
                call.machine.note(error=describe_error(error))
            return
        error = getattr(ev, "error", None)
        value = call.close_reason
        if value == "error" or error is not None:
            self._decisions.trigger(
                EndReason.AGENT_ERROR.value, "system", "session", error=describe_error(error)
            )
        elif call.machine.held is not None and value != "participant_disconnected":
            # a tentative end (the room deleted, the worker shutting down, the customer gone)
            # is waiting out its grace; this close is its consequence and decides nothing
            return
        elif value == "participant_disconnected":
            # RoomIO closed the session because the customer left: that is no end request,
            # and it may still come (the grace); the close itself decides nothing more
            self._presence.customer_left(self._presence.customer, "session", None)
        elif value == "job_shutdown" or (
            call.job_shutdown is not None and call.job_shutdown.from_worker
        ):
            self._presence.system_end(EndReason.WORKER_SHUTDOWN.value, "system", "session", None)
        else:
            # user code closed the session (session.shutdown()/aclose(), ctx.shutdown())
            self._decisions.trigger(EndReason.SERVER_ENDED_CALL.value, "server", "session")

    def job_ending(self) -> None:
        """The job's hooks run and nothing ended the call yet."""
        if self._call.machine.state is not EndState.ACTIVE:
            return
        info = self._call.job_shutdown
        if info is not None and info.from_worker:
            self._decisions.trigger(EndReason.WORKER_SHUTDOWN.value, "system", "job")
        else:
            self._decisions.trigger(EndReason.SERVER_ENDED_CALL.value, "server", "job")


def describe_error(error: Any) -> str | None:
    """A session error as `type: detail` (at most 1,000 characters)."""
    if error is None:
        return None
    inner = getattr(error, "error", None)
    kind = getattr(error, "type", None) or type(error).__name__
    detail = inner if inner is not None else error
    return f"{kind}: {detail}"[:1000]
