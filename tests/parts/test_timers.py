"""`endcall.agent.timers.CallTimers`: both timers of a call, started and cancelled together."""

from __future__ import annotations

import asyncio

import pytest
from parts_fakes import FakeSession

from endcall.agent.timers import CallTimers


async def test_max_duration_fires_once_unless_cancelled() -> None:
    fired: list[str] = []
    timers = CallTimers(
        FakeSession(),
        max_duration=0.05,
        silence_timeout=None,
        on_max_duration=lambda: fired.append("max"),
        on_silence=lambda: fired.append("silence"),
    )
    timers.start()
    await asyncio.sleep(0.15)
    assert fired == ["max"]
    cancelled = CallTimers(
        FakeSession(),
        max_duration=0.05,
        silence_timeout=None,
        on_max_duration=lambda: fired.append("late"),
        on_silence=lambda: None,
    )
    cancelled.start()
    cancelled.cancel()
    await asyncio.sleep(0.1)
    assert fired == ["max"]


async def test_off_timers_do_nothing() -> None:
    timers = CallTimers(
        FakeSession(), max_duration=None, silence_timeout=0, on_max_duration=print, on_silence=print
    )
    assert timers.max_duration is None and timers.silence is None
    timers.start()
    timers.cancel()


async def test_conflicting_settings_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    timers = CallTimers(
        FakeSession(),
        max_duration=10,
        silence_timeout=20,
        on_max_duration=lambda: None,
        on_silence=lambda: None,
    )
    timers.start()
    timers.cancel()
    assert "silence_timeout" in caplog.text
