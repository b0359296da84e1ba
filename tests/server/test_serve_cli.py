"""``endcall serve``: the real command in a subprocess, against the Twirp double."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
from click.testing import CliRunner
from livekit import rtc
from server_support import API_KEY, API_SECRET, ServedApp, end_body, free_port, livekit_token

from endcall.cli import main
from endcall.testing import LoopbackServer, RoomServiceDouble


def test_serve_is_a_command_of_main() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for flag in ("--host", "--port", "--ack-timeout", "--escalation", "--allowed-origins"):
        assert flag in result.output


def test_serve_reports_missing_settings() -> None:
    result = CliRunner().invoke(main, ["serve"], env={"LIVEKIT_URL": "", "LIVEKIT_API_KEY": ""})
    assert result.exit_code == 2
    assert "LIVEKIT_URL" in result.output


def test_serve_rejects_a_bad_rate() -> None:
    result = CliRunner().invoke(
        main,
        ["serve", "--rate-limit-identity", "many"],
        env={"LIVEKIT_URL": "ws://x", "LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": "s"},
    )
    assert result.exit_code == 2
    assert "invalid rate" in result.output


async def test_serve_runs_the_app() -> None:
    hub = LoopbackServer()
    double = RoomServiceDouble(hub, api_key=API_KEY, api_secret=API_SECRET)
    served = ServedApp(double)
    lk_url = await served.start()
    await hub.connect("room-1", "agent-1", kind=rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)
    port = free_port()
    env = dict(
        os.environ,
        LIVEKIT_URL=lk_url.replace("http://", "ws://"),
        LIVEKIT_API_KEY=API_KEY,
        LIVEKIT_API_SECRET=API_SECRET,
        ENDCALL_ACK_TIMEOUT="0.2",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "endcall.cli",
        "serve",
        "--port",
        str(port),
        "--rate-limit-address",
        "2/minute",
        "--log-level",
        "warning",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=5) as client:
            for _ in range(200):
                try:
                    health = await client.get(base + "/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            assert health.json() == {"status": "ok"}
            headers = {"Authorization": f"Bearer {livekit_token('cust', 'room-1')}"}
            resp = await client.post(base + "/v1/end", json=end_body("r_cli"), headers=headers)
            assert resp.status_code == 202, resp.text
            assert resp.json()["escalated"] == "delete_room"  # this agent never acks
            assert not hub.room_exists("room-1")
            gone = await client.post(base + "/v1/end", json=end_body(), headers=headers)
            assert gone.status_code == 200 and gone.json()["status"] == "already_ended"
            # --rate-limit-address 2/minute: charged only by failed authentication
            junk = {"Authorization": "Bearer junk"}
            codes = [
                (await client.post(base + "/v1/end", json=end_body(), headers=junk)).status_code
                for _ in range(3)
            ]
            assert codes == [401, 401, 429]
    finally:
        proc.terminate()
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=10)
        await served.stop()
    assert b"endcall fallback server on" in stderr


async def test_serve_shows_the_kits_own_log_lines(tmp_path: Path) -> None:
    """The relay's and reconciler's lines (the `endcall` loggers) reach stderr next to
    uvicorn's: without them an operator never sees "relaying leftover reports"."""
    port = free_port()
    env = dict(
        os.environ,
        LIVEKIT_URL="ws://127.0.0.1:1",
        LIVEKIT_API_KEY=API_KEY,
        LIVEKIT_API_SECRET=API_SECRET,
        ENDCALL_OUTBOX=str(tmp_path / "outbox.sqlite3"),
        ENDCALL_WEBHOOK_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "endcall.cli",
        "serve",
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            for _ in range(400):
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/healthz")).is_success:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
    finally:
        proc.terminate()
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=10)
    assert b"INFO:     endcall.server: endcall: relaying leftover reports from" in stderr, stderr
