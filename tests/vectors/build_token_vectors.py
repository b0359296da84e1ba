"""Writes tests/vectors/tokens/end_token.json: the shared vectors of end tokens.

The tokens are built here with pyjwt from the claim layout of
``endcall.server.tokens.mint_end_token`` (HS256, ``{iss, aud, sub, room, iat, nbf, exp, jti}`` in
that order, ``exp = iat + max(1, round(ttl))``), with a fixed secret, a fixed ``now`` and fixed
``jti`` values; nothing here calls endcall. tests/protocol/test_end_token_vectors.py checks that
Python's real ``mint_end_token`` gives the same strings and that ``verify_token`` accepts and
refuses what the cases say; web/test/server.test.ts checks that the JavaScript ``mintEndToken``
gives the same strings byte for byte.

Two kinds of case:

- ``mint``: ``input`` (``room``, ``identity``, ``ttl`` in seconds, ``api_key``, ``api_secret``,
  ``now`` in Unix seconds, ``jti``) → ``expect.token`` (and its decoded ``expect.claims``);
- ``verify``: ``token`` verified for ``room`` with ``api_key``/``api_secret`` at Unix time
  ``now`` (leeway 60 s, the server's default) → ``expect`` ``{"ok": true, "identity", "room",
  "kind"}`` or ``{"ok": false, "reason": "invalid" | "forbidden"}`` (HTTP 401 / 403).

The file lives in a subdirectory because every ``tests/vectors/*.json`` is a protocol-codec
vector list (protocol.md §9) that both codec suites load.

Run ``python tests/vectors/build_token_vectors.py`` after editing a case and commit the JSON.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import jwt

OUT = Path(__file__).parent / "tokens" / "end_token.json"
API_KEY = "APIendcallVectors"
# 64 bytes: pyjwt warns about shorter HMAC keys (32 for HS256, 64 for the HS512 case)
API_SECRET = "endcall-vector-secret-0123456789abcdefghijklmnopqrstuvwxyz-ABCDE"
OTHER_SECRET = "another-secret-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKL"
NOW = 1764000000
JTI = "0f1e2d3c4b5a49788796a5b4c3d2e1f0"  # a UUID4's hex (version 4, variant 8)


def claims(
    room: str, identity: str, ttl: float, *, now: int = NOW, jti: str = JTI, api_key: str = API_KEY
) -> dict[str, Any]:
    """The claims, in mint_end_token's order."""
    return {
        "iss": api_key,
        "aud": "endcall",
        "sub": identity,
        "room": room,
        "iat": now,
        "nbf": now,
        "exp": now + max(1, round(ttl)),
        "jti": jti,
    }


def sign(payload: dict[str, Any], secret: str = API_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, secret, algorithm=algorithm)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_case(
    name: str, room: str, identity: str, ttl: float, *, now: int = NOW, jti: str = JTI
) -> dict[str, Any]:
    payload = claims(room, identity, ttl, now=now, jti=jti)
    return {
        "name": name,
        "kind": "mint",
        "input": {
            "room": room,
            "identity": identity,
            "ttl": ttl,
            "api_key": API_KEY,
            "api_secret": API_SECRET,
            "now": now,
            "jti": jti,
        },
        "expect": {"token": sign(payload), "claims": payload},
    }


def verify_case(
    name: str, token: str, expect: dict[str, Any], *, room: str = "interview-1", now: int = NOW
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "verify",
        "token": token,
        "room": room,
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "now": now,
        "expect": expect,
    }


def ok(
    identity: str = "candidate-42", room: str = "interview-1", kind: str = "end"
) -> dict[str, Any]:
    return {"ok": True, "identity": identity, "room": room, "kind": kind}


def refused(reason: str = "invalid") -> dict[str, Any]:
    return {"ok": False, "reason": reason}


def without(payload: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != key}


def build() -> list[dict[str, Any]]:
    mints = [
        mint_case("one hour", "interview-1", "candidate-42", 3600),
        mint_case("fractional ttl rounds", "interview-1", "candidate-42", 1800.4),
        mint_case("half rounds to even (down)", "interview-1", "candidate-42", 2.5),
        mint_case("half rounds to even (up)", "interview-1", "candidate-42", 3.5),
        mint_case("ttl under half a second is 1", "interview-1", "candidate-42", 0.3),
        mint_case("non-ascii identity and room", "салон-1", "José 👋", 600),
        mint_case(
            "quotes, backslash, controls, DEL", "room/with\\slash", 'a"b\\c\n\t\x01\x7fé', 60
        ),
        mint_case("long identity", "interview-1", "c" * 300, 900),
        mint_case("other now and jti", "r", "i", 30, now=1700000123, jti="a" * 32),
    ]
    base = claims("interview-1", "candidate-42", 3600)
    token = sign(base)
    exp = base["exp"]
    header = b64(b'{"alg":"HS256","typ":"JWT"}')
    tampered_payload = b64(
        json.dumps({**base, "sub": "someone-else"}, separators=(",", ":")).encode()
    )
    tampered = f"{header}.{tampered_payload}.{token.rsplit('.', 1)[1]}"
    none_header = b64(b'{"alg":"none","typ":"JWT"}')
    unsigned = f"{none_header}.{token.split('.')[1]}."
    # a correct HMAC over a header that says HS512: the algorithm is pinned, so refused
    hs512 = sign(base, algorithm="HS512")
    livekit = sign(
        {
            "iss": API_KEY,
            "sub": "candidate-42",
            "nbf": NOW,
            "exp": NOW + 3600,
            "video": {"roomJoin": True, "room": "interview-1"},
        }
    )
    mac = hmac.new(API_SECRET.encode(), f"{header}.x".encode(), hashlib.sha256).digest()
    verifies = [
        verify_case("a minted token", token, ok()),
        verify_case("inside the 60 s leeway after exp", token, ok(), now=exp + 59),
        verify_case("expired (past the leeway)", token, refused(), now=exp + 61),
        verify_case(
            "not yet valid (nbf beyond the leeway)",
            sign(claims("interview-1", "candidate-42", 3600, now=NOW + 120)),
            refused(),
        ),
        verify_case("another room", token, refused("forbidden"), room="interview-2"),
        verify_case("wrong secret", sign(base, OTHER_SECRET), refused()),
        verify_case("tampered payload", tampered, refused()),
        verify_case("alg none", unsigned, refused()),
        verify_case("HS512", hs512, refused()),
        verify_case("wrong audience", sign({**base, "aud": "livekit"}), refused()),
        verify_case("wrong issuer", sign({**base, "iss": "APIother"}), refused()),
        verify_case("no exp", sign(without(base, "exp")), refused()),
        verify_case("no sub", sign(without(base, "sub")), refused()),
        verify_case("empty room claim", sign({**base, "room": ""}), refused()),
        verify_case("no room claim", sign(without(base, "room")), refused()),
        verify_case("not a JWT", "abc", refused()),
        verify_case("a payload that is not JSON", f"{header}.x.{b64(mac)}", refused()),
        verify_case("empty", "", refused()),
        verify_case("a LiveKit access token", livekit, ok(kind="livekit")),
    ]
    verifies += [
        verify_case(
            f"mint: {case['name']}",
            case["expect"]["token"],
            ok(case["input"]["identity"], case["input"]["room"]),
            room=case["input"]["room"],
            now=case["input"]["now"],
        )
        for case in mints
    ]
    return mints + verifies


def main() -> None:
    OUT.parent.mkdir(exist_ok=True)
    cases = build()
    OUT.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
