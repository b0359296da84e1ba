"""Unit tests of the server's parts: tokens, settings, rate limiter, idempotency cache."""

from __future__ import annotations

import asyncio
import datetime
import time

import jwt
import pytest
from livekit import api
from server_support import API_KEY, API_SECRET, livekit_token

from endcall.server import RateLimit, Settings
from endcall.server.idempotency import IdempotencyCache, IdempotencyConflict
from endcall.server.ratelimit import RateLimiter
from endcall.server.tokens import (
    END_TOKEN_AUDIENCE,
    TokenError,
    mint_end_token,
    verify_access_token,
    verify_end_token,
    verify_token,
)

# --------------------------------------------------------------------------- tokens


def test_end_token_round_trip() -> None:
    token = mint_end_token("room", "cust", 30, api_key=API_KEY, api_secret=API_SECRET)
    claims = jwt.decode(token, API_SECRET, algorithms=["HS256"], audience=END_TOKEN_AUDIENCE)
    assert claims["iss"] == API_KEY and claims["sub"] == "cust" and claims["room"] == "room"
    assert 29 <= claims["exp"] - claims["iat"] <= 31
    principal = verify_token(token, room="room", api_key=API_KEY, api_secret=API_SECRET)
    assert (principal.identity, principal.room, principal.kind) == ("cust", "room", "end")
    ttl = datetime.timedelta(minutes=2)
    token2 = mint_end_token("room", "cust", ttl, api_key=API_KEY, api_secret=API_SECRET)
    assert verify_end_token(token2, api_key=API_KEY, api_secret=API_SECRET).kind == "end"


def test_end_token_is_not_a_livekit_token_and_back() -> None:
    end = mint_end_token("room", "cust", 30, api_key=API_KEY, api_secret=API_SECRET)
    with pytest.raises(TokenError) as err:
        verify_access_token(end, api_key=API_KEY, api_secret=API_SECRET)
    assert err.value.reason == "invalid"
    with pytest.raises(jwt.InvalidAudienceError):
        api.TokenVerifier(API_KEY, API_SECRET).verify(end)
    lk = livekit_token(room="room")
    with pytest.raises(TokenError):
        verify_end_token(lk, api_key=API_KEY, api_secret=API_SECRET)


def test_livekit_token_verification() -> None:
    token = livekit_token("cust", "room")
    principal = verify_token(token, room="room", api_key=API_KEY, api_secret=API_SECRET)
    assert (principal.identity, principal.room, principal.kind) == ("cust", "room", "livekit")
    with pytest.raises(TokenError) as err:
        verify_token(token, room="other", api_key=API_KEY, api_secret=API_SECRET)
    assert err.value.reason == "forbidden"


def test_leeway_is_configurable() -> None:
    now = int(time.time())
    claims = {"iss": API_KEY, "sub": "c", "exp": now - 30, "video": {"roomJoin": True, "room": "r"}}
    token = jwt.encode(claims, API_SECRET, algorithm="HS256")
    assert verify_token(token, room="r", api_key=API_KEY, api_secret=API_SECRET, leeway=60)
    with pytest.raises(TokenError):
        verify_token(token, room="r", api_key=API_KEY, api_secret=API_SECRET, leeway=5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"room": "", "identity": "c", "ttl": 5},
        {"room": "r", "identity": "", "ttl": 5},
        {"room": "r", "identity": "c", "ttl": 0},
    ],
)
def test_mint_rejects_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        mint_end_token(api_key=API_KEY, api_secret=API_SECRET, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("token", ["", "a", "a.b", "a.b.c.d", "\x00"])
def test_verify_never_raises_anything_but_token_error(token: str) -> None:
    with pytest.raises(TokenError):
        verify_token(token, room="r", api_key=API_KEY, api_secret=API_SECRET)


# --------------------------------------------------------------------------- settings


BASE_ENV = {"LIVEKIT_URL": "wss://lk.example", "LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": "s"}


def test_settings_defaults() -> None:
    s = Settings.from_env(BASE_ENV)
    assert s.livekit_url == "wss://lk.example"
    assert s.ack_timeout == 3.0
    assert s.escalation == "delete_room"
    assert s.allowed_origins == ()
    assert s.rate_limit_identity == RateLimit(10, 60) == s.rate_limit_address
    assert s.reconcile_sweep == 60.0


def test_settings_from_env() -> None:
    env = dict(
        BASE_ENV,
        ENDCALL_ALLOWED_ORIGINS="https://a.example/, https://b.example",
        ENDCALL_ACK_TIMEOUT="1.5",
        ENDCALL_ESCALATION="none",
        ENDCALL_RATE_LIMIT="5/minute",
        ENDCALL_RATE_LIMIT_ADDRESS="off",
        ENDCALL_TOKEN_LEEWAY="0",
        ENDCALL_LIVEKIT_TIMEOUT="4",
        ENDCALL_RETRY_AFTER="7",
        ENDCALL_IDEMPOTENCY_TTL="30",
        ENDCALL_RECONCILE_SWEEP="15",
    )
    s = Settings.from_env(env)
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    assert s.ack_timeout == 1.5 and s.escalation == "none"
    assert s.rate_limit_identity == RateLimit(5, 60) and s.rate_limit_address is None
    assert s.token_leeway == 0 and s.livekit_timeout == 4 and s.retry_after == 7
    assert s.idempotency_ttl == 30 and s.reconcile_sweep == 15
    assert Settings.from_env(env, ack_timeout=9.0).ack_timeout == 9.0


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({}, "LIVEKIT_URL"),
        ({"LIVEKIT_URL": "ws://x"}, "LIVEKIT_API_KEY"),
        (dict(BASE_ENV, ENDCALL_ACK_TIMEOUT="soon"), "ENDCALL_ACK_TIMEOUT"),
        (dict(BASE_ENV, ENDCALL_ACK_TIMEOUT="0"), "ENDCALL_ACK_TIMEOUT"),
        (dict(BASE_ENV, ENDCALL_ESCALATION="explode"), "ENDCALL_ESCALATION"),
        (dict(BASE_ENV, ENDCALL_RATE_LIMIT_IDENTITY="lots"), "ENDCALL_RATE_LIMIT_IDENTITY"),
        (dict(BASE_ENV, ENDCALL_RATE_LIMIT="3/fortnight"), "ENDCALL_RATE_LIMIT"),
        (dict(BASE_ENV, ENDCALL_RECONCILE_SWEEP="0"), "ENDCALL_RECONCILE_SWEEP"),
        (dict(BASE_ENV, ENDCALL_RECONCILE_SWEEP="nan"), "ENDCALL_RECONCILE_SWEEP"),
    ],
)
def test_settings_errors_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10/60", RateLimit(10, 60)),
        ("10/minute", RateLimit(10, 60)),
        ("10/minutes", RateLimit(10, 60)),
        ("5/s", RateLimit(5, 1)),
        ("100/h", RateLimit(100, 3600)),
        ("2/0.5", RateLimit(2, 0.5)),
        ("off", None),
        ("0", None),
        ("0/60", None),
    ],
)
def test_rate_parse(text: str, expected: RateLimit | None) -> None:
    assert RateLimit.parse(text) == expected


