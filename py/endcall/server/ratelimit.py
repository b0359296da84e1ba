"""In-memory token-bucket rate limiting, keyed by a string (an identity or a client address).

`ChargedOnce` remembers which requests already paid, so a retry of the same request id (after a
502, say) is not charged twice.

Each key gets a bucket of ``limit.count`` tokens refilled evenly over ``limit.period`` seconds.
The number of tracked keys is bounded (least recently used keys are dropped first; a dropped key
starts again with a full bucket). One process only: run one server process per limit, or put a
shared limiter in front.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from endcall.server.settings import RateLimit

__all__ = ["ChargedOnce", "RateLimiter"]


class RateLimiter:
    def __init__(
        self,
        limit: RateLimit,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self._rate = limit.count / limit.period
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def hit(self, key: str) -> float | None:
        """Take one token for ``key``. None when allowed, else seconds until one is free."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (float(self.limit.count), now))
        tokens = min(float(self.limit.count), tokens + (now - last) * self._rate)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now)
            return None
        self._store(key, tokens, now)
        return (1.0 - tokens) / self._rate

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


class ChargedOnce:
    """Keys that already paid a token, remembered for ``ttl`` seconds (at most ``max_keys``)."""

    def __init__(
        self, ttl: float, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._max_keys = max_keys
        self._clock = clock
        self._paid: OrderedDict[tuple[str, ...], float] = OrderedDict()

    def paid(self, key: tuple[str, ...]) -> bool:
        now = self._clock()
        while self._paid:
            oldest, expires = next(iter(self._paid.items()))
            if expires > now:
                break
            del self._paid[oldest]
        return key in self._paid

    def add(self, key: tuple[str, ...]) -> None:
        self._paid[key] = self._clock() + self._ttl
        self._paid.move_to_end(key)
        while len(self._paid) > self._max_keys:
            self._paid.popitem(last=False)
