"""The end state machine: one per session, `active` → `ending` → `ended`, pure (no I/O).

Every way a session can end (RPC, data, server channel, the LLM tool, `EndCall.end()`, the
timers, the customer leaving, the room being deleted, a worker shutdown, a session error, user
code closing the session) becomes a `Trigger` submitted to `EndMachine.submit`. The first one
accepted sets the reason; later ones get `already_ending` / `already_ended` acks and change
nothing. A request id always gets exactly the same ack back (idempotency), as long as it is
within the last `max_remembered` ids.

A trigger can also be *held* (`hold`): a tentative end, such as the customer leaving without a
request, that only counts if nothing else arrives within a grace window. While one is held
the machine stays `active`; any trigger submitted meanwhile is accepted as usual and replaces
it (keeping its LiveKit disconnect reason when the winner has none); `take_held()` hands it
back for submission once the grace is over.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Literal

from endcall.protocol import AckStatus, EndAck, Initiator, InitiatorKind, is_valid_id

__all__ = [
    "Channel",
    "EndMachine",
    "EndRecord",
    "EndState",
    "Trigger",
    "Verdict",
    "initiator_kind_for",
    "new_end_id",
    "new_request_id",
]

Channel = Literal[
    "rpc", "data", "server", "tool", "api", "timer", "disconnect", "room", "job", "session"
]
"""Where a trigger came from (`end.channel` in the report)."""


class EndState(str, Enum):
    """`endcall.state`: `active` → `ending` → `ended`."""

    ACTIVE = "active"
    ENDING = "ending"
    ENDED = "ended"

    def __str__(self) -> str:
        return self.value


def new_end_id() -> str:
    """A fresh `end_id` (`e_` + 16 URL-safe random characters: a valid protocol `ID`)."""
    return "e_" + secrets.token_urlsafe(12)


def new_request_id(prefix: str = "x") -> str:
    """An id for a trigger that has no request of its own (timers, the tool, `end()`)."""
    return f"{prefix}_" + secrets.token_urlsafe(9)


_KIND_BY_REASON: dict[str, InitiatorKind] = {
    "assistant-ended-call": "agent",
    "server-ended-call": "server",
    "room-deleted": "server",
}


def initiator_kind_for(reason: str) -> InitiatorKind:
    """The usual initiator kind of a reason (protocol.md §3)."""
    if reason.startswith("customer-"):
        return "customer"
    return _KIND_BY_REASON.get(reason, "system")


@dataclass(frozen=True)
class Trigger:
    """One attempt to end the session."""

    reason: str
    initiator: Initiator
    channel: Channel
    request_id: str | None = None
    meta: dict[str, Any] | None = None
    error: str | None = None
    """What went wrong, for `agent-error` (and transport failures)."""
    disconnect_reason: str | None = None
    """LiveKit's DisconnectReason name, when the trigger is a disconnect."""
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class EndRecord:
    """What `EndCall.record` exposes: how this session ended (or that it has not yet)."""

    end_id: str
    state: EndState
    drain_ms: int
    reason: str | None = None
    initiator: Initiator | None = None
    channel: Channel | None = None
    request_id: str | None = None
    meta: dict[str, Any] | None = None
    requested_at: float | None = None
    """When the accepted trigger happened (the request arrived, the timer fired…)."""
    acked_at: float | None = None
    ended_at: float | None = None
    """When the end path finished (report handed over, job shutdown requested)."""
    disconnect_reason: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    """The answer to one trigger: the ack, and whether this trigger started the end."""

    ack: EndAck
    accepted: bool
    replayed: bool = False
    """True when the ack is the remembered answer to a request id seen before."""


