"""Rejected requests: each gets its documented status and JSON error, and no room is touched
(the Twirp double records every LiveKit call; rejected requests make none at all)."""

from __future__ import annotations

import base64
import json
import time
import warnings
from pathlib import Path
from typing import Any

import jwt
import pytest
from server_support import (
    API_KEY,
    API_SECRET,
    CUSTOMER,
    ROOM,
    Stack,
    StackFactory,
    end_body,
    livekit_token,
)

from endcall.server import RateLimit
from endcall.server.tokens import mint_end_token


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _lk_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": API_KEY,
        "sub": CUSTOMER,
        "nbf": now - 5,
        "exp": now + 600,
        "video": {"roomJoin": True, "room": ROOM},
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _quiet_hs512(claims: dict[str, Any]) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the key is short for HS512: irrelevant here
        return jwt.encode(claims, API_SECRET, algorithm="HS512")


def _hs256(claims: dict[str, Any], secret: str = API_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


async def _rejected(stack: Stack, status: int, code: str, resp_awaitable: Any) -> dict[str, Any]:
    resp = await resp_awaitable
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert resp.headers["content-type"].startswith("application/json")
    assert stack.double.calls == [], "a rejected request must not reach LiveKit"
    assert stack.hub.room_exists(ROOM)
    return dict(resp.headers)


@pytest.fixture
async def armed(stack: Stack) -> Stack:
    """A room with a customer and an agent that would ack at once."""
    await stack.add_customer()
    await stack.add_agent()
    return stack


NOW = int(time.time())

BAD_TOKENS: dict[str, Any] = {
    "garbage": lambda: "not-a-jwt",
    "garbage_three_parts": lambda: "aaa.bbb.ccc",
    "alg_none": lambda: _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_lk_claims()) + ".",
    "alg_none_signed_anyway": lambda: (
        _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_lk_claims()) + ".c2ln"
    ),
    "hs512": lambda: _quiet_hs512(_lk_claims()),
    "wrong_secret": lambda: livekit_token(secret="wrong-secret-wrong-secret-wrong-secret-00"),
    "wrong_issuer": lambda: livekit_token(key="APIother"),
    "expired": lambda: _hs256(_lk_claims(exp=int(time.time()) - 3600, nbf=NOW - 7200)),
    "nbf_in_future": lambda: _hs256(_lk_claims(nbf=int(time.time()) + 3600)),
    "no_exp": lambda: _hs256(_lk_claims(exp=None)),
    "no_identity": lambda: _hs256(_lk_claims(sub=None)),
    "malformed_video_grant": lambda: _hs256(_lk_claims(video="room-1")),
    "end_token_wrong_audience": lambda: jwt.encode(
        {
            "iss": API_KEY,
            "aud": "someone-else",
            "sub": CUSTOMER,
            "room": ROOM,
            "exp": int(time.time()) + 60,
        },
        API_SECRET,
        algorithm="HS256",
    ),
    "end_token_wrong_secret": lambda: mint_end_token(
        ROOM, CUSTOMER, 60, api_key=API_KEY, api_secret="x" * 40
    ),
    "end_token_expired": lambda: jwt.encode(
        {
            "iss": API_KEY,
            "aud": "endcall",
            "sub": CUSTOMER,
            "room": ROOM,
            "exp": int(time.time()) - 3600,
        },
        API_SECRET,
        algorithm="HS256",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_invalid_tokens_are_401(armed: Stack, case: str) -> None:
    token = BAD_TOKENS[case]()
    headers = await _rejected(armed, 401, "unauthorized", armed.end(end_body(), token=token))
    assert headers["www-authenticate"].startswith("Bearer")


async def test_invalid_token_in_beacon_body_is_401(armed: Stack) -> None:
    body = end_body(token="garbage")
    await _rejected(
        armed,
        401,
        "unauthorized",
        armed.client.post(
            armed.url + "/v1/end", content=json.dumps(body), headers={"Content-Type": "text/plain"}
        ),
    )


async def test_no_token_is_401(armed: Stack) -> None:
    await _rejected(armed, 401, "unauthorized", armed.end(end_body(), token=""))


@pytest.mark.parametrize(
    "header", ["Basic dXNlcjpwYXNz", "Bearer", "Token abc", "bearer not.a.token"]
)
async def test_malformed_authorization_header_is_401(armed: Stack, header: str) -> None:
    await _rejected(
        armed,
        401,
        "unauthorized",
        armed.end(end_body(), token="", headers={"Authorization": header}),
    )


async def test_header_wins_over_body_token(armed: Stack) -> None:
    body = end_body(token=livekit_token())
    await _rejected(
        armed, 401, "unauthorized", armed.end(body, token="", headers={"Authorization": "Bearer x"})
    )


async def test_token_for_another_room_is_403(armed: Stack) -> None:
    await _rejected(
        armed, 403, "forbidden", armed.end(end_body(), token=livekit_token(room="room-2"))
    )


async def test_end_token_for_another_room_is_403(armed: Stack) -> None:
    token = mint_end_token("room-2", CUSTOMER, 60, api_key=API_KEY, api_secret=API_SECRET)
    await _rejected(armed, 403, "forbidden", armed.end(end_body(), token=token))


async def test_token_without_room_join_is_403(armed: Stack) -> None:
    await _rejected(
        armed, 403, "forbidden", armed.end(end_body(), token=livekit_token(room_join=False))
    )


async def test_another_identity_in_the_body_is_403(armed: Stack) -> None:
    await _rejected(armed, 403, "forbidden", armed.end(end_body(initiator="someone-else")))


async def test_request_id_of_another_identity_is_403(armed: Stack) -> None:
    first = await armed.end(end_body("r_owned"))
    assert first.status_code == 202
    calls = len(armed.double.calls)
    other = livekit_token(identity="intruder")
    resp = await armed.end(end_body("r_owned"), token=other)
    assert resp.status_code == 403
    assert resp.json()["code"] == "forbidden"
    assert len(armed.double.calls) == calls


async def test_replayed_request_id_touches_nothing_again(armed: Stack) -> None:
    body = end_body("r_replay")
    first = await armed.end(body)
    assert first.status_code == 202
    calls = list(armed.double.calls)
    for _ in range(3):
        again = await armed.end(body)
        assert again.status_code == 202
        assert again.json() == first.json()
    assert armed.double.calls == calls


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"type": "end.request", "v": 1, "room": ROOM}, "bad_request"),
        ({"type": "end.request", "v": 1, "id": "bad id!", "room": ROOM}, "bad_request"),
        ({"type": "end.request", "v": 2, "id": "r_v2", "room": ROOM}, "unsupported_version"),
        ({"type": "end.ack", "v": 1, "id": "r_t", "room": ROOM}, "bad_request"),
        (end_body(meta={"x": "y" * 5000}), "bad_request"),
        (end_body(sent_at=-1), "bad_request"),
        ({"type": "end.request", "v": 1, "id": "r_noroom"}, "bad_request"),
        (end_body(room=""), "bad_request"),
        (end_body(room=7), "bad_request"),
        (end_body(room="a\nb"), "bad_request"),
        (end_body(token=5), "bad_request"),
        ([1, 2, 3], "bad_request"),
    ],
)
async def test_bad_bodies_are_400(armed: Stack, body: Any, code: str) -> None:
    await _rejected(armed, 400, code, armed.end(body))


