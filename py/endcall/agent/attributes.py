"""Non-blocking writer of the agent's `endcall.*` participant attributes (protocol.md §5).

`AttributeWriter.update({...})` returns at once: updates are merged and written by one
background task, in order, so a slow or failing `set_attributes` never blocks or breaks the end
path. Without permission (or once the room is gone) the writer logs once and goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

__all__ = ["AttributeTarget", "AttributeWriter"]

logger = logging.getLogger("endcall")


class AttributeTarget(Protocol):
    """What the writer needs from `rtc.LocalParticipant`."""

    async def set_attributes(self, attributes: dict[str, str]) -> None: ...


class AttributeWriter:
    """Coalescing, ordered, never-raising `set_attributes` for one participant."""

    def __init__(
        self,
        target: AttributeTarget,
        *,
        timeout: float = 5.0,
    ) -> None:
        self._target = target
        self._timeout = timeout
        self._pending: dict[str, str] = {}
        self._written: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._warned = False
        self._closed = False
        self._gate: tuple[asyncio.Future[Any], float] | None = None

    @property
    def written(self) -> dict[str, str]:
        """Attributes known to have been written (for tests and diagnostics)."""
        return dict(self._written)

    def update(self, attributes: dict[str, str], *, coalesce: float = 0.0) -> None:
        """Queue attributes; returns immediately and never raises.

        `coalesce` > 0 lets the write wait that long for more updates to merge with (used
        for the `endcall.request_id` of repeated requests, so a burst of requests costs one
        write instead of one each)."""
        if self._closed:
            return
        self._pending.update(attributes)
        self._idle.clear()
        if self._task is None or self._task.done():
            try:
                self._task = asyncio.get_running_loop().create_task(
                    self._flush(coalesce), name="endcall_attributes"
                )
            except RuntimeError:  # no running loop: nothing can be written
                self._pending.clear()
                self._idle.set()

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every queued update has been tried; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Stop writing (pending updates are dropped)."""
        self._closed = True
        self._pending.clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._idle.set()

    def hold_until(self, gate: asyncio.Future[Any], timeout: float) -> None:
        """Write nothing until ``gate`` is done (at most ``timeout`` seconds from now): the
        attributes that acknowledge an end wait for it to be durable."""
        self._gate = (gate, time.monotonic() + timeout)

    async def _flush(self, delay: float = 0.0) -> None:
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            if self._gate is not None:
                gate, until = self._gate
                if not gate.done():
                    await asyncio.wait({gate}, timeout=max(0.0, until - time.monotonic()))
            while self._pending:
                batch, self._pending = self._pending, {}
                if all(self._written.get(k) == v for k, v in batch.items()):
                    continue
                try:
                    await asyncio.wait_for(self._target.set_attributes(batch), self._timeout)
                    self._written.update(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    if not self._warned:
                        self._warned = True
                        logger.warning(
                            "endcall: cannot set participant attributes %s (%s: %s); the end "
                            "path goes on without them (further failures are not logged)",
                            sorted(batch),
                            type(e).__name__,
                            e,
                        )
        finally:
            if not self._pending:
                self._idle.set()
