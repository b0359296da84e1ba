"""`silence_timeout`: end the call after that many seconds without customer speech.

Silence is counted from the start of the call (`EndCall.start()`) or from the end of the
customer's last speech, whichever is later; while the customer speaks it does not count. It is
independent of the session's `user_away_timeout`: that one only flips `user_state` to
`"away"` (and counts the agent's speech as activity); `"away"` changes nothing here.

What counts as customer speech: the session's `user_state` being `"speaking"` (VAD or the
STT's start/end of speech) and any user transcript (`user_input_transcribed`), for STTs that
send transcripts without speech events. The agent's own speech does not reset the count.

`silence_conflicts(...)` names the settings that make `silence_timeout` surprising; EndCall
logs each one as a warning when it starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["SilenceWatcher", "silence_conflicts", "user_away_timeout"]

logger = logging.getLogger("endcall")


def user_away_timeout(session: Any) -> float | None:
    """The session's `user_away_timeout` (None: away detection is off or unknown)."""
    value = getattr(getattr(session, "options", None), "user_away_timeout", None)
    return float(value) if isinstance(value, (int, float)) else None


def silence_conflicts(
    silence_timeout: float, *, max_duration: float | None, away_after: float | None
) -> list[str]:
    """Human-readable warnings for settings that conflict with `silence_timeout`."""
    out: list[str] = []
    if max_duration is not None and max_duration <= silence_timeout:
        out.append(
            f"silence_timeout ({silence_timeout:g}s) is not shorter than max_duration "
            f"({max_duration:g}s): the call always ends on max_duration first"
        )
    if away_after is not None and away_after >= silence_timeout:
        out.append(
            f"silence_timeout ({silence_timeout:g}s) is not longer than the session's "
            f"user_away_timeout ({away_after:g}s): the call ends on silence before the session "
            "ever marks the customer away, so away handling never runs"
        )
    return out


class SilenceWatcher:
    """Calls `fire()` once the customer has not spoken for `seconds` (see the module doc)."""

    def __init__(self, session: Any, seconds: float, fire: Callable[[], None]) -> None:
        if seconds <= 0:
            raise ValueError("silence_timeout must be > 0")
        self._session = session
        self._seconds = seconds
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None
        self._speaking = False
        self._started = False

    @property
    def seconds(self) -> float:
        return self._seconds

    @property
    def deadline(self) -> float | None:
        """When it fires (`loop.time()`), or None while the customer speaks / after cancel."""
        return self._handle.when() if self._handle is not None else None

    def start(self) -> None:
        """Start counting now (the call's start), unless the customer is speaking."""
        if self._started:
            return
        self._started = True
        self._session.on("user_state_changed", self._on_user_state)
        self._session.on("user_input_transcribed", self._on_transcript)
        self._speaking = getattr(self._session, "user_state", None) == "speaking"
        if not self._speaking:
            self._arm()

    def cancel(self) -> None:
        if self._started:
            self._started = False
            for event, cb in (
                ("user_state_changed", self._on_user_state),
                ("user_input_transcribed", self._on_transcript),
            ):
                try:
                    self._session.off(event, cb)
                except Exception:  # not registered
                    pass
        self._disarm()

    def _on_user_state(self, ev: Any) -> None:
        if not self._started:
            return
        if getattr(ev, "new_state", None) == "speaking":
            self._speaking = True
            self._disarm()
        elif self._speaking:
            # the customer stopped speaking: silence counts from now ("away" is no speech)
            self._speaking = False
            self._arm()

    def _on_transcript(self, _ev: Any) -> None:
        if self._started and not self._speaking:
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._handle = asyncio.get_running_loop().call_later(self._seconds, self._fire)

    def _disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
