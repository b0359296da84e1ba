"""`max_duration`: `MaxDurationTimer` fires once, `max_duration` seconds after `start()`.

(`silence_timeout` is `endcall.silence`.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["MaxDurationTimer"]


class MaxDurationTimer:
    """Calls `fire()` once, `seconds` after `start()`, unless cancelled."""

    def __init__(self, seconds: float, fire: Callable[[], None]) -> None:
        if seconds <= 0:
            raise ValueError("max_duration must be > 0")
        self._seconds = seconds
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None

    @property
    def seconds(self) -> float:
        return self._seconds

    def start(self) -> None:
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self._seconds, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
