"""WebSocket bridge: browser participants in a :class:`LoopbackServer` room (a test double).

Each WebSocket connection is one participant. After a ``join`` message the bridge connects a
:class:`LoopbackRoom` for it and relays: the browser's requests (``perform_rpc``,
``publish_data``, ``set_attributes``, ``register_rpc``/``rpc_response``, ``leave``) go to the
hub through that room, and the room's events are pushed to the browser. The TypeScript side is
``LoopbackRoom`` in ``endcall/testing`` (``web/src/testing/loopbackRoom.ts``), which implements
the livekit-client ``Room`` subset the ``endcall`` package uses.

Wire format: one JSON object per text frame. Requests carry ``seq``; each gets exactly one
answer with the same ``seq``: ``{"op":"ok"}`` (plus fields) or
``{"op":"error","code","message","data"}``. ``code`` is an ``RpcError`` code for RPC failures
(``UNSUPPORTED_METHOD`` 1400, ``RECIPIENT_NOT_FOUND`` 1401, ``RESPONSE_TIMEOUT`` 1502, ...) and
0 for a bad bridge request.

Browser → bridge::

    {"op":"join","seq":1,"room":"r","identity":"c","kind":0,"name":"","attributes":{},
     "token":"<LiveKit JWT, required when the bridge has API credentials>"}
    {"op":"perform_rpc","seq":2,"destination":"agent","method":"m","payload":"…",
     "response_timeout_ms":8000}
    {"op":"publish_data","seq":3,"data_b64":"…","topic":"t","destinations":["agent"],
     "reliable":true}
    {"op":"set_attributes","seq":4,"attributes":{"k":"v"}}
    {"op":"register_rpc","seq":5,"method":"m"}       (then the bridge may send rpc_request)
    {"op":"rpc_response","id":"<rpc_request id>","payload":"…"}
        or {"op":"rpc_response","id":…,"error":{"code":1500,"message":"…","data":"…"}}
    {"op":"register_text_stream","seq":7,"topic":"lk.transcription"}   (then text_stream_*)
    {"op":"unregister_text_stream","seq":8,"topic":"lk.transcription"}
    {"op":"leave","seq":6}                            (CLIENT_INITIATED, like room.disconnect())

Bridge → browser (events, no ``seq``)::

    {"op":"participant_connected","participant":P}
    {"op":"participant_disconnected","identity":"…","reason":1,"reason_name":"CLIENT_INITIATED"}
    {"op":"attributes_changed","identity":"…","changed":{…},"attributes":{…}}
    {"op":"metadata_changed","identity":"…","metadata":"…"}
    {"op":"data_received","data_b64":"…","topic":"…","from":"identity" | null,"kind":…,
     "reliable":true}
    {"op":"text_stream_open","stream_id":"…","topic":"…","from":"identity","attributes":{…},
     "timestamp":…}
    {"op":"text_stream_chunk","stream_id":"…","text":"…"}
    {"op":"text_stream_close","stream_id":"…","error":null | "…","attributes":{…}}
    {"op":"rpc_request","id":"…","caller":"…","method":"…","payload":"…",
     "response_timeout_ms":…}
    {"op":"disconnected","reason":5,"reason_name":"ROOM_DELETED"}   (then the socket closes)

``P`` is ``{"sid","identity","name","metadata","kind","attributes"}``; ``kind`` and ``reason``
use the protobuf numbers livekit-client's ``ParticipantKind``/``DisconnectReason`` enums use.

A socket that closes without ``leave`` is treated as a vanished client: after
``abandon_after`` seconds the participant is dropped with ``SIGNAL_CLOSE`` (LiveKit likewise
waits for a reconnect before declaring the participant gone). This is a model of LiveKit for
tests and demos, not an SFU.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from livekit import api, rtc
from starlette.applications import Starlette
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from endcall.testing.loopback import LoopbackRoom, LoopbackServer

__all__ = ["BRIDGE_PATH", "LoopbackBridge", "bridge_app"]

logger = logging.getLogger("endcall.testing.bridge")

BRIDGE_PATH = "/loopback"
"""Default path of the bridge's WebSocket endpoint."""

