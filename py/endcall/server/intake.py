"""Reading and checking the body of ``POST /v1/end`` before anything else happens.

The body is an end.request (parsed with origin ``client``) plus ``room`` and, for
``navigator.sendBeacon`` which cannot set headers, ``token``. Content-Type ``application/json``
or ``text/plain`` (what ``sendBeacon`` sends for a string), UTF-8, at most 16 KiB. ``room`` and
``token`` are taken out before the rest is checked as an end.request, so the request itself keeps
the protocol's 15,360-byte limit.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, NoReturn

from starlette.requests import Request

from endcall.protocol import (
    MAX_IDENTITY_BYTES,
    EndRequest,
    ProtocolError,
    canonical_json,
    parse_request,
)
from endcall.server.errors import HttpError

__all__ = ["MAX_BODY_BYTES", "MAX_TOKEN_CHARS", "EndBody", "read_end_body"]

MAX_BODY_BYTES = 16 * 1024
MAX_TOKEN_CHARS = 8 * 1024
MAX_ROOM_BYTES = MAX_IDENTITY_BYTES
_MEDIA_TYPES = ("application/json", "text/plain")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class EndBody:
    request: EndRequest
    room: str
    token: str | None


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


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            _bad("invalid Content-Length")
        if size > MAX_BODY_BYTES:
            raise HttpError(413, f"the body is {size} bytes; the limit is {MAX_BODY_BYTES}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise HttpError(413, f"the body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _only_the_reason_is_forbidden(text: str) -> bool:
    """A well-formed request whose reason only the server side may send (issue: 403, not 400)."""
    try:
        parse_request(text, origin="server")
    except ProtocolError:
        return False
    return True


def parse_end_body(raw: bytes) -> EndBody:
    """Check a body; raises :class:`HttpError` 400 with the protocol's code when it is bad."""
    try:
        text = raw.decode("utf-8")
        obj: Any = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        _bad("the body nests too deeply")
    except (UnicodeDecodeError, ValueError) as exc:
        _bad(f"the body is not valid UTF-8 JSON: {exc}")
    if not isinstance(obj, dict):
        _bad("the body must be a JSON object")
    hint = obj.get("id") if isinstance(obj.get("id"), str) and len(obj["id"]) <= 64 else None
    room = obj.pop("room", None)
    token = obj.pop("token", None)
    text = canonical_json(obj)
    try:
        request = parse_request(text, origin="client")
    except ProtocolError as exc:
        if _only_the_reason_is_forbidden(text):
            raise HttpError(403, exc.message, code="forbidden", request_id=exc.request_id) from None
        raise HttpError(400, exc.message, code=exc.code, request_id=exc.request_id) from None
    except (ValueError, TypeError, RecursionError):
        _bad("the body is not a valid end.request", hint)
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


async def read_end_body(request: Request) -> EndBody:
    """Content type (415), size (413), then the body's content (400)."""
    check_content_type(request)
    return parse_end_body(await read_body(request))
