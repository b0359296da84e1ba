"""The edge of ``endcall serve``: what uvicorn does not bound by itself, bounded.

:func:`edge_options` gives ``uvicorn.run``/``uvicorn.Config`` its HTTP protocol: uvicorn's h11
protocol (httptools has no limit on a request's head) with

- the request head (request line + headers) at most :data:`MAX_HEAD_BYTES`: more → 431 with a
  JSON error body, and the connection closed (h11's ``max_incomplete_event_size``);
- a connection closed when a whole request head has not come within ``idle_timeout`` seconds
  of its opening or of its previous answer, however slowly it trickles in (uvicorn's own
  keep-alive, 5 s, runs only between requests and restarts on every byte);
- an answer sent before its request's body was read (413, 408, a route that reads no body)
  ends the connection: at most :data:`LINGER_BYTES` more of that body are read and dropped, for
  at most :data:`LINGER_SECONDS`, so the client can read the answer before the close
  (uvicorn alone would read, and drop, the whole body however large);
- a malformed request answered with a JSON 400 too, and garbage after an answer closing the
  connection quietly (uvicorn's h11 protocol would log a traceback: it tries a second answer);
- no WebSocket (the app has no WebSocket route).

Bodies are bounded by the app itself (:func:`endcall.server.intake.read_limited`: a size and a
deadline per route), under any server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["LINGER_BYTES", "LINGER_SECONDS", "MAX_HEAD_BYTES", "edge_options", "edge_protocol"]

logger = logging.getLogger("endcall.server")

MAX_HEAD_BYTES = 64 * 1024
"""Largest request line + headers (a LiveKit token of some KiB, cookies) before 431."""
LINGER_BYTES = 64 * 1024
LINGER_SECONDS = 1.0


class EdgeH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head and a bounded drain of
    the bodies the app answered without reading; ``idle_timeout`` is set by
    :func:`edge_protocol`."""

    idle_timeout: ClassVar[float] = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._linger_left = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:
            self._linger_left -= len(data)
            if self._linger_left < 0:
                self._close("it kept sending a body that was already answered")
                return
        super().data_received(data)
        if self._linger is not None and self.conn.their_state is not h11.SEND_BODY:
            self._close("the body it was answered before sending ended")
        elif self._head_deadline is not None and self.conn.their_state is not h11.IDLE:
            self._head_deadline.cancel()  # a whole request head came in time
            self._head_deadline = None

    def on_response_complete(self) -> None:
        unread = self.conn.their_state is h11.SEND_BODY
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if unread:
            self._linger_left = LINGER_BYTES
            self._linger = self.loop.call_later(
                LINGER_SECONDS, self._close, "it was answered before its body was read"
            )
        elif self.conn.their_state is h11.IDLE:
            self._await_head()

    def send_400_response(self, msg: str) -> None:
        """A malformed request, or a head over :data:`MAX_HEAD_BYTES` (431); JSON like every
        other error of the server, then the connection is closed."""
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            # garbage in a body already answered (h11 would refuse a second answer): just close
            self._close("it sent a malformed body after its answer")
            return
        if len(self.conn.trailing_data[0]) > MAX_HEAD_BYTES:
            status, code = 431, "headers_too_large"
            message = f"the request line and headers are over {MAX_HEAD_BYTES} bytes"
        else:
            status, code, message = 400, "bad_request", "invalid HTTP request"
        body = json.dumps({"code": code, "message": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        response = h11.Response(
            status_code=status, headers=headers, reason=HTTPStatus(status).phrase.encode()
        )
        for event in (response, h11.Data(data=body)):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def _await_head(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        self._head_deadline = self.loop.call_later(self.idle_timeout, self._head_too_late)

    def _head_too_late(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE:
            self._close(f"no whole request head came within {self.idle_timeout:g} s")

    def _close(self, why: str) -> None:
        self._stop_timers()
        if not self.transport.is_closing():
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            logger.debug("closing the connection of %s: %s", client, why)
            self.transport.close()

    def _stop_timers(self) -> None:
        for timer in (self._head_deadline, self._linger):
            if timer is not None:
                timer.cancel()
        self._head_deadline = self._linger = None


def edge_protocol(idle_timeout: float) -> type[EdgeH11Protocol]:
    """:class:`EdgeH11Protocol` with this idle timeout (uvicorn instantiates the class)."""
    return type("EdgeH11Protocol", (EdgeH11Protocol,), {"idle_timeout": idle_timeout})


def edge_options(idle_timeout: float) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config``: the edge's protocol and limits."""
    return {
        "http": edge_protocol(idle_timeout),
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        "ws": "none",
    }
