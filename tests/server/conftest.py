"""Fixtures for the fallback server tests (helpers live in server_support.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from server_support import API_KEY, API_SECRET, ServedApp, Stack, StackFactory

from endcall.server import Settings, create_app
from endcall.testing import LoopbackServer, RoomServiceDouble


@pytest.fixture
async def make_stack() -> AsyncIterator[StackFactory]:
    """``await make_stack(**settings)``: hub + Twirp double + fallback server, all served."""
    servers: list[ServedApp] = []
    clients: list[httpx.AsyncClient] = []

    async def serve(app: Any) -> str:
        served = ServedApp(app)
        servers.append(served)
        return await served.start()

    async def make(*, livekit_url: str | None = None, **overrides: Any) -> Stack:
        hub = LoopbackServer()
        double = RoomServiceDouble(hub, api_key=API_KEY, api_secret=API_SECRET)
        lk_url = livekit_url or await serve(double)
        values: dict[str, Any] = {
            "livekit_url": lk_url,
            "api_key": API_KEY,
            "api_secret": API_SECRET,
            "ack_timeout": 5.0,  # agents ack in ms; long enough for a loaded CI machine
            "livekit_timeout": 1.0,
            "rate_limit_identity": None,
            "rate_limit_address": None,
        }
        values.update(overrides)
        settings = Settings(**values)
        url = await serve(create_app(settings))
        client = httpx.AsyncClient(timeout=10)
        clients.append(client)
        return Stack(hub, double, url, lk_url, client, settings)

    try:
        yield make
    finally:
        for client in clients:
            await client.aclose()
        for served in servers:
            served.request_stop()
        await asyncio.gather(*(served.stop() for served in servers))


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    return await make_stack()


@pytest.fixture
async def quick_stack(make_stack: StackFactory) -> Stack:
    """For agents that never ack: a short ack timeout, so escalation comes quickly."""
    return await make_stack(ack_timeout=0.3)
