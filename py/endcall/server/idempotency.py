"""The idempotency cache: the same request id gets the same answer, computed once.

Keys are ``(room, request id)``. The first request computes the answer; concurrent duplicates
wait for it; later duplicates get the stored answer until it expires (``ttl`` seconds). A failed
computation (an exception, e.g. LiveKit unreachable) is not stored, so a retry runs again.
Each key remembers its owner (the caller's identity): another owner reusing the id gets
:class:`IdempotencyConflict` instead of someone else's answer.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["IdempotencyCache", "IdempotencyConflict"]

T = TypeVar("T")


class IdempotencyConflict(Exception):
    """The request id is already used by another owner."""


@dataclass
class _Entry(Generic[T]):
    owner: str
    future: asyncio.Future[T]
    expires_at: float


class IdempotencyCache(Generic[T]):
    def __init__(
        self,
        *,
        ttl: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry[T]] = OrderedDict()

    def _expire(self, now: float) -> None:
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.expires_at > now or not entry.future.done():
                break
            del self._entries[key]

    def known(self, key: tuple[str, str]) -> bool:
        """An answer for ``key`` is being computed or stored (a duplicate gets it)."""
        self._expire(self._clock())
        entry = self._entries.get(key)
        return entry is not None and not (entry.future.done() and entry.expires_at <= self._clock())

    async def run(
        self, key: tuple[str, str], owner: str, compute: Callable[[], Awaitable[T]]
    ) -> tuple[T, bool]:
        """The answer for ``key`` and whether it was replayed (True) or computed now."""
        now = self._clock()
        self._expire(now)
        entry = self._entries.get(key)
        if entry is not None and entry.future.done() and entry.expires_at <= now:
            del self._entries[key]
            entry = None
        if entry is not None:
            if entry.owner != owner:
                raise IdempotencyConflict(f"request id {key[1]!r} is used by another caller")
            return await asyncio.shield(entry.future), True
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        entry = _Entry(owner=owner, future=future, expires_at=float("inf"))
        self._entries[key] = entry
        try:
            value = await compute()
        except BaseException as exc:
            if self._entries.get(key) is entry:
                del self._entries[key]
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # retrieved: no warning when no duplicate was waiting
            else:
                future.cancel()
            raise
        future.set_result(value)
        entry.expires_at = self._clock() + self._ttl
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            oldest_key, oldest = next(iter(self._entries.items()))
            if not oldest.future.done():
                break
            del self._entries[oldest_key]
        return value, False

    def __len__(self) -> int:
        return len(self._entries)
