"""The fallback server, configured with the agents' outbox, delivers the reports they left."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support import Receiver

from endcall.reports.outbox import SqliteOutbox, make_owner
from endcall.server import Settings, create_app

LIVEKIT = {"livekit_url": "http://127.0.0.1:9", "api_key": "key", "api_secret": "s" * 32}


async def test_server_relays_leftover_reports(
    outbox_path: Path, receiver: Receiver, secret: str
) -> None:
    body = b'{"type":"session.ended","left":"behind"}'
    ob = SqliteOutbox(outbox_path)
    ob.store("left-by-a-killed-job", receiver.url, body, owner=make_owner(), lease=0)
    ob.close()
    settings = Settings(
        **LIVEKIT, relay_outbox=str(outbox_path), relay_secrets=(secret,), relay_poll=0.1
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        for _ in range(200):
            if any(r.status == 200 for r in receiver.requests):
                break
            await asyncio.sleep(0.05)
    [received] = receiver.requests
    assert received.verified and received.body == body
    assert received.end_id == "left-by-a-killed-job"
    ob = SqliteOutbox(outbox_path)
    try:
        assert ob.get("left-by-a-killed-job").status == "delivered"  # type: ignore[union-attr]
    finally:
        ob.close()
    assert not app.state.relay.thread.is_alive(), "the relay stops with the app"


async def test_without_an_outbox_no_relay_runs() -> None:
    app = create_app(Settings(**LIVEKIT))
    async with app.router.lifespan_context(app):
        assert app.state.relay is None


def test_outbox_without_a_secret_is_refused(outbox_path: Path) -> None:
    with pytest.raises(ValueError, match="ENDCALL_WEBHOOK_SECRET"):
        Settings(**LIVEKIT, relay_outbox=str(outbox_path))


def test_outbox_and_secrets_come_from_the_environment(outbox_path: Path, secret: str) -> None:
    env = {
        "LIVEKIT_URL": LIVEKIT["livekit_url"],
        "LIVEKIT_API_KEY": "key",
        "LIVEKIT_API_SECRET": "s" * 32,
        "ENDCALL_OUTBOX": str(outbox_path),
        "ENDCALL_WEBHOOK_SECRET": f"{secret}, {secret}",
        "ENDCALL_RELAY_POLL": "5",
    }
    settings = Settings.from_env(env)
    assert settings.relay_outbox == str(outbox_path)
    assert settings.relay_secrets == (secret, secret)
    assert settings.relay_poll == 5.0


def test_a_malformed_relay_secret_is_refused_at_start(outbox_path: Path) -> None:
    """Issue 11 point 8: a malformed ENDCALL_WEBHOOK_SECRET was accepted by every relay."""
    env = {
        "LIVEKIT_URL": LIVEKIT["livekit_url"],
        "LIVEKIT_API_KEY": "key",
        "LIVEKIT_API_SECRET": "s" * 32,
        "ENDCALL_OUTBOX": str(outbox_path),
        "ENDCALL_WEBHOOK_SECRET": "whsec_tooshort",
    }
    with pytest.raises(ValueError, match="ENDCALL_WEBHOOK_SECRET: secret #1"):
        Settings.from_env(env)