@pytest.mark.parametrize("reason", ["server-ended-call", "assistant-ended-call", "billing.stop"])
async def test_a_reason_only_the_server_side_may_send_is_403(armed: Stack, reason: str) -> None:
    await _rejected(armed, 403, "forbidden", armed.end(end_body(reason=reason)))


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"\xff\xfe", b'{"a": NaN}', b"[" * 5000 + b"]" * 5000, b'"str"', b"null"],
)
async def test_malformed_json_is_400(armed: Stack, raw: bytes) -> None:
    await _rejected(
        armed,
        400,
        "bad_request",
        armed.client.post(
            armed.url + "/v1/end",
            content=raw,
            headers={"Content-Type": "application/json", "Authorization": "Bearer x"},
        ),
    )


async def test_oversize_body_is_413(armed: Stack) -> None:
    body = end_body(padding="x" * (16 * 1024))
    await _rejected(armed, 413, "payload_too_large", armed.end(body))


async def test_oversize_chunked_body_is_413(armed: Stack) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * 1024

    await _rejected(
        armed,
        413,
        "payload_too_large",
        armed.client.post(
            armed.url + "/v1/end", content=chunks(), headers={"Content-Type": "application/json"}
        ),
    )


async def test_body_of_exactly_16_kib_is_accepted(armed: Stack) -> None:
    body = end_body("r_16k", token=livekit_token())
    raw = json.dumps(body).encode()
    raw = raw[:-1] + b" " * (16 * 1024 - len(raw)) + b"}"
    assert len(raw) == 16 * 1024
    resp = await armed.client.post(
        armed.url + "/v1/end", content=raw, headers={"Content-Type": "text/plain"}
    )
    assert resp.status_code == 202, resp.text


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "text/html",
        "application/json; charset=latin-1",
    ],
)
async def test_wrong_content_type_is_415(armed: Stack, content_type: str | None) -> None:
    headers = {"Authorization": f"Bearer {livekit_token()}"}
    if content_type:
        headers["Content-Type"] = content_type
    await _rejected(
        armed,
        415,
        "unsupported_media_type",
        armed.client.post(armed.url + "/v1/end", content=json.dumps(end_body()), headers=headers),
    )


