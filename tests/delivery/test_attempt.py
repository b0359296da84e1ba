"""One attempt's classification and the retry policy (httpx.MockTransport as the seam)."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from email.utils import format_datetime

import httpx
import pytest
from support import new_secret

from endcall.reports.delivery import RetryPolicy, attempt, parse_retry_after

SECRET = new_secret()


async def one(handler: httpx.MockTransport | None = None, **kw: object) -> object:
    async with httpx.AsyncClient(transport=handler) as c:
        return await attempt(c, "http://r/hook", "e1", b"{}", [SECRET], timeout=1.0, **kw)  # type: ignore[arg-type]


def responder(status: int, headers: dict[str, str] | None = None) -> httpx.MockTransport:
    return httpx.MockTransport(lambda req: httpx.Response(status, headers=headers or {}))


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
async def test_2xx_is_delivered(status: int) -> None:
    r = await one(responder(status))
    assert r.outcome == "delivered" and r.status == status  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_failures_not_followed(status: int) -> None:
    seen: list[str] = []

    def h(req: httpx.Request) -> httpx.Response:
        seen.append(str(req.url))
        return httpx.Response(status, headers={"location": "http://r/elsewhere"})

    r = await one(httpx.MockTransport(h))
    assert r.outcome == "retry" and "redirect" in (r.error or "")  # type: ignore[attr-defined]
    assert seen == ["http://r/hook"]


@pytest.mark.parametrize("status", [400, 401, 404, 409, 418, 500, 502, 504])
async def test_other_statuses_retry(status: int) -> None:
    r = await one(responder(status))
    assert r.outcome == "retry" and r.status == status  # type: ignore[attr-defined]


async def test_410_is_dead() -> None:
    r = await one(responder(410))
    assert r.outcome == "dead" and r.status == 410  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds_and_date(status: int) -> None:
    r = await one(responder(status, {"retry-after": "120"}))
    assert r.outcome == "retry" and r.retry_after == 120  # type: ignore[attr-defined]
    now = 1_800_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 90, tz=timezone.utc), usegmt=True)
    r = await one(responder(status, {"retry-after": date}), now=now)
    assert r.retry_after == pytest.approx(90)  # type: ignore[attr-defined]


def test_parse_retry_after_edges() -> None:
    assert parse_retry_after(None, 0) is None
    assert parse_retry_after("garbage", 0) is None
    assert parse_retry_after("-5", 0) == 0
    assert parse_retry_after(" 7 ", 0) == 7


async def test_transport_errors_retry() -> None:
    def boom(exc: Exception) -> httpx.MockTransport:
        def h(req: httpx.Request) -> httpx.Response:
            raise exc

        return httpx.MockTransport(h)

    r = await one(boom(httpx.ReadTimeout("slow")))
    assert r.outcome == "retry" and "timeout" in (r.error or "")  # type: ignore[attr-defined]
    r = await one(boom(httpx.ConnectError("refused")))
    assert r.outcome == "retry" and "connect" in (r.error or "")  # type: ignore[attr-defined]
    r = await one(boom(RuntimeError("weird")))
    assert r.outcome == "retry" and "RuntimeError" in (r.error or "")  # type: ignore[attr-defined]


def test_policy_schedule_jitter_retry_after_and_exhaustion() -> None:
    p = RetryPolicy(schedule=(0, 5, 30), jitter=0.1, rng=random.Random(1))
    for _ in range(200):
        nxt = p.next_attempt_at(1, 1000.0)
        assert nxt is not None and 1000 + 4.5 <= nxt <= 1000 + 5.5
    assert p.next_attempt_at(3, 1000.0) is None  # 3 attempts made = schedule exhausted
    exact = RetryPolicy(schedule=(0, 5, 30), jitter=0)
    assert exact.next_attempt_at(1, 0.0) == 5
    assert exact.next_attempt_at(1, 0.0, retry_after=40) == 40  # never earlier than asked
    assert exact.next_attempt_at(2, 0.0, retry_after=1) == 30  # and never earlier than planned
    capped = RetryPolicy(schedule=(0, 5), jitter=0, max_retry_after=60)
    assert capped.next_attempt_at(1, 0.0, retry_after=10**9) == 60
