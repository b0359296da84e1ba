"""Bounded waits: `settle` waits at most so long and never fails because what it waits for
failed; `remaining` is what is left of a deadline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

__all__ = ["remaining", "settle"]

logger = logging.getLogger("endcall")


async def settle(aw: Awaitable[Any], timeout: float | None, *, cancel: bool = True) -> bool:
    """Wait for `aw` at most `timeout` seconds; True if it finished. Never raises what `aw`
    raises (not even its cancellation): a future of the session being cancelled under us must
    not take the end path down. With `cancel`, an unfinished `aw` is cancelled."""
    fut = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({fut}, timeout=timeout)
    if fut not in done:
        if cancel:
            fut.cancel()
        return False
    if not fut.cancelled() and fut.exception() is not None:
        logger.debug("endcall: %r failed: %r", aw, fut.exception())
    return True


def remaining(deadline: float | None, default: float) -> float:
    """Seconds left until `deadline` (a `time.monotonic()` value); `default` without one."""
    if deadline is None:
        return default
    return max(0.0, deadline - time.monotonic())
