"""The server channel's end flow: deliver an end.request to the agent, wait for its ack, escalate.

1. ``ListParticipants``: find the agent (kind AGENT; one showing ``endcall.state`` first).
   A missing room → 200 ``already_ended``. An agent already ending or ended → its answer.
2. ``UpdateParticipant`` writes the request JSON, with the verified caller as ``initiator``, into
   the agent's ``endcall.request`` attribute (only the server API can write it: that is what
   proves server origin to the agent; no data packet is sent, the agent trusts none).
3. ``GetParticipant`` polls the agent's attributes (soon after the writes, then backing off up
   to ``poll_interval``) until ``endcall.request_id`` is the request's id, ``endcall.error``
   refuses it (→ 403 with the agent's verdict: the caller is not the customer, or ``allow``
   said no), or ``ack_timeout``.
4. No agent, no ack in time or the agent gone → escalation: ``DeleteRoom`` (202, acked by the
   server) or, with escalation ``none``, nothing more (202 ``escalated: "none"``). Never for a
   caller who is not the customer the agent names (``endcall.customer``): a forbidden caller
   never causes a room deletion (403).

``status`` is ``accepted`` when the agent's effective reason is this request's and it was not
already ending before; ``already_ending``/``already_ended`` otherwise (from ``endcall.state``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

from livekit.protocol import models

from endcall.protocol import (
    ATTR_CUSTOMER,
    ATTR_END_ID,
    ATTR_ERROR,
    ATTR_REASON,
    ATTR_REQUEST,
    ATTR_REQUEST_ID,
    ATTR_STATE,
    EndError,
    EndRequest,
    ProtocolError,
    encode_request,
    is_valid_id,
    is_valid_reason,
    parse_error,
)
from endcall.server.gateway import LiveKitUnavailable, NotFound, RoomGateway
from endcall.server.settings import Settings

__all__ = ["Answer", "EndFlow"]

_ENDING_STATES = ("ending", "ended")
_FIRST_POLL_DELAY = 0.002


@dataclass(frozen=True)
class Answer:
    """An HTTP answer of ``POST /v1/end``: status code and JSON body."""

    status_code: int
    body: dict[str, Any]


def _agent(participants: list[models.ParticipantInfo]) -> models.ParticipantInfo | None:
    agents = [
        p
        for p in participants
        if p.kind == models.ParticipantInfo.Kind.AGENT
        and p.state != models.ParticipantInfo.State.DISCONNECTED
    ]
    for p in agents:
        if ATTR_STATE in p.attributes:
            return p
    return agents[0] if agents else None


def _answered(attrs: dict[str, str], request_id: str) -> bool:
    """The agent answered ``request_id`` (and published its end_id: attribute updates of one
    ``set_attributes`` call arrive together, but an agent may split them)."""
    return attrs.get(ATTR_REQUEST_ID) == request_id and is_valid_id(attrs.get(ATTR_END_ID))


def _refusal(attrs: dict[str, str], request_id: str) -> EndError | None:
    """The agent's end.error for ``request_id`` in ``endcall.error``, if it refused it."""
    raw = attrs.get(ATTR_ERROR)
    if not raw:
        return None
    try:
        error = parse_error(raw)
    except ProtocolError:
        return None
    return error if error.id == request_id else None


def _forbidden(request: EndRequest, message: str) -> Answer:
    return Answer(403, {"code": "forbidden", "message": message[:1024], "id": request.id})


