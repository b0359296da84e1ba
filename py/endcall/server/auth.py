"""Who is calling ``POST /v1/end``: the token from the header or the beacon body, verified.

``Authorization: Bearer <token>`` wins over the body's ``token``. Either a LiveKit access token
for the room or an end token (see :mod:`endcall.server.tokens`). No token, a malformed header or an
invalid token → 401; a valid token for another room, or a body ``initiator`` that is not the
token's identity → 403.
"""

from __future__ import annotations

from starlette.requests import Request

from endcall.protocol import EndRequest
from endcall.server.errors import HttpError
from endcall.server.settings import Settings
from endcall.server.tokens import TokenError, TokenPrincipal, verify_token

__all__ = ["authenticate"]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="endcall"'}


def bearer_token(request: Request, body_token: str | None) -> str:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise HttpError(401, "Authorization must be 'Bearer <token>'", headers=_CHALLENGE)
        return value.strip()
    if body_token:
        return body_token
    raise HttpError(401, "no token: send Authorization: Bearer <token>", headers=_CHALLENGE)


def authenticate(
    request: Request, settings: Settings, room: str, end: EndRequest, body_token: str | None
) -> TokenPrincipal:
    token = bearer_token(request, body_token)
    try:
        principal = verify_token(
            token,
            room=room,
            api_key=settings.api_key,
            api_secret=settings.api_secret,
            leeway=settings.token_leeway,
        )
    except TokenError as exc:
        if exc.reason == "forbidden":
            raise HttpError(403, exc.message, request_id=end.id) from None
        raise HttpError(401, exc.message, headers=_CHALLENGE, request_id=end.id) from None
    if end.initiator is not None and end.initiator != principal.identity:
        raise HttpError(403, "initiator is not the token's identity", request_id=end.id)
    return principal