async def test_flood_from_one_address_is_429(make_stack: StackFactory) -> None:
    stack = await make_stack(rate_limit_address=RateLimit(5, 60))
    await stack.add_agent()
    statuses = []
    for _ in range(8):
        resp = await stack.end(end_body(), token="garbage")
        statuses.append(resp.status_code)
    assert statuses == [401] * 5 + [429] * 3
    assert resp.json()["code"] == "rate_limited"
    assert 1 <= int(resp.headers["retry-after"]) <= 12
    assert stack.double.calls == []


async def test_flood_from_one_identity_is_429(make_stack: StackFactory) -> None:
    stack = await make_stack(rate_limit_identity=RateLimit(3, 60))
    await stack.add_agent()
    statuses = []
    for _ in range(5):
        resp = await stack.end(end_body())
        statuses.append(resp.status_code)
    assert statuses == [202, 202, 202, 429, 429]
    assert int(resp.headers["retry-after"]) >= 1
    list_calls = len(stack.double.calls_to("ListParticipants"))
    assert list_calls == 3  # the limited requests reached nothing
    other = await stack.end(end_body(), token=livekit_token(identity="candidate-43"))
    assert other.status_code == 202  # another identity has its own budget


async def test_default_settings_limit_at_ten_per_minute(make_stack: StackFactory) -> None:
    stack = await make_stack(rate_limit_address=RateLimit(10, 60))
    codes = [(await stack.end(end_body(), token="x")).status_code for _ in range(11)]
    assert codes[:10] == [401] * 10 and codes[10] == 429


async def test_junk_from_the_proxy_address_does_not_stop_a_candidate(
    make_stack: StackFactory,
) -> None:
    """Behind a proxy every caller has its address: only failed authentication pays the
    per-address bucket, so a valid candidate still ends their call (their tab-close beacon)."""
    stack = await make_stack(rate_limit_address=RateLimit(5, 60))
    await stack.add_agent()
    junk = [(await stack.end(end_body(), token="garbage")).status_code for _ in range(8)]
    assert junk == [401] * 5 + [429] * 3
    resp = await stack.end(end_body("r_after_junk"))
    assert resp.status_code == 202, resp.text


async def test_a_retry_of_the_same_request_id_is_never_rate_limited(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(rate_limit_identity=RateLimit(1, 60))
    await stack.add_agent()
    stack.double.fail("ListParticipants", times=1)  # LiveKit is down for the first try
    first = await stack.end(end_body("r_retry"))
    assert first.status_code == 502, first.text
    again = await stack.end(end_body("r_retry"))  # the client's retry after the 502
    assert again.status_code == 202, again.text
    replay = await stack.end(end_body("r_retry"))  # answered from the idempotency cache
    assert replay.status_code == 202 and replay.json() == again.json()
    other = await stack.end(end_body("r_other"))  # a new request pays: the bucket is empty
    assert other.status_code == 429


async def test_failed_livekit_webhook_verifications_pay_the_address_bucket(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = await make_stack(
        rate_limit_address=RateLimit(3, 60),
        relay_outbox=str(tmp_path / "o.sqlite3"),
        relay_secrets=("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",),
    )
    codes = []
    for _ in range(5):
        resp = await stack.client.post(
            stack.url + "/v1/livekit/webhook",
            content=b'{"event": "room_finished"}',
            headers={"content-type": "application/webhook+json", "authorization": "forged"},
        )
        codes.append(resp.status_code)
    assert codes == [401, 401, 401, 429, 429]
    assert resp.json()["code"] == "rate_limited"
