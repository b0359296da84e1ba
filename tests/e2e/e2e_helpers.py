"""Helpers for the end-to-end tests: load the examples, run ASGI apps on free local ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from endcall.testing.demo import SCENARIOS, ScenarioResult
from endcall.testing.stack import load_example
from endcall.testing.stack import serve as _serve

__all__ = ["load_example", "serve"]


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Run ``app`` on uvicorn at 127.0.0.1 on a free port; yields the base URL."""
    served = await _serve(app)
    try:
        yield served.url
    finally:
        await served.stop()


#: receiver-down: the receiver answers 503 from just before the end for 20 s, so the report
#: arrives on a later attempt; every other scenario delivers on the first
ATTEMPTS = {"receiver-down": 2}


def assert_demo_row(r: ScenarioResult, name: str) -> None:
    """One demo scenario's row on the real server (either agent): one verified report with the
    scenario's reason, delivered at the expected attempt, the candidate's last words in it."""
    scenario = next(s for s in SCENARIOS if s.name == name)
    assert r.error is None, r
    assert r.server is not None and r.server.startswith(("livekit-server 1.13", "external")), r
    assert r.delivered and r.verified is True, r
    assert r.ended_reason == scenario.expected(loopback=False), r
    expected_attempts = ATTEMPTS.get(name, 1)
    if expected_attempts > 1:
        assert r.attempts is not None and r.attempts >= expected_attempts, r
    else:
        assert r.attempts == 1, r
    # the candidate's last answer before the end made it into the report
    assert r.last_words is True, r
    assert r.ok