# --------------------------------------------------------------------------- rate limiter


def test_token_bucket() -> None:
    now = [0.0]
    limiter = RateLimiter(RateLimit(3, 60), clock=lambda: now[0])
    assert [limiter.hit("a") for _ in range(3)] == [None, None, None]
    wait = limiter.hit("a")
    assert wait == pytest.approx(20.0)
    assert limiter.hit("b") is None  # keys are independent
    now[0] = 19.0
    assert limiter.hit("a") == pytest.approx(1.0)
    now[0] = 20.0
    assert limiter.hit("a") is None
    assert limiter.hit("a") is not None
    now[0] = 1000.0
    assert [limiter.hit("a") for _ in range(4)][-1] is not None  # refills to 3, not more


def test_limiter_bounds_its_memory() -> None:
    limiter = RateLimiter(RateLimit(1, 60), max_keys=10)
    for i in range(100):
        limiter.hit(f"k{i}")
    assert len(limiter) == 10


# --------------------------------------------------------------------------- idempotency


async def test_idempotency_cache() -> None:
    now = [0.0]
    cache: IdempotencyCache[int] = IdempotencyCache(ttl=10, clock=lambda: now[0])
    runs = 0

    async def compute() -> int:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        return runs

    results = await asyncio.gather(*(cache.run(("r", "id"), "me", compute) for _ in range(4)))
    assert [v for v, _ in results] == [1, 1, 1, 1]
    assert sorted(replayed for _, replayed in results) == [False, True, True, True]
    assert await cache.run(("r", "id"), "me", compute) == (1, True)
    with pytest.raises(IdempotencyConflict):
        await cache.run(("r", "id"), "you", compute)
    assert await cache.run(("r2", "id"), "you", compute) == (2, False)  # per room
    now[0] = 11.0
    assert await cache.run(("r", "id"), "me", compute) == (3, False)  # expired


async def test_idempotency_failures_are_not_cached() -> None:
    cache: IdempotencyCache[str] = IdempotencyCache(ttl=10)
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("down")
        return "ok"

    with pytest.raises(RuntimeError):
        await cache.run(("r", "x"), "me", flaky)
    assert await cache.run(("r", "x"), "me", flaky) == ("ok", False)
    assert len(cache) == 1


async def test_idempotency_is_bounded() -> None:
    cache: IdempotencyCache[int] = IdempotencyCache(ttl=100, max_entries=5)

    async def one() -> int:
        return 1

    for i in range(20):
        await cache.run(("r", f"id{i}"), "me", one)
    assert len(cache) == 5


def test_create_app_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.applications import Starlette

    from endcall.server import create_app

    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    assert isinstance(create_app(), Starlette)
    monkeypatch.delenv("LIVEKIT_URL")
    with pytest.raises(ValueError, match="LIVEKIT_URL"):
        create_app()


def test_the_relay_signs_with_the_named_secrets_too() -> None:
    """Jobs pick secrets by id (`ENDCALL_WEBHOOK_SECRETS`): `endcall serve`'s relay must be able
    to sign what they left in the outbox."""
    own, named = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_" + "QUJD" * 8
    env = dict(
        BASE_ENV,
        ENDCALL_OUTBOX="/tmp/o.sqlite3",
        ENDCALL_WEBHOOK_SECRET=own,
        ENDCALL_WEBHOOK_SECRETS=f"acme={named}",
    )
    assert Settings.from_env(env).relay_secrets == (own, named)
