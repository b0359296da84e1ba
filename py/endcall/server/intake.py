"""Reading and checking the body of ``POST /v1/end`` before anything else happens.

The body is an end.request (parsed with origin ``client``) plus ``room`` and, for
``navigator.sendBeacon`` which cannot set headers, ``token``. Content-Type ``application/json``
or ``text/plain`` (what ``sendBeacon`` sends for a string), UTF-8, at most 16 KiB. The whole body
first obeys the protocol's JSON rules (:func:`endcall.protocol.validation.load_message`: an
object, at most 32 levels deep, finite numbers, no lone surrogate, no NaN), then ``room`` and
``token`` are taken out and the rest is checked as an end.request, so the request itself keeps
the protocol's 15,360-byte limit.

:func:`read_limited` is how every route reads a body: streamed, never more than its limit from
the client (413 at once for a larger Content-Length, or as soon as the stream passes the limit),
within a deadline (408); a client that goes away mid-body is one INFO line, not a traceback.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import NoReturn

import anyio
from starlette.requests import ClientDisconnect, Request

from endcall.protocol import (
    MAX_IDENTITY_BYTES,
    EndRequest,
    ProtocolError,
    canonical_json,
    parse_request,
)
from endcall.protocol.validation import load_message
from endcall.server.errors import HttpError

__all__ = [
    "DEFAULT_READ_TIMEOUT",
    "MAX_BODY_BYTES",
    "MAX_TOKEN_CHARS",
    "ClientGone",
    "EndBody",
    "read_end_body",
    "read_limited",
]

logger = logging.getLogger("endcall.server")

MAX_BODY_BYTES = 16 * 1024
MAX_TOKEN_CHARS = 8 * 1024
MAX_ROOM_BYTES = MAX_IDENTITY_BYTES
DEFAULT_READ_TIMEOUT = 30.0
"""Seconds a body may take to arrive (the app passes ``Settings.idle_timeout``)."""
_MEDIA_TYPES = ("application/json", "text/plain")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class EndBody:
    request: EndRequest
    room: str
    token: str | None


class ClientGone(HttpError):
    """The client closed the connection before its body was complete (nobody reads the
    answer; logged as one INFO line)."""


def _bad(message: str, request_id: str | None = None) -> NoReturn:
    raise HttpError(400, message, request_id=request_id)


def check_content_type(request: Request) -> None:
    header = request.headers.get("content-type", "")
    parts = [p.strip() for p in header.split(";")]
    media = parts[0].lower()
    if media not in _MEDIA_TYPES:
        raise HttpError(
            415,
            f"Content-Type must be application/json or text/plain, not {media or 'missing'!r}",
        )
    for param in parts[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise HttpError(415, "the body must be UTF-8")


async def read_limited(
    request: Request, limit: int, *, time_limit: float = DEFAULT_READ_TIMEOUT
) -> bytes:
    """The body, of which at most ``limit`` bytes are ever read: a Content-Length over the limit
    is refused before a byte is read and a stream is cut as soon as it passes the limit (413);
    a body not complete within ``time_limit`` seconds gets 408."""
    declared = request.headers.get("content-length", "").strip()
    if declared:
        if not (declared.isascii() and declared.isdigit()):
            _bad("invalid Content-Length")
        if len(declared) > 18 or int(declared) > limit:
            raise HttpError(413, f"the body is {declared[:24]} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    total = 0
    try:
        with anyio.fail_after(time_limit):
            async for chunk in request.stream():
                total += len(chunk)
                if total > limit:
                    raise HttpError(413, f"the body exceeds {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise HttpError(
            408, f"the body did not arrive within {time_limit:g} s ({total} bytes came)"
        ) from None
    except ClientDisconnect:
        logger.info(
            "client %s went away after %d bytes of its body (%s %s)",
            request.client.host if request.client else "unknown",
            total,
            request.method,
            request.url.path,
        )
        raise ClientGone(400, "the client went away before its body was complete") from None
    return b"".join(chunks)


def _only_the_reason_is_forbidden(text: str) -> bool:
    """A well-formed request whose reason only the server side may send (issue: 403, not 400)."""
    try:
        parse_request(text, origin="server")
    except ProtocolError:
        return False
    return True


def parse_end_body(raw: bytes) -> EndBody:
    """Check a body; raises :class:`HttpError` 400 with the protocol's code when it is bad (403
    for a reason only the server side may send), and nothing else, whatever the bytes."""
    try:
        obj = load_message(raw, MAX_BODY_BYTES)
    except ProtocolError as exc:
        _bad(exc.message.replace("message", "the body", 1))
    room = obj.pop("room", None)
    token = obj.pop("token", None)
    text = canonical_json(obj)  # cannot fail: load_message bounded the depth, kept it finite
    try:
        request = parse_request(text, origin="client")
    except ProtocolError as exc:
        if _only_the_reason_is_forbidden(text):
            raise HttpError(403, exc.message, code="forbidden", request_id=exc.request_id) from None
        raise HttpError(400, exc.message, code=exc.code, request_id=exc.request_id) from None
    if not isinstance(room, str) or not room:
        _bad("room must be a non-empty string", request.id)
    if len(room.encode("utf-8", "surrogatepass")) > MAX_ROOM_BYTES or _CONTROL_RE.search(room):
        _bad(f"room must be at most {MAX_ROOM_BYTES} bytes without control characters", request.id)
    try:
        room.encode("utf-8")
    except UnicodeEncodeError:
        _bad("room is not valid Unicode", request.id)
    if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS):
        _bad(f"token must be a string of at most {MAX_TOKEN_CHARS} characters", request.id)
    return EndBody(request=request, room=room, token=token or None)


async def read_end_body(request: Request, *, time_limit: float = DEFAULT_READ_TIMEOUT) -> EndBody:
    """Content type (415), size (413), time (408), then the body's content (400)."""
    check_content_type(request)
    return parse_end_body(await read_limited(request, MAX_BODY_BYTES, time_limit=time_limit))
