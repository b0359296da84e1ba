"""The two time limits: `max_duration` and `silence_timeout`.

- `MaxDurationTimer` fires once, `max_duration` seconds after `start()`.
- `SilenceWatcher` builds on AgentSession's user-away machinery: the session flips
  `user_state` to `"away"` after `user_away_timeout` seconds (default 15 s) in which neither the
  user nor the agent spoke. The watcher starts counting when the user goes away and fires when
  the user has been silent `silence_timeout` seconds in all (i.e. `silence_timeout -
  user_away_timeout` after the flip); any other user state cancels it. With a
  `silence_timeout` shorter than the session's `user_away_timeout`, it fires at the flip.
  A session with `user_away_timeout=None` never goes away: the watcher logs that once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["MaxDurationTimer", "SilenceWatcher"]

logger = logging.getLogger("endcall")


class MaxDurationTimer:
    """Calls `fire()` once, `seconds` after `start()`, unless cancelled."""

    def __init__(self, seconds: float, fire: Callable[[], None]) -> None:
        if seconds <= 0:
            raise ValueError("max_duration must be > 0")
        self._seconds = seconds
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self._seconds, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


class SilenceWatcher:
    """Fires `fire()` when the session's user has been away long enough."""

    def __init__(self, session: Any, seconds: float, fire: Callable[[], None]) -> None:
        if seconds <= 0:
            raise ValueError("silence_timeout must be > 0")
        self._session = session
        self._seconds = seconds
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None
        self._started = False

    @property
    def away_after(self) -> float | None:
        """The session's `user_away_timeout` (None: away detection is off)."""
        opts = getattr(self._session, "options", None)
        value = getattr(opts, "user_away_timeout", None)
        return float(value) if value is not None else None

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        away = self.away_after
        if away is None:
            logger.warning(
                "endcall: silence_timeout is set but the AgentSession has user_away_timeout=None;"
                " the session never marks the user away, so the call never times out on silence"
            )
        elif away > self._seconds:
            logger.info(
                "endcall: silence_timeout (%.1fs) is shorter than the session's "
                "user_away_timeout (%.1fs); silence ends the call when the user goes away",
                self._seconds,
                away,
            )
        self._session.on("user_state_changed", self._on_user_state)
        if getattr(self._session, "user_state", None) == "away":
            self._arm()

    def cancel(self) -> None:
        if self._started:
            self._started = False
            try:
                self._session.off("user_state_changed", self._on_user_state)
            except Exception:  # not registered
                pass
        self._disarm()

    def _on_user_state(self, ev: Any) -> None:
        if getattr(ev, "new_state", None) == "away":
            self._arm()
        else:
            self._disarm()

    def _arm(self) -> None:
        self._disarm()
        away = self.away_after or 0.0
        delay = max(0.0, self._seconds - away)
        self._handle = asyncio.get_running_loop().call_later(delay, self._fire)

    def _disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
