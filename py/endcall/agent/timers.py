"""`max_duration`: `MaxDurationTimer` fires once, `max_duration` seconds after `start()`.

(`silence_timeout` is `endcall.agent.silence`.) `CallTimers` starts both for one call (logging the
settings that conflict) and cancels both once the call is ending.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from endcall.agent.silence import SilenceWatcher, silence_conflicts, user_away_timeout

__all__ = ["CallTimers", "MaxDurationTimer"]

logger = logging.getLogger("endcall")


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


class CallTimers:
    """`max_duration` and `silence_timeout` of one call (either may be off: None or 0)."""

    def __init__(
        self,
        session: Any,
        *,
        max_duration: float | None,
        silence_timeout: float | None,
        on_max_duration: Callable[[], None],
        on_silence: Callable[[], None],
    ) -> None:
        self._session = session
        self.max_duration = (
            MaxDurationTimer(max_duration, on_max_duration) if max_duration else None
        )
        self.silence = (
            SilenceWatcher(session, silence_timeout, on_silence) if silence_timeout else None
        )

    def start(self) -> None:
        if self.max_duration is not None:
            self.max_duration.start()
        if self.silence is not None:
            for conflict in silence_conflicts(
                self.silence.seconds,
                max_duration=self.max_duration.seconds if self.max_duration else None,
                away_after=user_away_timeout(self._session),
            ):
                logger.warning("endcall: %s", conflict)
            self.silence.start()

    def cancel(self) -> None:
        if self.max_duration is not None:
            self.max_duration.cancel()
        if self.silence is not None:
            self.silence.cancel()
