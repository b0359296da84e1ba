"""``endcall doctor``: one test per check, each catching the misconfiguration it lists, plus the
command line (✓/✗ lines, --json, exit code) and the read-only refusal of a missing outbox."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks
from click.testing import CliRunner
from server_support import API_KEY, API_SECRET, ServedApp

from endcall.cli import main
from endcall.reports.outbox import SqliteOutbox
from endcall.reports.outbox.sql import SqlOutbox
from endcall.server.doctor import Check, DoctorOptions, run_checks
from endcall.server.ledger import Ledger, LedgerEvent
from endcall.testing import LoopbackServer, RoomServiceDouble

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER = "whsec_" + "B" * 43


def _mountinfo(tmp_path: Path, kind: str) -> str:
    path = tmp_path / f"mountinfo-{kind}"
    path.write_text(f"20 1 0:1 / / rw,relatime - {kind} src rw\n")
    return str(path)


def verifying(request: httpx.Request) -> httpx.Response:
    """A receiver that verifies the signature (and stores nothing for a ping)."""
    try:
        standardwebhooks.Webhook(SECRET).verify(request.content, dict(request.headers))
    except standardwebhooks.WebhookVerificationError:
        return httpx.Response(401)
    assert json.loads(request.content)["type"] == "endcall.ping"
    return httpx.Response(204)


def make_outbox(tmp_path: Path) -> Path:
    path = tmp_path / "outbox.sqlite3"
    SqliteOutbox(path).close()
    return path


def options(tmp_path: Path, **changes: Any) -> DoctorOptions:
    values: dict[str, Any] = {
        "outbox": str(make_outbox(tmp_path)),
        "webhook_url": "https://backend.test/hook",
        "secrets": (SECRET,),
        "mountinfo": _mountinfo(tmp_path, "ext4"),
    }
    values.update(changes)
    return DoctorOptions(**values)


def check(checks: list[Check], name: str) -> Check:
    (found,) = [c for c in checks if c.name == name]
    return found


def run(opts: DoctorOptions, handler: Any = verifying) -> list[Check]:
    return run_checks(opts, transport=httpx.MockTransport(handler))


def test_outbox_reachable_refuses_a_missing_outbox_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "outbox.sqlite3"
    c = check(run(options(tmp_path, outbox=str(missing))), "outbox-reachable")
    assert not c.ok and "no outbox at" in c.detail and "ENDCALL_OUTBOX" in c.fix
    assert not missing.exists() and not missing.parent.exists()
    assert check(run(options(tmp_path)), "outbox-reachable").ok


def test_outbox_writable_catches_a_read_only_outbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert check(run(options(tmp_path)), "outbox-writable").ok

    def readonly(self: SqlOutbox) -> None:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(SqlOutbox, "probe", readonly)
    c = check(run(options(tmp_path)), "outbox-writable")
    assert not c.ok and "readonly" in c.detail


@pytest.mark.parametrize("kind", ["overlay", "tmpfs", "nfs4"])
def test_outbox_durable_catches_storage_that_does_not_last(tmp_path: Path, kind: str) -> None:
    c = check(run(options(tmp_path, mountinfo=_mountinfo(tmp_path, kind))), "outbox-durable")
    assert not c.ok and kind in c.detail
    assert check(run(options(tmp_path)), "outbox-durable").ok


@pytest.mark.parametrize(
    ("url", "secrets", "says"),
    [
        (None, (SECRET,), "ENDCALL_WEBHOOK_URL is not set"),
        ("ftp://backend.test/hook", (SECRET,), "http"),
        ("https://backend.test/hook", (), "ENDCALL_WEBHOOK_SECRET is not set"),
        ("https://backend.test/hook", ("whsec_short",), "secret #1"),
    ],
)
def test_webhook_config_catches_a_malformed_url_or_secret(
    tmp_path: Path, url: str | None, secrets: tuple[str, ...], says: str
) -> None:
    c = check(run(options(tmp_path, webhook_url=url, secrets=secrets)), "webhook-config")
    assert not c.ok and says in c.detail


def test_receiver_ping_passes_with_a_verifying_receiver(tmp_path: Path) -> None:
    c = check(run(options(tmp_path)), "receiver-ping")
    assert c.ok, c.detail


def test_receiver_ping_catches_a_receiver_that_refuses_or_has_another_secret(
    tmp_path: Path,
) -> None:
    c = check(run(options(tmp_path, secrets=(OTHER,))), "receiver-ping")
    assert not c.ok and "HTTP 401" in c.detail and "secret" in c.fix
    c = check(run(options(tmp_path), lambda r: httpx.Response(404)), "receiver-ping")
    assert not c.ok and "HTTP 404" in c.detail


def test_receiver_ping_catches_a_receiver_that_does_not_verify(tmp_path: Path) -> None:
    c = check(run(options(tmp_path), lambda r: httpx.Response(200)), "receiver-ping")
    assert not c.ok and "forged" in c.detail


def test_receiver_ping_catches_an_unreachable_receiver(tmp_path: Path) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    c = check(run(options(tmp_path), down), "receiver-ping")
    assert not c.ok and "cannot be reached" in c.detail


async def test_livekit_credentials_are_tried_with_list_rooms(tmp_path: Path) -> None:
    import asyncio

    double = RoomServiceDouble(LoopbackServer(), api_key=API_KEY, api_secret=API_SECRET)
    served = ServedApp(double)
    url = await served.start()
    try:
        good = options(tmp_path, livekit_url=url, api_key=API_KEY, api_secret=API_SECRET)
        c = await asyncio.to_thread(lambda: check(run(good), "livekit-credentials"))
        assert c.ok, c.detail
        bad = options(tmp_path, livekit_url=url, api_key=API_KEY, api_secret="wrong" * 8)
        c = await asyncio.to_thread(lambda: check(run(bad), "livekit-credentials"))
        assert not c.ok and "ListRooms failed" in c.detail
    finally:
        await served.stop()
    c = check(run(options(tmp_path)), "livekit-credentials")
    assert not c.ok and "LIVEKIT_URL" in c.detail


def test_ledger_recent_catches_webhooks_that_never_arrive(tmp_path: Path) -> None:
    opts = options(tmp_path)
    c = check(run(opts), "ledger-recent")
    assert not c.ok and "ever recorded" in c.detail and "/v1/livekit/webhook" in c.fix
    ob = SqliteOutbox(opts.outbox)
    Ledger(ob).record(LedgerEvent("EV_1", "room_started", "RM_1", "r", at=time.time()), "t1")
    ob.close()
    assert check(run(opts), "ledger-recent").ok
    stale = options(tmp_path, outbox=opts.outbox, ledger_max_age=0.0)
    time.sleep(0.01)
    c = check(run(stale), "ledger-recent")
    assert not c.ok and "old" in c.detail


def test_outbox_backlog_catches_dead_rows_and_old_pending_rows(tmp_path: Path) -> None:
    opts = options(tmp_path)
    assert check(run(opts), "outbox-backlog").ok
    ob = SqliteOutbox(opts.outbox)
    ob.store("e_pending", "https://b.test", b"{}", owner="o", lease=0)
    ob.close()
    assert check(run(opts), "outbox-backlog").ok
    c = check(run(options(tmp_path, outbox=opts.outbox, max_pending_age=0.0)), "outbox-backlog")
    assert not c.ok and "oldest pending" in c.detail and "deliver --forever" in c.fix
    ob = SqliteOutbox(opts.outbox)
    ob.store("e_dead", "https://b.test", b"{}", owner="o", lease=60)
    ob.mark_failed("e_dead", "o", dead=True, next_attempt_at=0, status_code=410, error="HTTP 410")
    ob.close()
    c = check(run(opts), "outbox-backlog")
    assert not c.ok and "dead 1" in c.detail and "replay --dead" in c.fix


@pytest.mark.parametrize(
    ("changes", "ok", "says"),
    [
        ({}, True, ""),
        ({"in_process_window": 290.0}, False, "session_end_timeout"),
        ({"session_end_timeout": 60.0}, False, "session_end_timeout"),
        ({"shutdown_process_timeout": 2.0}, False, "shutdown_process_timeout"),
    ],
)
def test_agent_timeouts_against_the_delivery_window(
    tmp_path: Path, changes: dict[str, float], ok: bool, says: str
) -> None:
    c = check(run(options(tmp_path, **changes)), "agent-timeouts")
    assert c.ok is ok and says in c.fix


def test_cli_prints_lines_and_exits_1_when_something_would_lose_reports(tmp_path: Path) -> None:
    env = {
        "ENDCALL_OUTBOX": str(tmp_path / "missing.sqlite3"),
        "ENDCALL_WEBHOOK_URL": "",
        "ENDCALL_WEBHOOK_SECRET": "",
        "LIVEKIT_URL": "",
    }
    result = CliRunner().invoke(main, ["doctor"], env=env)
    assert result.exit_code == 1
    assert "✗ outbox-reachable" in result.output and "→" in result.output
    assert "✓ agent-timeouts" in result.output
    assert not (tmp_path / "missing.sqlite3").exists()
    result = CliRunner().invoke(main, ["doctor", "--json"], env=env)
    doc = json.loads(result.output)
    assert result.exit_code == 1 and doc["ok"] is False
    assert {c["name"] for c in doc["checks"]} >= {"outbox-reachable", "agent-timeouts"}


def test_every_check_passes_on_a_good_setup(tmp_path: Path) -> None:
    opts = options(tmp_path)
    ob = SqliteOutbox(opts.outbox)
    Ledger(ob).record(LedgerEvent("EV_1", "room_started", "RM_1", "r", at=time.time()), "t1")
    ob.close()
    checks = run(opts)
    failing = [c for c in checks if not c.ok]
    # LiveKit is not configured here; everything else passes
    assert [c.name for c in failing] == ["livekit-credentials"]
