"""Delivering one report: a single signed attempt, the retry policy, and recording outcomes.

- Only a 2xx answer is success. Redirects are *not* followed and count as failures.
- ``410 Gone`` makes the report ``dead`` at once (the receiver asked us to stop).
- ``429`` and ``503`` honour ``Retry-After`` (seconds or an HTTP date): the next attempt is
  never earlier than asked (capped at ``max_retry_after``).
- Anything else (other statuses, timeouts, refused connections, TLS errors...) is retried on
  the schedule; after the last scheduled attempt fails the report is ``dead`` (kept, listable,
  replayable with ``endcall outbox replay ID``).

The HTTP client is an ``httpx.AsyncClient``; pass ``transport=`` (e.g. ``httpx.MockTransport``)
or ``client=`` to inject one, and ``clock=`` (a `Clock`) to control time in tests.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import httpx

from .outbox.base import Outbox, OutboxRecord
from .webhook import DEFAULT_JITTER, DEFAULT_SCHEDULE, signed_headers

__all__ = [
    "AttemptResult",
    "Clock",
    "RetryPolicy",
    "Sender",
    "SystemClock",
    "attempt",
    "parse_retry_after",
]

logger = logging.getLogger("endcall.delivery")

Outcome = Literal["delivered", "retry", "dead"]


class Clock(Protocol):
    """Time source: ``time()`` in Unix seconds and an awaitable ``sleep``."""

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


@dataclass(frozen=True)
class AttemptResult:
    """What one HTTP attempt gave."""

    outcome: Outcome
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    elapsed: float = 0.0


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        secs = when.timestamp() - now
    if math.isnan(secs) or secs < 0:
        return 0.0
    return secs


async def attempt(
    client: httpx.AsyncClient,
    url: str,
    end_id: str,
    body: bytes,
    secrets: Sequence[str],
    *,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    now: float | None = None,
) -> AttemptResult:
    """POST the report once, signed for this attempt's timestamp. Never raises (but cancels)."""
    started = time.monotonic()
    ts = int(time.time())  # the signature carries real time: receivers check it against theirs
    try:
        resp = await client.post(
            url,
            content=body,
            headers=signed_headers(end_id, body, secrets, ts, headers),
            timeout=timeout,
            follow_redirects=False,
        )
    except httpx.TimeoutException as e:
        return AttemptResult(
            "retry",
            error=f"timeout after {timeout:g}s ({type(e).__name__})",
            elapsed=time.monotonic() - started,
        )
    except httpx.ConnectError as e:
        return AttemptResult(
            "retry", error=f"connect failed: {e}", elapsed=time.monotonic() - started
        )
    except Exception as e:
        return AttemptResult(
            "retry", error=f"{type(e).__name__}: {e}", elapsed=time.monotonic() - started
        )
    elapsed = time.monotonic() - started
    code = resp.status_code
    if 200 <= code < 300:
        return AttemptResult("delivered", status=code, elapsed=elapsed)
    if code == 410:
        return AttemptResult("dead", status=code, error="410 Gone: receiver asked to stop")
    if 300 <= code < 400:
        loc = resp.headers.get("location", "")
        return AttemptResult(
            "retry",
            status=code,
            error=f"HTTP {code} redirect not followed ({loc})",
            elapsed=elapsed,
        )
    retry_after = None
    if code in (429, 503):
        retry_after = parse_retry_after(
            resp.headers.get("retry-after"), time.time() if now is None else now
        )
    return AttemptResult(
        "retry", status=code, error=f"HTTP {code}", retry_after=retry_after, elapsed=elapsed
    )


@dataclass(frozen=True)
class RetryPolicy:
    """When to try again. ``schedule[n]`` is the delay before attempt ``n`` (0-based), so
    after ``len(schedule)`` failed attempts the report is dead."""

    schedule: Sequence[float] = DEFAULT_SCHEDULE
    jitter: float = DEFAULT_JITTER
    max_retry_after: float = 86400.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def next_attempt_at(
        self, attempts_made: int, now: float, retry_after: float | None = None
    ) -> float | None:
        """Absolute time of the next attempt after ``attempts_made`` failures, None if none."""
        if attempts_made >= len(self.schedule):
            return None
        delay = float(self.schedule[attempts_made])
        if delay > 0 and self.jitter:
            delay *= self.rng.uniform(1 - self.jitter, 1 + self.jitter)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return now + delay


class Sender:
    """Makes attempts for outbox rows and records each outcome in the outbox.

    Outbox errors while recording are logged and swallowed: the attempt's result is returned
    either way (the worst case is one more duplicate, with the same webhook-id and body).
    """

    def __init__(
        self,
        outbox: Outbox | None,
        secrets: Sequence[str],
        *,
        owner: str,
        policy: RetryPolicy | None = None,
        timeout: float = 15.0,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        on_delivered: Callable[[str, int], Awaitable[None]] | None = None,
        max_in_flight: int = 256,
    ) -> None:
        if not secrets:
            raise ValueError("at least one webhook secret is required to sign reports")
        self.outbox = outbox
        self.secrets = tuple(secrets)
        self.owner = owner
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self.clock: Clock = clock or SystemClock()
        self.on_delivered = on_delivered
        # a bound on concurrent requests; high, because slow receivers hold their slot for up
        # to the timeout and must not hold up the other reports
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._own_client = client is None
        self.client = client or httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=32),
        )

    async def send(
        self,
        rec: OutboxRecord,
        *,
        keep_lease: float | None = None,
        timeout: float | None = None,
        record: bool = True,
    ) -> tuple[AttemptResult, float | None]:
        """One attempt for ``rec``; returns the result and the next attempt time (None when
        delivered or dead). ``keep_lease``: keep owning the row that long (in-process retries);
        ``record=False``: do not write the outcome to the outbox."""
        async with self._in_flight:
            res = await attempt(
                self.client,
                rec.url,
                rec.end_id,
                rec.body,
                self.secrets,
                timeout=self.timeout if timeout is None else timeout,
                headers=rec.headers,
                now=self.clock.time(),
            )
        nxt: float | None = None
        if res.outcome == "retry":
            nxt = self.policy.next_attempt_at(rec.attempts + 1, self.clock.time(), res.retry_after)
            if nxt is None:
                res = AttemptResult(
                    "dead", res.status, f"retries exhausted; last: {res.error}", None, res.elapsed
                )
        if record and self.outbox is not None:
            try:
                await self._record(rec, res, nxt, keep_lease)
            except Exception:
                logger.exception("endcall: could not record attempt for %s", rec.end_id)
        level = logging.DEBUG if res.outcome == "delivered" else logging.WARNING
        logger.log(
            level,
            "endcall report %s attempt %d: %s (%s)",
            rec.end_id,
            rec.attempts + 1,
            res.outcome,
            res.error or res.status,
        )
        return res, nxt

    async def _record(
        self, rec: OutboxRecord, res: AttemptResult, nxt: float | None, keep_lease: float | None
    ) -> None:
        assert self.outbox is not None
        if res.outcome == "delivered":
            if self.on_delivered is not None:
                await self.on_delivered(rec.end_id, res.status or 200)
            else:
                await asyncio.to_thread(
                    self.outbox.mark_delivered, rec.end_id, self.owner, res.status or 200
                )
        else:
            await asyncio.to_thread(
                lambda: self.outbox.mark_failed(  # type: ignore[union-attr]
                    rec.end_id,
                    self.owner,
                    dead=res.outcome == "dead",
                    next_attempt_at=nxt if nxt is not None else self.clock.time(),
                    status_code=res.status,
                    error=res.error or "",
                    keep_lease=keep_lease,
                )
            )

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()