_KIND_NAMES = {
    "standard": rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
    "ingress": rtc.ParticipantKind.PARTICIPANT_KIND_INGRESS,
    "egress": rtc.ParticipantKind.PARTICIPANT_KIND_EGRESS,
    "sip": rtc.ParticipantKind.PARTICIPANT_KIND_SIP,
    "agent": rtc.ParticipantKind.PARTICIPANT_KIND_AGENT,
}
_REASON_NAMES: dict[int, str] = {int(v): k for k, v in rtc.DisconnectReason.items()}
_MAX_FRAME = 64 * 1024


class BridgeRequestError(Exception):
    """A malformed bridge request (answered with ``code`` 0)."""


def _reason(reason: int) -> dict[str, Any]:
    return {"reason": int(reason), "reason_name": _REASON_NAMES.get(reason, "UNKNOWN_REASON")}


def _participant(p: rtc.Participant) -> dict[str, Any]:
    return {
        "sid": p.sid,
        "identity": p.identity,
        "name": p.name,
        "metadata": p.metadata,
        "kind": int(p.kind),
        "attributes": dict(p.attributes),
    }


def _str(msg: dict[str, Any], key: str, *, default: str | None = None) -> str:
    value = msg.get(key, default)
    if not isinstance(value, str):
        raise BridgeRequestError(f"{key!r} must be a string")
    return value


def _str_map(msg: dict[str, Any], key: str) -> dict[str, str]:
    value = msg.get(key) or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise BridgeRequestError(f"{key!r} must be an object of strings")
    return dict(value)


def _kind(value: object) -> int:
    if value is None:
        return rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
    if isinstance(value, bool):
        raise BridgeRequestError("'kind' must be a ParticipantKind number or name")
    if isinstance(value, int) and value in rtc.ParticipantKind.values():
        return value
    if isinstance(value, str) and value.lower() in _KIND_NAMES:
        return _KIND_NAMES[value.lower()]
    raise BridgeRequestError("'kind' must be a ParticipantKind number or name")


