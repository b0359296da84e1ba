"""The three ways an `end.request` reaches the agent (protocol.md §4), behind one `decide`.

1. **RPC** method `<method>` (`local_participant.register_rpc_method`): the response is the
   `end.ack`; protocol errors are raised as `rtc.RpcError(4400|4403|4426|4500, message,
   data=end.error JSON)`.
2. **Data**: a reliable packet on topic `<method>` from a participant; the answer (`end.ack` or
   `end.error`) goes back on topic `<method>.ack`, addressed to the sender only.
3. **Server channel**: the `endcall.request` attribute written on the agent's own participant
   by the LiveKit server API (origin `server`: nothing but the server API can write it). The
   ack is the agent's attributes; a refusal is the end.error in `endcall.error`. A request
   made for a participant (a `customer-*` reason with an `initiator`: the fallback server's
   verified caller) gets the same customer / `allow` decision as over RPC and data.

A data packet whose sender the SDK does not name (`DataPacket.participant is None`) is *not*
the server: the SDK says None for server `SendData` and for any participant not (yet) in
`remote_participants` alike (a hidden one, or one the server has not announced yet). It is
ignored (logged, rate-limited); only the attribute proves server origin.

Acks wait for `before_ack` (EndCall: the accepted end being durable, `endcall.agent.durable_end`).
Requests from participants are parsed with origin `client`. Nothing here raises into the
room's event loop: every failure becomes a protocol error answer or a log line (rate-limited,
so a flood of garbage cannot flood the logs either).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

from livekit import rtc

from endcall.agent.end_machine import Channel
from endcall.agent.metrics import ACK_SECONDS, count_end
from endcall.protocol import (
    ATTR_REQUEST,
    EndAck,
    EndRequest,
    Origin,
    ProtocolError,
    ack_topic,
    encode_ack,
    encode_error,
    parse_request,
    rpc_code,
)

__all__ = ["Channels", "Decide"]

_MARK = "ENDCALLIDMARK"

logger = logging.getLogger("endcall")


class Decide(Protocol):
    """Authorize and submit one parsed request; return its ack or raise `ProtocolError`."""

    def __call__(
        self, request: EndRequest, *, origin: Origin, channel: Channel, caller: str | None
    ) -> EndAck: ...


class _LogLimiter:
    """At most `burst` log lines per `window` seconds; then one summary line."""

    def __init__(self, burst: int = 20, window: float = 10.0) -> None:
        self.burst, self.window = burst, window
        self.start, self.count, self.dropped = 0.0, 0, 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self.start > self.window:
            if self.dropped:
                logger.warning("endcall: %d more rejected end requests not logged", self.dropped)
            self.start, self.count, self.dropped = now, 0, 0
        self.count += 1
        if self.count <= self.burst:
            return True
        self.dropped += 1
        return False


class Channels:
    """Registers and unregisters the RPC method, the data topic and the server channel."""

    def __init__(
        self,
        room: rtc.Room,
        *,
        method: str,
        decide: Decide,
        before_ack: Callable[[], Awaitable[object]] | None = None,
        refuse: Callable[[str], None] | None = None,
    ) -> None:
        self._room = room
        self._before_ack = before_ack
        #: writes a refused server-channel request's end.error (`endcall.error`)
        self._refuse = refuse
        self._method = method
        self._topic = method
        self._ack_topic = ack_topic(method)
        self._decide = decide
        self._attached = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._limiter = _LogLimiter()
        self._last_attr_request: str | None = None
        self._templates: dict[tuple[object, ...], tuple[str, str]] = {}

    @property
    def method(self) -> str:
        return self._method

    def attach(self) -> None:
        if self._attached:
            return
        self._attached = True
        self._room.local_participant.register_rpc_method(self._method, self._on_rpc)
        self._room.on("data_received", self._on_data)
        self._room.on("participant_attributes_changed", self._on_attributes)
        # the fallback server may have written the request before we were listening
        current = self._room.local_participant.attributes.get(ATTR_REQUEST)
        if current:
            self._on_attr_request(current)

    def detach(self) -> None:
        if not self._attached:
            return
        self._attached = False
        try:
            self._room.local_participant.unregister_rpc_method(self._method)
        except Exception as e:  # the room may already be gone
            logger.debug("endcall: unregister_rpc_method failed: %s", e)
        self._room.off("data_received", self._on_data)
        self._room.off("participant_attributes_changed", self._on_attributes)

    async def aclose(self) -> None:
        self.detach()
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)

    # ------------------------------------------------------------------ decide

    def _answer(
        self, raw: str | bytes, *, origin: Origin, channel: Channel, caller: str | None
    ) -> EndAck | ProtocolError:
        try:
            request = parse_request(raw, origin=origin)
            return self._decide(request, origin=origin, channel=channel, caller=caller)
        except ProtocolError as e:
            count_end(channel, e.code)
            if self._limiter.allow():
                logger.warning(
                    "endcall: rejected end request over %s from %s: %s (request id %s)",
                    channel,
                    caller or "the server",
                    e,
                    e.request_id,
                )
            return e
        except Exception as e:  # never raise into the room
            count_end(channel, "internal")
            logger.exception("endcall: failed to handle an end request over %s", channel)
            return ProtocolError("internal", f"the agent failed: {type(e).__name__}")

    def _encode_ack(self, ack: EndAck) -> str:
        """`encode_ack(ack)`, from a template made by `encode_ack` itself: the acks of one
        session differ only by their request id (validated `[A-Za-z0-9_-]`, never escaped),
        so the JSON around it is encoded once per status."""
        key = (ack.status, ack.end_id, ack.reason, ack.drain_ms, ack.v)
        parts = self._templates.get(key)
        if parts is None:
            text = encode_ack(replace(ack, id=_MARK))
            head, sep, tail = text.partition(_MARK)
            if not sep or _MARK in tail:
                return encode_ack(ack)
            parts = self._templates[key] = (head, tail)
        return parts[0] + ack.id + parts[1]

    # ------------------------------------------------------------------ RPC

    async def _on_rpc(self, data: rtc.RpcInvocationData) -> str:
        started = time.monotonic()
        answer = self._answer(
            data.payload, origin="client", channel="rpc", caller=data.caller_identity
        )
        if isinstance(answer, ProtocolError):
            raise rtc.RpcError(rpc_code(answer.code), answer.message[:256], encode_error(answer))
        if self._before_ack is not None:
            await self._before_ack()
        ACK_SECONDS.labels("rpc").observe(time.monotonic() - started)
        return self._encode_ack(answer)

    # ------------------------------------------------------------------ data

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic != self._topic:
            return
        sender = packet.participant
        if sender is None:
            # the server API, or a participant the SDK does not know (yet): not provable,
            # so not trusted; the server channel is the attribute
            if self._limiter.allow():
                logger.warning(
                    "endcall: ignored an end request on %r from a sender the room does not name "
                    "(the server channel is the %s attribute)",
                    self._topic,
                    ATTR_REQUEST,
                )
            return
        answer = self._answer(packet.data, origin="client", channel="data", caller=sender.identity)
        try:
            body = self._encode_ack(answer) if isinstance(answer, EndAck) else encode_error(answer)
        except ProtocolError:
            return
        self._spawn(self._send_ack(body, sender.identity, time.monotonic()))

    async def _send_ack(self, body: str, identity: str, started: float) -> None:
        try:
            if self._before_ack is not None:
                await self._before_ack()
            await self._room.local_participant.publish_data(
                body, reliable=True, destination_identities=[identity], topic=self._ack_topic
            )
            ACK_SECONDS.labels("data").observe(time.monotonic() - started)
        except Exception as e:
            if self._limiter.allow():
                logger.warning("endcall: could not send the data ack to %s: %s", identity, e)

    # ------------------------------------------------------------------ server attribute

    def _on_attributes(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        if participant.identity != self._room.local_participant.identity:
            return
        value = changed.get(ATTR_REQUEST)
        if value:
            self._on_attr_request(value)

    def _on_attr_request(self, value: str) -> None:
        if value == self._last_attr_request:
            return
        self._last_attr_request = value
        answer = self._answer(value, origin="server", channel="server", caller=None)
        if isinstance(answer, ProtocolError) and answer.request_id and self._refuse is not None:
            try:
                self._refuse(encode_error(answer))
            except Exception:
                logger.exception("endcall: could not publish the refusal of %s", answer.request_id)

    # ------------------------------------------------------------------ tasks

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
