"""Tokens the fallback server accepts: LiveKit access tokens and endcall end tokens.

A browser proves who it is to ``POST /v1/end`` with one of two HS256 JWTs signed with the
LiveKit API secret:

- the participant's own **LiveKit access token** (``iss`` = API key, a video grant with
  ``roomJoin`` for the room), verified with livekit-api's ``TokenVerifier``;
- an **end token** from :func:`mint_end_token` (``aud`` = ``endcall``), for apps whose LiveKit
  tokens expire before a long call ends. It grants nothing in LiveKit itself.

Algorithms are pinned to HS256 (``alg: none`` and every other algorithm are rejected), ``exp``
is required, ``nbf`` is honoured, and ``leeway`` seconds of clock skew are allowed. The token's
identity is the caller; nothing in a request body can override it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import jwt
from livekit.api import TokenVerifier

__all__ = [
    "DEFAULT_LEEWAY",
    "END_TOKEN_AUDIENCE",
    "TokenError",
    "TokenPrincipal",
    "mint_end_token",
    "verify_access_token",
    "verify_end_token",
    "verify_token",
]

END_TOKEN_AUDIENCE = "endcall"
DEFAULT_LEEWAY = 60.0
"""Seconds of clock skew allowed on ``exp``/``nbf`` (livekit-api's default too)."""
_ALGORITHMS = ["HS256"]


@dataclass(frozen=True)
class TokenPrincipal:
    """Who a verified token speaks for: ``identity`` in ``room``."""

    identity: str
    room: str
    kind: Literal["livekit", "end"]


class TokenError(Exception):
    """A token that is not accepted.

    ``reason`` is ``"invalid"`` (missing, malformed, bad signature, expired, not yet valid,
    wrong issuer or audience: HTTP 401) or ``"forbidden"`` (a valid token that does not
    grant this room: HTTP 403).
    """

    def __init__(self, reason: Literal["invalid", "forbidden"], message: str) -> None:
        super().__init__(message)
        self.reason: Literal["invalid", "forbidden"] = reason
        self.message = message


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def mint_end_token(
    room: str,
    identity: str,
    ttl: float | timedelta,
    *,
    api_key: str,
    api_secret: str,
) -> str:
    """An end token for ``identity`` in ``room``, valid for ``ttl`` (seconds or timedelta).

    Give it to the browser with its LiveKit token; the web client sends it to the fallback
    server (``Authorization: Bearer`` or the beacon body's ``token``). It is an HS256 JWT
    signed with the API secret: ``iss`` = API key, ``aud`` = ``endcall``, ``sub`` = identity,
    ``room``, ``iat``/``nbf``/``exp`` and a random ``jti``.
    """
    if not room:
        raise ValueError("room must not be empty")
    if not identity:
        raise ValueError("identity must not be empty")
    if not api_key or not api_secret:
        raise ValueError("api_key and api_secret must be set")
    lifetime = _seconds(ttl)
    if lifetime <= 0:
        raise ValueError("ttl must be positive")
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": api_key,
        "aud": END_TOKEN_AUDIENCE,
        "sub": identity,
        "room": room,
        "iat": now,
        "nbf": now,
        "exp": now + max(1, round(lifetime)),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, api_secret, algorithm="HS256")


class _AudiencePresent(TokenError):
    """A correctly signed token with an ``aud`` claim: not a LiveKit access token."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid", message)


def _invalid(message: str) -> TokenError:
    return TokenError("invalid", message)


def verify_end_token(
    token: str, *, api_key: str, api_secret: str, leeway: float = DEFAULT_LEEWAY
) -> TokenPrincipal:
    """Verify an end token; raises :class:`TokenError` (``invalid``) when it is not one."""
    try:
        claims = jwt.decode(
            token,
            key=api_secret,
            algorithms=_ALGORITHMS,
            audience=END_TOKEN_AUDIENCE,
            issuer=api_key,
            leeway=leeway,
            options={"require": ["exp", "sub", "aud", "iss"]},
        )
    except jwt.PyJWTError as exc:
        raise _invalid(f"invalid end token: {exc}") from None
    identity = claims.get("sub")
    room = claims.get("room")
    if not isinstance(identity, str) or not identity:
        raise _invalid("invalid end token: no identity")
    if not isinstance(room, str) or not room:
        raise _invalid("invalid end token: no room")
    return TokenPrincipal(identity=identity, room=room, kind="end")


def verify_access_token(
    token: str, *, api_key: str, api_secret: str, leeway: float = DEFAULT_LEEWAY
) -> TokenPrincipal:
    """Verify a LiveKit access token with livekit-api's ``TokenVerifier`` (HS256, ``iss`` =
    API key, ``exp`` required). Raises :class:`TokenError`: ``invalid`` for a bad token,
    ``forbidden`` when it has no ``roomJoin`` grant for a room."""
    verifier = TokenVerifier(api_key, api_secret, leeway=timedelta(seconds=leeway))
    try:
        claims = verifier.verify(token)
    except jwt.InvalidAudienceError:
        raise _AudiencePresent("invalid LiveKit token: it has an audience") from None
    except jwt.PyJWTError as exc:
        raise _invalid(f"invalid LiveKit token: {exc}") from None
    except Exception as exc:  # malformed grants: TokenVerifier builds dataclasses from them
        raise _invalid(f"invalid LiveKit token: malformed claims ({type(exc).__name__})") from None
    if not isinstance(claims.identity, str) or not claims.identity:
        raise _invalid("invalid LiveKit token: no identity")
    video = claims.video
    if video is None or video.room_join is not True or not isinstance(video.room, str):
        raise TokenError("forbidden", "the LiveKit token does not grant roomJoin")
    if not video.room:
        raise TokenError("forbidden", "the LiveKit token names no room")
    return TokenPrincipal(identity=claims.identity, room=video.room, kind="livekit")


def verify_token(
    token: str,
    *,
    room: str,
    api_key: str,
    api_secret: str,
    leeway: float = DEFAULT_LEEWAY,
) -> TokenPrincipal:
    """Verify either kind of token for ``room``.

    It is verified as a LiveKit access token first; a correctly signed one with an ``aud``
    claim is then verified as an end token (so a wrong audience is rejected). Raises
    :class:`TokenError`: ``invalid`` (401) or ``forbidden`` (403: valid, but for another room
    or without ``roomJoin``).
    """
    if not isinstance(token, str) or not token:
        raise _invalid("no token")
    try:
        principal = verify_access_token(
            token, api_key=api_key, api_secret=api_secret, leeway=leeway
        )
    except _AudiencePresent:
        # a validly signed token with an audience: only an end token may carry one
        principal = verify_end_token(token, api_key=api_key, api_secret=api_secret, leeway=leeway)
    if principal.room != room:
        raise TokenError("forbidden", "the token is for another room")
    return principal