class _Session:
    """One browser participant: the socket, its LoopbackRoom and the pending RPCs."""

    def __init__(self, bridge: LoopbackBridge, ws: WebSocket) -> None:
        self.bridge = bridge
        self.ws = ws
        self.room: LoopbackRoom | None = None
        self.left = False
        self.closed = asyncio.Event()
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        self.pending_rpcs: dict[str, asyncio.Future[str]] = {}
        self.rpc_ids = itertools.count(1)

    # -- sending ----------------------------------------------------------------------------
    def push(self, msg: dict[str, Any]) -> None:
        if not self.closed.is_set():
            self.outbox.put_nowait(msg)

    async def writer(self) -> None:
        while True:
            msg = await self.outbox.get()
            if msg is None:
                return
            try:
                await self.ws.send_text(json.dumps(msg, separators=(",", ":")))
            except Exception:  # the socket is gone: the reader notices and cleans up
                return
            if msg.get("op") == "disconnected":
                with contextlib.suppress(Exception):
                    await self.ws.close(code=1000)
                return

    def spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- room events ------------------------------------------------------------------------
    def attach(self, room: LoopbackRoom) -> None:
        self.room = room

        @room.on("participant_connected")
        def _connected(p: rtc.RemoteParticipant) -> None:
            self.push({"op": "participant_connected", "participant": _participant(p)})

        @room.on("participant_disconnected")
        def _disconnected(p: rtc.RemoteParticipant) -> None:
            self.push(
                {
                    "op": "participant_disconnected",
                    "identity": p.identity,
                    **_reason(p.disconnect_reason or 0),
                }
            )

        @room.on("participant_attributes_changed")
        def _attributes(changed: dict[str, str], p: rtc.Participant) -> None:
            self.push(
                {
                    "op": "attributes_changed",
                    "identity": p.identity,
                    "changed": dict(changed),
                    "attributes": dict(p.attributes),
                }
            )

        @room.on("participant_metadata_changed")
        def _metadata(p: rtc.Participant, old: str, new: str) -> None:
            self.push({"op": "metadata_changed", "identity": p.identity, "metadata": new})

        @room.on("data_received")
        def _data(packet: rtc.DataPacket) -> None:
            self.push(
                {
                    "op": "data_received",
                    "data_b64": base64.b64encode(packet.data).decode(),
                    "topic": packet.topic or "",
                    "from": packet.participant.identity if packet.participant else None,
                    "kind": int(packet.kind),
                    "reliable": packet.kind == rtc.DataPacketKind.KIND_RELIABLE,
                }
            )

        @room.on("disconnected")
        def _gone(reason: int) -> None:
            if not self.left:
                self.push({"op": "disconnected", **_reason(reason)})
            self.left = True

    # -- requests ---------------------------------------------------------------------------
    async def join(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.room is not None:
            raise BridgeRequestError("already joined")
        room_name = _str(msg, "room")
        identity = _str(msg, "identity")
        name = _str(msg, "name", default="")
        attributes = _str_map(msg, "attributes")
        kind = _kind(msg.get("kind"))
        token = msg.get("token")
        verifier = self.bridge.token_verifier
        if verifier is not None:
            if not isinstance(token, str):
                raise BridgeRequestError("a token is required")
            try:
                claims = verifier.verify(token)
            except Exception as e:
                raise BridgeRequestError(f"invalid token: {e}") from e
            grant = claims.video
            if grant is None or not grant.room_join or grant.room != room_name:
                raise BridgeRequestError("the token does not grant joining this room")
            identity = claims.identity
            name = claims.name or name
            attributes = {**attributes, **(claims.attributes or {})}
            if claims.kind:
                kind = _kind(claims.kind)
        if not room_name or not identity:
            raise BridgeRequestError("'room' and 'identity' must not be empty")
        room = await self.bridge.hub.connect(
            room_name,
            identity,
            kind=kind,  # type: ignore[arg-type]  # a checked ParticipantKind number
            attributes=attributes,
            name=name,
        )
        self.attach(room)
        local = room.local_participant
        return {
            "room": {"name": room.name, "sid": await room.sid},
            "local": _participant(local),
            "participants": [_participant(p) for p in room.remote_participants.values()],
        }

    def _joined(self) -> LoopbackRoom:
        if self.room is None:
            raise BridgeRequestError("join first")
        if not self.room.isconnected():
            raise BridgeRequestError("not connected")
        return self.room

    async def perform_rpc(self, msg: dict[str, Any]) -> dict[str, Any]:
        room = self._joined()
        timeout_ms = msg.get("response_timeout_ms", 10_000)
        if not isinstance(timeout_ms, int | float) or isinstance(timeout_ms, bool):
            raise BridgeRequestError("'response_timeout_ms' must be a number")
        payload = await room.local_participant.perform_rpc(
            destination_identity=_str(msg, "destination"),
            method=_str(msg, "method"),
            payload=_str(msg, "payload", default=""),
            response_timeout=float(timeout_ms) / 1000.0,
        )
        return {"payload": payload}

    async def publish_data(self, msg: dict[str, Any]) -> dict[str, Any]:
        room = self._joined()
        try:
            data = base64.b64decode(_str(msg, "data_b64"), validate=True)
        except (binascii.Error, ValueError) as e:
            raise BridgeRequestError("'data_b64' must be base64") from e
        destinations = msg.get("destinations") or []
        if not isinstance(destinations, list) or not all(isinstance(d, str) for d in destinations):
            raise BridgeRequestError("'destinations' must be a list of identities")
        await room.local_participant.publish_data(
            data,
            reliable=msg.get("reliable", True) is not False,
            destination_identities=destinations,
            topic=_str(msg, "topic", default=""),
        )
        return {}

    async def set_attributes(self, msg: dict[str, Any]) -> dict[str, Any]:
        room = self._joined()
        await room.local_participant.set_attributes(_str_map(msg, "attributes"))
        return {}

    async def register_rpc(self, msg: dict[str, Any]) -> dict[str, Any]:
        room = self._joined()
        method = _str(msg, "method")

        async def handler(data: rtc.RpcInvocationData) -> str:
            rpc_id = str(next(self.rpc_ids))
            fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self.pending_rpcs[rpc_id] = fut
            self.push(
                {
                    "op": "rpc_request",
                    "id": rpc_id,
                    "caller": data.caller_identity,
                    "method": data.method,
                    "payload": data.payload,
                    "response_timeout_ms": int(data.response_timeout * 1000),
                }
            )
            try:
                return await fut
            finally:
                self.pending_rpcs.pop(rpc_id, None)

        room.local_participant.register_rpc_method(method, handler)
        return {}

    def rpc_response(self, msg: dict[str, Any]) -> None:
        fut = self.pending_rpcs.get(str(msg.get("id")))
        if fut is None or fut.done():
            return
        error = msg.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            fut.set_exception(
                rtc.RpcError(
                    code if isinstance(code, int) else rtc.RpcError.ErrorCode.APPLICATION_ERROR,
                    str(error.get("message", "")),
                    error.get("data") if isinstance(error.get("data"), str) else None,
                )
            )
        else:
            payload = msg.get("payload", "")
            fut.set_result(payload if isinstance(payload, str) else "")

    async def register_text_stream(self, msg: dict[str, Any]) -> dict[str, Any]:
        room = self._joined()
        topic = _str(msg, "topic")

        def opened(reader: rtc.TextStreamReader, sender: str) -> None:
            self.spawn(self.forward_text_stream(reader, sender))

        try:
            room.register_text_stream_handler(topic, opened)
        except ValueError as e:
            raise BridgeRequestError(str(e)) from e
        return {}

    async def unregister_text_stream(self, msg: dict[str, Any]) -> dict[str, Any]:
        room = self._joined()
        room.unregister_text_stream_handler(_str(msg, "topic"))
        return {}

    async def forward_text_stream(self, reader: rtc.TextStreamReader, sender: str) -> None:
        """Relay an incoming text stream as ``text_stream_open``/``_chunk``/``_close``."""
        info = reader.info
        self.push(
            {
                "op": "text_stream_open",
                "stream_id": info.stream_id,
                "topic": info.topic,
                "from": sender,
                "attributes": dict(info.attributes or {}),
                "timestamp": info.timestamp,
            }
        )
        error: str | None = None
        try:
            async for chunk in reader:
                self.push({"op": "text_stream_chunk", "stream_id": info.stream_id, "text": chunk})
        except rtc.StreamError as e:
            error = e.description
        self.push(
            {
                "op": "text_stream_close",
                "stream_id": info.stream_id,
                "error": error,
                "attributes": dict(reader.info.attributes or {}),
            }
        )

    async def leave(self, msg: dict[str, Any]) -> dict[str, Any]:
        room = self._joined()
        self.left = True
        await room.disconnect(reason=rtc.DisconnectReason.CLIENT_INITIATED)
        return {}

    # -- dispatch ---------------------------------------------------------------------------
    async def answer(
        self, seq: object, handler: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]], msg: Any
    ) -> None:
        try:
            result = await handler(msg)
        except rtc.RpcError as e:
            self.push(
                {"op": "error", "seq": seq, "code": e.code, "message": e.message, "data": e.data}
            )
        except BridgeRequestError as e:
            self.push({"op": "error", "seq": seq, "code": 0, "message": str(e), "data": None})
        except Exception as e:
            logger.exception("bridge request %r failed", msg.get("op"))
            self.push({"op": "error", "seq": seq, "code": 0, "message": repr(e), "data": None})
        else:
            self.push({"op": "ok", "seq": seq, **result})

    async def dispatch(self, text: str) -> None:
        """Handle one frame. Requests run in arrival order, except ``perform_rpc`` and
        ``leave``, which run concurrently (an RPC may take seconds; ``leave`` waits for
        incoming RPCs whose answers arrive on this same socket)."""
        try:
            msg = json.loads(text)
        except ValueError:
            self.push({"op": "error", "seq": None, "code": 0, "message": "not JSON"})
            return
        if not isinstance(msg, dict):
            self.push({"op": "error", "seq": None, "code": 0, "message": "not an object"})
            return
        op = msg.get("op")
        if op == "rpc_response":
            self.rpc_response(msg)
            return
        handlers: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "join": self.join,
            "perform_rpc": self.perform_rpc,
            "publish_data": self.publish_data,
            "set_attributes": self.set_attributes,
            "register_rpc": self.register_rpc,
            "register_text_stream": self.register_text_stream,
            "unregister_text_stream": self.unregister_text_stream,
            "leave": self.leave,
        }
        handler = handlers.get(op) if isinstance(op, str) else None
        seq = msg.get("seq")
        if handler is None:
            self.push({"op": "error", "seq": seq, "code": 0, "message": f"unknown op {op!r}"})
        elif op in ("perform_rpc", "leave"):
            self.spawn(self.answer(seq, handler, msg))
        else:
            await self.answer(seq, handler, msg)

    async def finish(self) -> None:
        """The socket is closed: fail pending RPCs; drop the participant unless it left."""
        self.closed.set()
        self.outbox.put_nowait(None)
        for fut in self.pending_rpcs.values():
            if not fut.done():
                fut.set_exception(
                    rtc.RpcError(
                        rtc.RpcError.ErrorCode.RECIPIENT_DISCONNECTED,
                        rtc.RpcError.ErrorMessage[rtc.RpcError.ErrorCode.RECIPIENT_DISCONNECTED],
                    )
                )
        room = self.room
        if room is None or self.left or not room.isconnected():
            return
        # not awaited here: the socket's handler returns now, the drop happens later
        self.bridge._background(self._abandon(room))

    async def _abandon(self, room: LoopbackRoom) -> None:
        await asyncio.sleep(self.bridge.abandon_after)
        if self.left or not room.isconnected():
            return
        identity = room.local_participant.identity
        with contextlib.suppress(LookupError):
            await self.bridge.hub.drop_connection(
                room.name, identity, reason=rtc.DisconnectReason.SIGNAL_CLOSE
            )


