"""`Decisions`: every trigger goes to the end machine through here.

A channel's request is authorized (`allow`, or only the customer) and becomes a trigger; the
machine decides. An accepted trigger is logged, made durable (`endcall.agent.durable_end`: its acks
wait for that write), written to the agent attributes (`endcall.state=ending`, `reason`, `end_id`,
`request_id`, `report=pending`) and handed to `on_accepted` (which stops the timers and the
grace and starts the end path). A trigger the machine turns down still adds what it knows: the
customer's disconnect reason, the latest request id. `trigger_from_code` is `EndCall.end`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from livekit import rtc

from endcall.agent.call import Call
from endcall.agent.durable_end import DurableEnd
from endcall.agent.end_machine import Channel, EndState, Trigger, Verdict, initiator_kind_for
from endcall.agent.end_tool import GoodbyePlan
from endcall.agent.metrics import count_end
from endcall.protocol import (
    ATTR_END_ID,
    ATTR_REASON,
    ATTR_REPORT,
    ATTR_REQUEST_ID,
    ATTR_STATE,
    EndAck,
    EndRequest,
    Initiator,
    InitiatorKind,
    Origin,
    ProtocolError,
    is_valid_id,
    is_valid_reason,
)

__all__ = ["REQUEST_ID_COALESCE", "Allow", "Decisions", "trigger_from_code"]

logger = logging.getLogger("endcall")

Allow = Callable[[str, EndRequest], bool]
"""Custom authorization: `allow(caller_identity, request) -> bool` for RPC and data requests, and
for server-channel requests made for a participant (the fallback server's verified caller)."""

#: repeated requests update `endcall.request_id` at most this often (seconds)
REQUEST_ID_COALESCE = 0.02


class Decisions:
    """Submits triggers to `call.machine` and does what an accepted one needs at once.

    `customer()` names the customer (or None); `minimal_draft()` is the body of an outbox row
    that does not exist yet; `on_accepted(trigger, plan)` starts the end.
    """

    def __init__(
        self,
        call: Call,
        *,
        sink: Any,
        durable: DurableEnd,
        allow: Allow | None,
        customer: Callable[[], str | None],
        minimal_draft: Callable[[], bytes],
        on_accepted: Callable[[Trigger, GoodbyePlan | None], None],
    ) -> None:
        self._call = call
        self._sink = sink
        self._durable = durable
        self._allow = allow
        self._customer = customer
        self._minimal_draft = minimal_draft
        self._on_accepted = on_accepted

    def decide(
        self, request: EndRequest, *, origin: Origin, channel: Channel, caller: str | None
    ) -> EndAck:
        """A request from a channel (`Channels`' `decide`); raises `ProtocolError(forbidden)`."""
        if origin == "client":
            if caller is None or not self._authorized(caller, request):
                # the channel logs it with the caller's identity (rate-limited)
                raise ProtocolError(
                    "forbidden", "only the customer may end this call", request_id=request.id
                )
            who = Initiator(kind="customer", identity=caller)
        else:
            kind = initiator_kind_for(request.reason)
            if (
                kind == "customer"
                and request.initiator is not None
                and not self._authorized(request.initiator, request)
            ):
                # made for a participant (the fallback server's verified caller): the same
                # policy as over RPC and data
                raise ProtocolError(
                    "forbidden", "only the customer may end this call", request_id=request.id
                )
            who = Initiator(
                kind="customer" if kind == "customer" else "server", identity=request.initiator
            )
        trigger = Trigger(
            reason=request.reason,
            initiator=who,
            channel=channel,
            request_id=request.id,
            meta=request.meta,
        )
        return self.submit(trigger, None).ack

    def _authorized(self, caller: str, request: EndRequest) -> bool:
        if self._allow is not None:
            try:
                return bool(self._allow(caller, request))
            except Exception:
                logger.exception("endcall: the allow() policy raised; request refused")
                return False
        customer = self._customer()
        if customer is not None:
            return caller == customer
        p = self._call.ctx.room.remote_participants.get(caller)
        return p is not None and p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD

    def submit(self, trigger: Trigger, plan: GoodbyePlan | None) -> Verdict:
        call = self._call
        machine = call.machine
        verdict = machine.submit(trigger)
        ack = verdict.ack
        count_end(trigger.channel, ack.status)
        if verdict.accepted:
            rec = machine.record
            call.journal.ending(
                rec.reason, trigger.initiator.kind, trigger.channel, trigger.request_id
            )
            self._make_durable()
            call.set_attributes(
                {
                    ATTR_STATE: EndState.ENDING.value,
                    ATTR_REASON: ack.reason,
                    ATTR_END_ID: ack.end_id,
                    ATTR_REQUEST_ID: ack.id,
                    ATTR_REPORT: "pending",
                }
            )
            self._on_accepted(trigger, plan)
        else:
            if trigger.disconnect_reason:
                machine.note(disconnect_reason=trigger.disconnect_reason)
            if trigger.request_id is not None:
                call.set_attributes({ATTR_REQUEST_ID: ack.id}, coalesce=REQUEST_ID_COALESCE)
        return verdict

    def submit_safely(self, trigger: Trigger, plan: GoodbyePlan | None = None) -> None:
        try:
            self.submit(trigger, plan)
        except Exception:
            logger.exception("endcall: failed to submit %s", trigger.reason)

    def trigger(
        self,
        reason: str,
        kind: InitiatorKind,
        channel: Channel,
        *,
        identity: str | None = None,
        error: str | None = None,
        disconnect_reason: str | None = None,
        plan: GoodbyePlan | None = None,
    ) -> None:
        """Submit an end the agent itself noticed (never raises)."""
        try:
            self.submit(
                Trigger(
                    reason=reason,
                    initiator=Initiator(kind=kind, identity=identity),
                    channel=channel,
                    error=error,
                    disconnect_reason=disconnect_reason,
                ),
                plan,
            )
        except Exception:
            logger.exception("endcall: failed to submit %s", reason)

    def _make_durable(self) -> None:
        """Write the accepted end to the outbox now; its acks wait for it
        (`endcall.agent.durable_end`)."""
        self._durable.begin(self._sink, self._call.machine.record, self._minimal_draft)
        attrs = self._call.attrs
        if attrs is not None and self._durable.task is not None:
            attrs.hold_until(self._durable.task, self._durable.timeout)


def trigger_from_code(
    reason: str,
    *,
    initiator: Initiator | InitiatorKind | None,
    request_id: str | None,
    meta: dict[str, Any] | None,
) -> Trigger:
    """The trigger of `EndCall.end(...)`; raises `ValueError` for a bad reason or request id."""
    if not is_valid_reason(reason):
        raise ValueError(f"invalid reason {reason!r}")
    if request_id is not None and not is_valid_id(request_id):
        raise ValueError("request_id must be 1-64 characters of [A-Za-z0-9_-]")
    if initiator is None:
        who = Initiator(kind=initiator_kind_for(reason))
    elif isinstance(initiator, Initiator):
        who = initiator
    else:
        who = Initiator(kind=initiator)
    return Trigger(reason=reason, initiator=who, channel="api", request_id=request_id, meta=meta)
