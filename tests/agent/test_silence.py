"""`silence_timeout` means silence: seconds without customer speech, from the start or the end
of the customer's last speech, whatever the session's `user_away_timeout` is (issue 15)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from endcall.agent.silence import SilenceWatcher, silence_conflicts

S = 0.4  # silence_timeout of every row below
TOLERANCE = 0.2  # timer + scheduling slack on a loaded 2-core machine


class FakeSession:
    """What SilenceWatcher reads of an AgentSession, with the session's own away rule: the
    user goes `away` after `away` seconds in which nobody spoke (agent speech counts)."""

    def __init__(self, away: float | None) -> None:
        self.options = type("O", (), {"user_away_timeout": away})()
        self.user_state = "listening"
        self.handlers: dict[str, Any] = {}
        self._away = away
        self._away_handle: asyncio.TimerHandle | None = None
        self.activity()

    def on(self, name: str, cb: Any) -> None:
        self.handlers[name] = cb

    def off(self, name: str, cb: Any) -> None:
        self.handlers.pop(name, None)

    def set(self, state: str) -> None:
        self.user_state = state
        cb = self.handlers.get("user_state_changed")
        if cb is not None:
            cb(type("E", (), {"new_state": state})())

    def activity(self) -> None:
        """Someone spoke: restart the session's away countdown."""
        if self._away_handle is not None:
            self._away_handle.cancel()
        if self._away is not None:
            self._away_handle = asyncio.get_running_loop().call_later(self._away, self._go_away)

    def _go_away(self) -> None:
        if self.user_state != "speaking":  # never while the user speaks
            self.set("away")

    def transcript(self) -> None:
        cb = self.handlers.get("user_input_transcribed")
        if cb is not None:
            cb(type("T", (), {"transcript": "hm", "is_final": True})())


async def _customer_speaks(s: FakeSession, seconds: float) -> None:
    s.activity()
    s.set("speaking")
    await asyncio.sleep(seconds)
    s.set("listening")
    s.activity()


async def _agent_speaks(s: FakeSession, seconds: float) -> None:
    s.activity()
    if s.user_state == "away":
        s.set("listening")  # what AgentSession does when the agent speaks to an away user
    await asyncio.sleep(seconds)
    s.activity()


async def _run(away: float | None, script: str) -> tuple[float, float]:
    """Run one row; returns (when it fired, when it should have), relative to the start."""
    s = FakeSession(away)
    loop = asyncio.get_running_loop()
    fired = loop.create_future()
    w = SilenceWatcher(s, S, lambda: fired.done() or fired.set_result(time.monotonic()))
    t0 = time.monotonic()
    w.start()
    expected = S
    if script == "customer speaks at 0.2 for 0.3 s":
        await asyncio.sleep(0.2)
        await _customer_speaks(s, 0.3)
        expected = 0.5 + S
    elif script == "agent speaks at 0.1 for 0.2 s":
        await asyncio.sleep(0.1)
        await _agent_speaks(s, 0.2)
    elif script == "transcript only at 0.2":
        await asyncio.sleep(0.2)
        s.transcript()
        expected = 0.2 + S
    elif script == "customer speaks 0.6 s from the start":
        s.set("speaking")
        await asyncio.sleep(0.6)
        s.set("listening")
        expected = 0.6 + S
    at = await asyncio.wait_for(fired, 5.0)
    w.cancel()
    assert s.handlers.keys().isdisjoint({"user_state_changed", "user_input_transcribed"})
    return at - t0, expected


AWAY = [None, 0.1, 0.25, S, 1.0, 15.0]
SCRIPTS = [
    "silent from the start",
    "customer speaks at 0.2 for 0.3 s",
    "agent speaks at 0.1 for 0.2 s",
    "transcript only at 0.2",
    "customer speaks 0.6 s from the start",
]


async def test_the_table_of_combinations() -> None:
    """Every `user_away_timeout` (off, shorter, equal, longer, the default) × what happens."""
    rows = [(away, script) for away in AWAY for script in SCRIPTS]
    results = await asyncio.gather(*(_run(away, script) for away, script in rows))
    wrong = [
        f"away={away} {script!r}: fired at {at:.2f}s, expected {expected:.2f}s"
        for (away, script), (at, expected) in zip(rows, results, strict=True)
        if not expected - 0.02 <= at <= expected + TOLERANCE
    ]
    assert wrong == []


async def test_speaking_pauses_the_count_and_cancel_stops_it() -> None:
    s = FakeSession(None)
    fired: list[int] = []
    w = SilenceWatcher(s, 0.1, lambda: fired.append(1))
    w.start()
    s.set("speaking")
    await asyncio.sleep(0.3)  # a long answer is not silence
    assert fired == [] and w.deadline is None
    s.set("listening")
    w.cancel()
    await asyncio.sleep(0.2)
    assert fired == []
    with pytest.raises(ValueError):
        SilenceWatcher(s, 0, lambda: None)


def test_conflicting_settings_are_named() -> None:
    assert silence_conflicts(60, max_duration=1800, away_after=15) == []
    assert silence_conflicts(60, max_duration=None, away_after=None) == []
    (m,) = silence_conflicts(60, max_duration=60, away_after=15)
    assert "max_duration" in m
    (a,) = silence_conflicts(10, max_duration=None, away_after=15)
    assert "user_away_timeout (15s)" in a and "away handling never runs" in a
    assert len(silence_conflicts(20, max_duration=20, away_after=20)) == 2
