"""`endcall.agent.waits`: bounded waits that never fail because what they wait for failed."""

from __future__ import annotations

import asyncio

from endcall.agent.waits import remaining, settle


async def _fail() -> None:
    raise RuntimeError("boom")


async def test_settle() -> None:
    assert await settle(asyncio.sleep(0), 1.0) is True
    assert await settle(_fail(), 1.0) is True  # finished, its error swallowed
    slow = asyncio.ensure_future(asyncio.sleep(10))
    assert await settle(slow, 0.01) is False
    await asyncio.sleep(0)
    assert slow.cancelled()
    kept = asyncio.ensure_future(asyncio.sleep(10))
    assert await settle(kept, 0.01, cancel=False) is False and not kept.cancelled()
    kept.cancel()


def test_remaining() -> None:
    assert remaining(None, 7.0) == 7.0
    assert remaining(0.0, 7.0) == 0.0
