"""The shared end-token vectors (tests/vectors/tokens/end_token.json, written by
tests/vectors/build_token_vectors.py) against the server's own code: ``mint_end_token`` gives
every expected token byte for byte (at the case's ``now`` and ``jti``), and ``verify_token``
accepts and refuses each ``verify`` case as it says, at the case's ``now``. The JavaScript
``mintEndToken`` is held to the same tokens by web/test/server.test.ts."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt.api_jwt
import pytest

from endcall.server import tokens
from endcall.server.tokens import TokenError, mint_end_token, verify_token

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "tokens" / "end_token.json"
CASES: list[dict[str, Any]] = json.loads(VECTORS.read_text(encoding="utf-8"))


def cases(kind: str) -> list[Any]:
    return [pytest.param(c, id=c["name"]) for c in CASES if c["kind"] == kind]


def freeze(monkeypatch: pytest.MonkeyPatch, now: float) -> None:
    """pyjwt (and livekit-api's TokenVerifier through it) reads the clock here."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.fromtimestamp(now, tz=tz or timezone.utc)

    monkeypatch.setattr(jwt.api_jwt, "datetime", Frozen)


def test_both_kinds_are_there() -> None:
    assert len(cases("mint")) >= 8
    assert len(cases("verify")) >= 15
    assert {c["kind"] for c in CASES} == {"mint", "verify"}


@pytest.mark.parametrize("case", cases("mint"))
def test_mint_end_token_gives_the_expected_token(
    case: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    given = case["input"]
    monkeypatch.setattr(tokens, "time", SimpleNamespace(time=lambda: given["now"] + 0.75))
    monkeypatch.setattr(tokens, "uuid", SimpleNamespace(uuid4=lambda: uuid.UUID(hex=given["jti"])))
    token = mint_end_token(
        given["room"],
        given["identity"],
        given["ttl"],
        api_key=given["api_key"],
        api_secret=given["api_secret"],
    )
    assert token == case["expect"]["token"]
    claims = jwt.decode(
        token,
        given["api_secret"],
        algorithms=["HS256"],
        options={
            "verify_signature": True,
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_aud": False,
        },
    )
    assert list(claims) == list(case["expect"]["claims"])
    assert claims == case["expect"]["claims"]


@pytest.mark.parametrize("case", cases("verify"))
def test_verify_token_accepts_and_refuses_as_the_case_says(
    case: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    freeze(monkeypatch, case["now"])
    expect = case["expect"]
    verify = lambda: verify_token(  # noqa: E731
        case["token"], room=case["room"], api_key=case["api_key"], api_secret=case["api_secret"]
    )
    if expect["ok"]:
        principal = verify()
        assert (principal.identity, principal.room, principal.kind) == (
            expect["identity"],
            expect["room"],
            expect["kind"],
        )
    else:
        with pytest.raises(TokenError) as info:
            verify()
        assert info.value.reason == expect["reason"], info.value.message


def test_the_clock_is_really_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The verify cases mean something only if the patched clock is the one pyjwt reads: a
    valid case moved a day past its expiry is refused."""
    case = next(c for c in CASES if c["kind"] == "verify" and c["expect"]["ok"])
    freeze(monkeypatch, case["now"] + 86_400 * 2)
    with pytest.raises(TokenError):
        verify_token(
            case["token"], room=case["room"], api_key=case["api_key"], api_secret=case["api_secret"]
        )
