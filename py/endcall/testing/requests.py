"""`request_end(room, ...)`: send an end request to the agent from a test, as a browser would.

```python
ack = await request_end(customer_room, reason="customer-ended-call")
assert ack.status == "accepted"
```

`room` is the customer's connection (a `LoopbackRoom`, or a real `rtc.Room`); the agent is
found by kind (`PARTICIPANT_KIND_AGENT`) unless `agent_identity` is given. `via="rpc"` calls the
RPC method and returns its `end.ack`; `via="data"` sends the reliable data packet and waits for
the answer on `<method>.ack`. An `end.error` answer raises `ProtocolError` (its `code`, e.g.
`forbidden`); a transport failure raises `rtc.RpcError` (RPC) or `TimeoutError`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any, Literal

from livekit import rtc

from endcall.protocol import (
    DEFAULT_METHOD,
    DEFAULT_REASON,
    EndAck,
    EndRequest,
    ProtocolError,
    ack_topic,
    encode_request,
    parse_ack,
    parse_error,
)

__all__ = ["request_end"]


def _agent(room: Any, identity: str | None) -> str:
    if identity is not None:
        return identity
    for p in room.remote_participants.values():
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            return str(p.identity)
    raise LookupError("no agent in the room: pass agent_identity")


def _answer(text: str | bytes) -> EndAck:
    """The ack, or the `end.error` raised as `ProtocolError`."""
    try:
        return parse_ack(text)
    except ProtocolError:
        error = parse_error(text)  # raises ProtocolError itself when it is neither
        raise ProtocolError(error.code, error.message, request_id=error.id) from None


async def request_end(
    room: Any,
    *,
    reason: str = DEFAULT_REASON,
    via: Literal["rpc", "data"] = "rpc",
    agent_identity: str | None = None,
    request_id: str | None = None,
    meta: dict[str, Any] | None = None,
    method: str = DEFAULT_METHOD,
    timeout: float = 5.0,
) -> EndAck:
    """Send one `end.request` from `room`'s local participant; return the agent's `end.ack`."""
    request = EndRequest(
        id=request_id or "t_" + secrets.token_hex(6),
        reason=reason,
        initiator=room.local_participant.identity,
        sent_at=int(time.time() * 1000),
        meta=meta,
    )
    payload = encode_request(request)
    agent = _agent(room, agent_identity)
    if via == "rpc":
        try:
            answer = await room.local_participant.perform_rpc(
                destination_identity=agent, method=method, payload=payload, response_timeout=timeout
            )
        except rtc.RpcError as e:
            if e.data:
                return _answer(e.data)  # raises the agent's end.error
            raise
        return _answer(answer)
    if via != "data":
        raise ValueError(f"via must be 'rpc' or 'data', not {via!r}")
    fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def on_data(packet: rtc.DataPacket) -> None:
        if packet.topic == ack_topic(method) and not fut.done():
            fut.set_result(bytes(packet.data))

    room.on("data_received", on_data)
    try:
        await room.local_participant.publish_data(
            payload.encode(), reliable=True, destination_identities=[agent], topic=method
        )
        return _answer(await asyncio.wait_for(fut, timeout))
    finally:
        room.off("data_received", on_data)