class LoopbackBridge:
    """The bridge endpoint for one :class:`LoopbackServer`.

    ``token_verifier``: when given (a ``livekit.api.TokenVerifier``), ``join`` requires a
    LiveKit access token whose video grant allows joining the room; identity, name, kind and
    attributes then come from the token. ``abandon_after``: seconds a participant whose socket
    closed without ``leave`` stays in the room before it is dropped with ``SIGNAL_CLOSE``.
    """

    def __init__(
        self,
        hub: LoopbackServer,
        *,
        token_verifier: api.TokenVerifier | None = None,
        abandon_after: float = 2.0,
    ) -> None:
        self.hub = hub
        self.token_verifier = token_verifier
        self.abandon_after = abandon_after
        self._sessions: set[_Session] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def _background(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def connections(self) -> int:
        """Sockets currently open."""
        return len(self._sessions)

    async def endpoint(self, ws: WebSocket) -> None:
        """The Starlette WebSocket endpoint."""
        await ws.accept()
        session = _Session(self, ws)
        self._sessions.add(session)
        writer = asyncio.get_running_loop().create_task(session.writer())
        try:
            while True:
                text = await ws.receive_text()
                if len(text) > _MAX_FRAME:
                    session.push({"op": "error", "seq": None, "code": 0, "message": "too large"})
                    continue
                await session.dispatch(text)
        except WebSocketDisconnect:
            pass
        except RuntimeError:  # receive after the writer closed the socket
            pass
        finally:
            self._sessions.discard(session)
            await session.finish()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    def routes(self, path: str = BRIDGE_PATH) -> list[BaseRoute]:
        """Routes to mount in an existing Starlette app."""
        return [WebSocketRoute(path, self.endpoint)]


def bridge_app(
    hub: LoopbackServer,
    *,
    path: str = BRIDGE_PATH,
    token_verifier: api.TokenVerifier | None = None,
    abandon_after: float = 2.0,
) -> Starlette:
    """A Starlette app serving only the bridge endpoint at ``path``."""
    bridge = LoopbackBridge(hub, token_verifier=token_verifier, abandon_after=abandon_after)
    app = Starlette(routes=bridge.routes(path))
    app.state.bridge = bridge
    return app
