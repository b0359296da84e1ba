"""``POST /v1/livekit/webhook`` (every answer a JSON body; bad input records nothing), the
reconciler's verdicts on the ledger, and ``endcall outbox why``."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from livekit import api

from endcall import protocol
from endcall.cli import main
from endcall.reports.outbox import SqliteOutbox
from endcall.reports.webhook import Webhook
from endcall.server import Settings, create_app
from endcall.server.ledger import Ledger, LedgerEvent
from endcall.server.reconcile import Reconciler

KEY, SECRET = "devkey", "s" * 40
WH_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def settings(outbox: Path | None) -> Settings:
    return Settings(
        livekit_url="http://127.0.0.1:1",
        api_key=KEY,
        api_secret=SECRET,
        relay_outbox=None if outbox is None else str(outbox),
        relay_secrets=(WH_SECRET,) if outbox else (),
    )


def token(body: bytes) -> str:
    tok = api.AccessToken(KEY, SECRET)
    tok.claims.sha256 = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return tok.with_ttl(timedelta(minutes=5)).to_jwt()


def event(name: str, room_sid: str = "RM_1", **extra: Any) -> bytes:
    doc = {"event": name, "id": f"EV_{name}_{room_sid}", "room": {"sid": room_sid, "name": "r1"}}
    doc["createdAt"] = str(int(time.time()))
    doc.update(extra)
    return json.dumps(doc).encode()


async def post(outbox: Path | None, body: bytes, **headers: str) -> httpx.Response:
    app = create_app(settings(outbox))
    hdrs = {"content-type": "application/webhook+json", "authorization": token(body)}
    hdrs.update({k.replace("_", "-"): v for k, v in headers.items()})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        return await client.post("/v1/livekit/webhook", content=body, headers=hdrs)


def events_of(outbox: Path) -> list[str]:
    ob = SqliteOutbox(outbox)
    try:
        return [e.event for e in Ledger(ob).events("RM_1")]
    finally:
        ob.close()


async def test_records_room_and_participant_events_with_kind(tmp_path: Path) -> None:
    ob = tmp_path / "o.sqlite3"
    agent = {"sid": "PA_1", "identity": "agent-1", "kind": "AGENT", "joinedAtMs": "1000"}
    r = await post(ob, event("participant_joined", participant=agent))
    assert r.status_code == 200 and r.json() == {
        "status": "recorded",
        "event": "participant_joined",
    }
    # LiveKit retried it (the same event id, signed anew)
    r = await post(ob, event("participant_joined", participant=agent, numDropped=0))
    assert r.status_code == 200 and r.json()["status"] == "duplicate"
    r = await post(ob, event("track_published"))
    assert r.status_code == 200 and r.json()["status"] == "ignored"
    store = SqliteOutbox(ob)
    (e,) = Ledger(store).events("RM_1")
    store.close()
    assert (e.identity, e.kind, e.at) == ("agent-1", "agent", 1.0)


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({"content_type": "text/plain"}, None, 415, "unsupported_media_type"),
        ({"authorization": "not-a-jwt"}, None, 401, "unauthorized"),
        ({"authorization": ""}, None, 401, "unauthorized"),
        ({}, b"x" * (1024 * 1024 + 1), 413, "payload_too_large"),
    ],
)
async def test_bad_requests_get_a_json_error_and_record_nothing(
    tmp_path: Path, headers: dict[str, str], body: bytes | None, status: int, code: str
) -> None:
    ob = tmp_path / "o.sqlite3"
    r = await post(ob, body or event("room_started"), **headers)
    assert r.status_code == status and r.json()["code"] == code
    assert not ob.exists() or events_of(ob) == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe{}",
        b"[1]",
        b'{"event": "room_started", "createdAt": 1e400}',
        b'{"event": "room_started", "room": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    ],
    ids=["text", "not utf-8", "array", "infinite", "deep"],
)
async def test_a_signed_body_that_is_not_a_livekit_event_is_a_bad_request(
    tmp_path: Path, body: bytes
) -> None:
    """Its signature (and the body's hash in it) is valid: 400 as documented, not 401."""
    ob = tmp_path / "o.sqlite3"
    r = await post(ob, body)
    assert r.status_code == 400 and r.json()["code"] == "bad_request", r.text
    assert not ob.exists() or events_of(ob) == []


async def test_an_event_without_a_room_sid_is_a_bad_request(tmp_path: Path) -> None:
    body = json.dumps({"event": "room_started", "id": "EV_x", "room": {"name": "r"}}).encode()
    r = await post(tmp_path / "o.sqlite3", body)
    assert r.status_code == 400 and r.json()["code"] == "bad_request"


async def test_without_an_outbox_the_endpoint_says_how_to_configure_it() -> None:
    r = await post(None, event("room_started"))
    assert r.status_code == 503 and r.json()["code"] == "not_configured"
    assert "ENDCALL_OUTBOX" in r.json()["message"]


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def _ledger_room(ob: SqliteOutbox, sid: str, *, agent: bool, t: float) -> None:
    ledger = Ledger(ob)
    ledger.record(LedgerEvent(f"a{sid}", "room_started", sid, "room-" + sid, at=t), f"t1{sid}")
    who = LedgerEvent(
        f"b{sid}", "participant_joined", sid, "room-" + sid, at=t + 1, identity="cand",
        participant_sid="PA_c", kind="standard",
    )  # fmt: skip
    ledger.record(who, f"t2{sid}")
    if agent:
        bot = LedgerEvent(
            f"c{sid}", "participant_joined", sid, "room-" + sid, at=t + 2, identity="agent",
            participant_sid="PA_a", kind="agent",
        )  # fmt: skip
        ledger.record(bot, f"t3{sid}")
    ledger.record(LedgerEvent(f"d{sid}", "room_finished", sid, "room-" + sid, at=t + 9), f"t4{sid}")


def test_reconciler_waits_for_the_window_then_stores_one_missing_event(tmp_path: Path) -> None:
    clock = Clock()
    ob = SqliteOutbox(tmp_path / "o.sqlite3", clock=clock)
    _ledger_room(ob, "RM_a", agent=True, t=clock.t - 20)
    webhook = Webhook(url="https://backend.test/hook", secret=WH_SECRET)
    rec = Reconciler(ob, webhook, after=30, clock=clock)
    assert rec.run_once() == []  # finished 11 s ago: still in the window
    clock.t += 30
    assert rec.run_once() == [("RM_a", "missing")]
    assert rec.run_once() == []
    row = ob.get("RM_a.missing")
    assert row is not None and row.status == "pending" and row.url == webhook.url
    doc = protocol.parse_missing(row.body)
    assert doc.cause == "no-report-from-agent" and doc.agent_joined
    assert {p.identity: p.kind for p in doc.participants} == {"cand": "standard", "agent": "agent"}
    # a second reconciler (a restart before the verdict) stores nothing new
    again = Reconciler(ob, webhook, after=30, clock=clock)
    with ob.transaction() as tx:
        tx.run("UPDATE endcall_rooms SET verdict = NULL")
    assert again.run_once() == [("RM_a", "missing")]
    assert ob.get("RM_a.missing") == row  # the same row, body and key
    ob.close()


def test_reconciler_settles_a_room_with_a_report_or_a_draft(tmp_path: Path) -> None:
    clock = Clock()
    ob = SqliteOutbox(tmp_path / "o.sqlite3", clock=clock)
    _ledger_room(ob, "RM_b", agent=True, t=clock.t - 100)
    _ledger_room(ob, "RM_n", agent=False, t=clock.t - 100)
    report = protocol.SessionEnded(
        end_id="e_1",
        ended_reason="agent-crashed",
        initiator=protocol.Initiator(kind="system"),
        room_name="room-RM_b",
        room_sid="RM_b",
        started_at=1.0,
        ended_at=2.0,
        complete=False,
    )
    ob.save_draft("e_1", "https://b.test", protocol.encode_report(report), owner="o", lease=60)
    webhook = Webhook(url="https://backend.test/hook", secret=WH_SECRET)
    assert sorted(Reconciler(ob, webhook, after=30, clock=clock).run_once()) == [
        ("RM_b", "report"),
        ("RM_n", "missing"),
    ]
    row = ob.get("RM_n.missing")
    assert row is not None
    assert protocol.parse_missing(row.body).cause == "agent-never-joined"
    assert ob.get("RM_b.missing") is None
    ob.close()


def test_outbox_why_tells_the_story_of_a_room(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    ob = SqliteOutbox(path)
    _ledger_room(ob, "RM_w", agent=False, t=time.time() - 100)
    webhook = Webhook(url="https://backend.test/hook", secret=WH_SECRET)
    Reconciler(ob, webhook, after=0).run_once()
    assert ob.renew("RM_w.missing", "x", 60) is not None  # a relay takes it, and fails
    ob.mark_failed(
        "RM_w.missing", "x", dead=False, next_attempt_at=0, status_code=503, error="HTTP 503"
    )
    ob.close()
    runner = CliRunner()
    result = runner.invoke(main, ["outbox", "--outbox", str(path), "why", "room-RM_w"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "cand (standard) joined" in out and "room finished" in out
    assert "session.missing (agent-never-joined)" in out
    assert "attempt 1 failed (HTTP 503: HTTP 503)" in out
    doc = json.loads(
        runner.invoke(main, ["outbox", "--outbox", str(path), "why", "RM_w", "--json"]).output
    )
    assert doc["reports"][0]["attempt_log"][0]["status_code"] == 503
    assert doc["verdict"].startswith("session.missing RM_w.missing is pending")


def test_outbox_why_refuses_a_missing_outbox_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "none.sqlite3"
    result = CliRunner().invoke(main, ["outbox", "--outbox", str(path), "why", "RM_x"])
    assert result.exit_code == 1 and "no outbox at" in result.output
    assert not path.exists()


def test_the_server_and_the_cli_never_import_the_agent_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys, endcall.server.app, endcall.cli, endcall.server.doctor,"
        " endcall.server.reconcile, endcall.server.tokens;"
        "bad = [m for m in sys.modules if m in ('livekit.agents', 'livekit.rtc')"
        " or m.startswith(('endcall.agent', 'endcall.testing'))]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