class EndFlow:
    def __init__(self, gateway: RoomGateway, settings: Settings) -> None:
        self._gateway = gateway
        self._settings = settings

    async def run(self, room: str, request: EndRequest, identity: str) -> Answer:
        """End ``room`` for ``identity`` (the verified caller). Raises ``LiveKitError``."""
        try:
            participants = await self._gateway.list_participants(room)
        except NotFound:
            return self._ended(request)
        agent = _agent(participants)
        if agent is None:
            return await self._escalate(room, request, room_seen=bool(participants))
        attrs = dict(agent.attributes)
        before = attrs.get(ATTR_STATE)
        if _answered(attrs, request.id):
            return self._acked(request, attrs, None)
        if before in _ENDING_STATES and is_valid_id(attrs.get(ATTR_END_ID)):
            return self._acked(request, attrs, before)

        sent = replace(request, initiator=identity)
        try:
            wrote = await self._gateway.set_attributes(
                room, agent.identity, {ATTR_REQUEST: encode_request(sent)}
            )
        except NotFound:
            return await self._give_up(room, request, identity, attrs)
        if isinstance(wrote, models.ParticipantInfo):
            attrs = dict(wrote.attributes)
            if _answered(attrs, request.id):
                return self._acked(request, attrs, before)

        seen = await self._poll(room, agent.identity, request.id)
        refused = None if seen is None else _refusal(seen, request.id)
        if refused is not None:
            return _forbidden(request, f"the agent refused: {refused.message}")
        if seen is not None and seen.get(ATTR_REQUEST_ID) == request.id:
            return self._acked(request, seen, before)
        if (
            seen is not None
            and seen.get(ATTR_STATE) in _ENDING_STATES
            and is_valid_id(seen.get(ATTR_END_ID))
        ):
            # the agent is ending for another reason and did not answer this id in time
            return self._acked(request, seen, seen.get(ATTR_STATE))
        return await self._give_up(room, request, identity, seen or attrs)

    async def _give_up(
        self, room: str, request: EndRequest, identity: str, attrs: dict[str, str]
    ) -> Answer:
        """The agent did not answer: escalate, but only for the customer it names."""
        customer = attrs.get(ATTR_CUSTOMER)
        if customer and customer != identity:
            return _forbidden(
                request, "the agent did not answer, and only its customer may end the call then"
            )
        return await self._escalate(room, request, room_seen=True)

    async def _poll(self, room: str, identity: str, request_id: str) -> dict[str, str] | None:
        """The agent's attributes once they carry ``request_id`` and an ``end_id``, else the
        last ones seen (None when the agent left or was never seen again)."""
        deadline = time.monotonic() + self._settings.ack_timeout
        delay = _FIRST_POLL_DELAY
        last: dict[str, str] | None = None
        unavailable: LiveKitUnavailable | None = None
        while True:
            try:
                info = await self._gateway.get_participant(room, identity)
            except NotFound:
                return None
            except LiveKitUnavailable as exc:
                unavailable = exc
            else:
                unavailable = None
                last = dict(info.attributes)
                if _answered(last, request_id) or _refusal(last, request_id) is not None:
                    return last
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if unavailable is not None and last is None:
                    raise unavailable
                return last
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, self._settings.poll_interval)

    def _acked(self, request: EndRequest, attrs: dict[str, str], before: str | None) -> Answer:
        state = attrs.get(ATTR_STATE)
        reason = attrs.get(ATTR_REASON)
        end_id = attrs.get(ATTR_END_ID)
        if before in _ENDING_STATES or (is_valid_reason(reason) and reason != request.reason):
            status = "already_ended" if state == "ended" else "already_ending"
        else:
            status = "accepted"
        return Answer(
            202,
            {
                "id": request.id,
                "status": status,
                "acked_by": "agent",
                "end_id": end_id if is_valid_id(end_id) else None,
                "reason": reason if is_valid_reason(reason) else request.reason,
            },
        )

    @staticmethod
    def _ended(request: EndRequest) -> Answer:
        return Answer(200, {"id": request.id, "status": "already_ended"})

    async def _escalate(self, room: str, request: EndRequest, *, room_seen: bool) -> Answer:
        if self._settings.escalation == "delete_room":
            try:
                await self._gateway.delete_room(room)
            except NotFound:
                return self._ended(request)
            escalated = "delete_room"
        else:
            if not room_seen and not await self._gateway.room_exists(room):
                return self._ended(request)
            escalated = "none"
        return Answer(
            202,
            {"id": request.id, "status": "accepted", "acked_by": "server", "escalated": escalated},
        )
