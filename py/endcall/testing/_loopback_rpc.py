"""RPC on the loopback: the SDK's limits and error codes, and how the hub routes a call.

:class:`_RpcRouting` is the part of :class:`~endcall.testing.loopback.LoopbackServer` that
carries a ``perform_rpc`` from the caller's room to the recipient's local participant and its
answer back, with the SFU's ACK timeout, the fault injection (latency, dropped requests,
missing recipients) and the payload limit. The recipient side (the handler chain) is
``LoopbackLocalParticipant._handle_loopback_invocation``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

from livekit import rtc

from endcall.testing._loopback_state import _HubState

if TYPE_CHECKING:
    from endcall.testing._loopback_room import LoopbackRoom

__all__ = ["RPC_DEFAULT_RESPONSE_TIMEOUT", "RPC_MAX_PAYLOAD_BYTES", "RPC_MAX_ROUND_TRIP_LATENCY"]

RPC_MAX_PAYLOAD_BYTES = 15_360
"""Request and response payload limit in UTF-8 bytes (``MAX_PAYLOAD_BYTES`` in the SDKs)."""
RPC_MAX_ROUND_TRIP_LATENCY = 7.0
"""Seconds the caller waits for the recipient's ACK before ``CONNECTION_TIMEOUT``."""
RPC_DEFAULT_RESPONSE_TIMEOUT = 15.0
"""``perform_rpc`` default ``response_timeout`` (seconds) in the Rust SDK."""
_RPC_MIN_EFFECTIVE_TIMEOUT = 1.0


def _rpc_error(code: rtc.RpcError.ErrorCode, data: str | None = None) -> rtc.RpcError:
    return rtc.RpcError(code, rtc.RpcError.ErrorMessage[code], data)


def _over_the_wire(err: rtc.RpcError) -> rtc.RpcError:
    """A copy of ``err`` as the caller receives it (unset ``data`` arrives as "")."""
    return rtc.RpcError(err.code, err.message, err.data or "")


class _RpcRouting(_HubState):
    """The hub's RPC routing (a part of ``LoopbackServer``)."""

    async def _perform_rpc(self, caller_room: LoopbackRoom, call: rtc.RpcCallInfo) -> str:
        limit = self.rpc_payload_limit
        if limit is not None and len(call.payload.encode("utf-8")) > limit:
            raise _rpc_error(rtc.RpcError.ErrorCode.REQUEST_PAYLOAD_TOO_LARGE)
        if not caller_room.isconnected():
            raise _rpc_error(rtc.RpcError.ErrorCode.SEND_FAILED, "the room isn't connected")
        response_timeout = (
            call.response_timeout
            if call.response_timeout is not None
            else RPC_DEFAULT_RESPONSE_TIMEOUT
        )
        ack_timeout = (
            call.max_round_trip_latency
            if call.max_round_trip_latency is not None
            else self.rpc_ack_timeout
        )
        effective_timeout = max(response_timeout - ack_timeout, _RPC_MIN_EFFECTIVE_TIMEOUT)
        room = caller_room._room_name
        caller = caller_room._lp().identity
        hub_room = self._rooms.get(room)
        caller_member = hub_room.members.get(caller) if hub_room else None
        if caller_member is None or caller_member.room is not caller_room:
            raise _rpc_error(rtc.RpcError.ErrorCode.SEND_FAILED, "the room isn't connected")
        target = hub_room.members.get(call.destination_identity) if hub_room else None
        if target is None or call.destination_identity == caller:
            if self.missing_recipient == "not_found":
                raise _rpc_error(rtc.RpcError.ErrorCode.RECIPIENT_NOT_FOUND)
            await asyncio.sleep(ack_timeout)
            raise _rpc_error(rtc.RpcError.ErrorCode.CONNECTION_TIMEOUT)
        if (room, call.destination_identity) in self._dropped_rpc_targets or (
            2 * self.rpc_latency > ack_timeout
        ):
            await asyncio.sleep(ack_timeout)
            raise _rpc_error(rtc.RpcError.ErrorCode.CONNECTION_TIMEOUT)

        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[str, rtc.RpcError | None]] = loop.create_future()
        target.inbound_rpcs.add(answer)
        request_id = str(uuid.uuid4())
        latency = self.rpc_latency

        async def deliver() -> None:
            if latency:
                await asyncio.sleep(latency)
            target_room = target.room
            if not target_room._joined or answer.done():
                return
            lp = target_room._lp()
            task = loop.create_task(
                lp._handle_loopback_invocation(
                    request_id=request_id,
                    caller_identity=caller,
                    method=call.method,
                    payload=call.payload,
                    response_timeout=effective_timeout,
                )
            )
            target_room._rpc_invocation_tasks.add(task)
            task.add_done_callback(target_room._rpc_invocation_tasks.discard)
            try:
                result = await task
            except asyncio.CancelledError:
                result = ("", _rpc_error(rtc.RpcError.ErrorCode.RECIPIENT_DISCONNECTED))
            if latency:
                await asyncio.sleep(latency)
            if not answer.done():
                answer.set_result(result)

        delivery = loop.create_task(deliver())
        try:
            payload, error = await asyncio.wait_for(
                asyncio.shield(answer), timeout=response_timeout + 2 * latency
            )
        except asyncio.TimeoutError:
            raise _rpc_error(rtc.RpcError.ErrorCode.RESPONSE_TIMEOUT) from None
        finally:
            target.inbound_rpcs.discard(answer)
            if not delivery.done():
                # the caller stopped waiting; the handler keeps running to its own deadline
                delivery.add_done_callback(lambda t: t.cancelled() or t.exception())
        if error is not None:
            raise _over_the_wire(error)
        return payload