class EndMachine:
    """active → ending → ended; first accepted trigger wins; identical acks per request id."""

    def __init__(
        self,
        *,
        drain_ms: int,
        end_id: str | None = None,
        clock: Callable[[], float] = time.time,
        max_remembered: int = 4096,
    ) -> None:
        if end_id is not None and not is_valid_id(end_id):
            raise ValueError("end_id must be 1-64 characters of [A-Za-z0-9_-]")
        if drain_ms < 0:
            raise ValueError("drain_ms must be >= 0")
        self._clock = clock
        self._acks: OrderedDict[str, EndAck] = OrderedDict()
        self._max = max_remembered
        self._record = EndRecord(
            end_id=end_id or new_end_id(), state=EndState.ACTIVE, drain_ms=drain_ms
        )
        self._held: Trigger | None = None

    @property
    def record(self) -> EndRecord:
        return self._record

    @property
    def state(self) -> EndState:
        return self._record.state

    @property
    def end_id(self) -> str:
        return self._record.end_id

    @property
    def held(self) -> Trigger | None:
        """The tentative trigger being held, if any (the state is then still `active`)."""
        return self._held

    def hold(self, trigger: Trigger) -> bool:
        """Hold a tentative trigger instead of accepting it. True if it is now held; False
        when the machine is not `active` or another trigger is already held (then only the
        held trigger's unset `disconnect_reason` / `error` are filled from this one)."""
        if self._record.state is not EndState.ACTIVE:
            return False
        held = self._held
        if held is not None:
            self._held = replace(
                held,
                disconnect_reason=held.disconnect_reason or trigger.disconnect_reason,
                error=held.error or trigger.error,
            )
            return False
        self._held = trigger
        return True

    def take_held(self) -> Trigger | None:
        """Stop holding and return the held trigger (None if there is none: something else
        was accepted meanwhile, or nothing was held)."""
        held, self._held = self._held, None
        return held

    def submit(self, trigger: Trigger) -> Verdict:
        """Decide on a trigger. Never raises for a valid trigger; pure bookkeeping."""
        rid = trigger.request_id if trigger.request_id is not None else new_request_id()
        remembered = self._acks.get(rid)
        if remembered is not None:
            self._acks.move_to_end(rid)
            return Verdict(ack=remembered, accepted=False, replayed=True)
        rec = self._record
        status: AckStatus
        if rec.state is EndState.ACTIVE:
            now = self._clock()
            held, self._held = self._held, None
            if held is not None and trigger.disconnect_reason is None:
                trigger = replace(trigger, disconnect_reason=held.disconnect_reason)
            self._record = replace(
                rec,
                state=EndState.ENDING,
                reason=trigger.reason,
                initiator=trigger.initiator,
                channel=trigger.channel,
                request_id=trigger.request_id,
                meta=trigger.meta,
                requested_at=trigger.at,
                acked_at=now,
                disconnect_reason=trigger.disconnect_reason,
                error=trigger.error,
            )
            status = "accepted"
        elif rec.state is EndState.ENDING:
            status = "already_ending"
        else:
            status = "already_ended"
        reason = self._record.reason
        assert reason is not None
        ack = EndAck(
            id=rid,
            status=status,
            end_id=self._record.end_id,
            reason=reason,
            drain_ms=self._record.drain_ms,
        )
        self._remember(rid, ack)
        return Verdict(ack=ack, accepted=status == "accepted")

    def note(self, **changes: Any) -> None:
        """Add details learnt after acceptance (e.g. `disconnect_reason`, `error`) to the
        record; only fields that are still unset are filled."""
        rec = self._record
        fill = {k: v for k, v in changes.items() if getattr(rec, k) is None and v is not None}
        if fill:
            self._record = replace(rec, **fill)

    def finish(self) -> EndRecord:
        """ending → ended (idempotent). Requests from now on get `already_ended`."""
        if self._record.state is EndState.ENDING:
            self._record = replace(self._record, state=EndState.ENDED, ended_at=self._clock())
        return self._record

    def _remember(self, rid: str, ack: EndAck) -> None:
        self._acks[rid] = ack
        while len(self._acks) > self._max:
            self._acks.popitem(last=False)
