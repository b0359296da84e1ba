"""``/readyz`` tells the truth and ``/metrics`` shows the outbox (issue 20).

Readiness part by part: without an outbox only LiveKit counts; LiveKit unreachable → 503; with
a SQLite outbox the relay and the reconciler must be passing, and a dead report shows in the
backlog (and the metrics) without making the server unready; on PostgreSQL a real stop of the
database server turns the answer to 503 within seconds and a start brings it back to 200,
with the relay's and reconciler's loops healed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from livekit import api
from server_support import API_KEY, API_SECRET, ServedApp, Stack, StackFactory
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from endcall.cli import main
from endcall.reports.outbox import open_outbox
from endcall.server import Settings, create_app
from endcall.testing import LoopbackServer, RoomServiceDouble

WH_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.1)


class Served:
    """A fallback server with an outbox, its relay and reconciler, the loopback LiveKit and a
    receiver that accepts every report."""

    def __init__(self) -> None:
        self.apps: list[ServedApp] = []
        self.client = httpx.AsyncClient(timeout=10)
        self.received: list[bytes] = []

    async def serve(self, app: Any) -> str:
        served = ServedApp(app)
        self.apps.append(served)
        return await served.start()

    async def start(self, outbox: str, **overrides: Any) -> str:
        hub = LoopbackServer()
        livekit = await self.serve(RoomServiceDouble(hub, api_key=API_KEY, api_secret=API_SECRET))

        async def receive(request: Request) -> Response:
            self.received.append(await request.body())
            return Response(status_code=204)

        receiver = await self.serve(Starlette(routes=[Route("/r", receive, methods=["POST"])]))
        values: dict[str, Any] = {
            "livekit_url": livekit,
            "api_key": API_KEY,
            "api_secret": API_SECRET,
            "relay_outbox": outbox,
            "relay_secrets": (WH_SECRET,),
            "relay_poll": 0.2,
            "webhook_url": receiver + "/r",
            "reconcile_after": 1.0,
            "reconcile_sweep": 0.5,
        }
        values.update(overrides)
        self.url = await self.serve(create_app(Settings(**values)))
        return self.url

    async def ready(self) -> tuple[int, dict[str, Any]]:
        await asyncio.sleep(1.05)  # past the answer cache
        resp = await self.client.get(self.url + "/readyz")
        return resp.status_code, resp.json()

    async def metrics(self) -> str:
        resp = await self.client.get(self.url + "/metrics")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/plain")
        return resp.text

    async def close(self) -> None:
        await self.client.aclose()
        for app in self.apps:
            app.request_stop()
        await asyncio.gather(*(app.stop() for app in self.apps))


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    s = Served()
    try:
        yield s
    finally:
        await s.close()


async def doctor_says(served: Served, outbox: str) -> dict[str, Any]:
    """``endcall doctor --server URL --json``'s server-ready check (run in a thread: the
    server under test answers on this event loop)."""
    runner = CliRunner()
    result = await asyncio.to_thread(
        runner.invoke, main, ["doctor", "--outbox", outbox, "--server", served.url, "--json"]
    )
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    return dict(checks["server-ready"])


async def livekit_webhook(served: Served, room_sid: str) -> httpx.Response:
    """A signed ``room_started`` as LiveKit sends it."""
    body = json.dumps(
        {"event": "room_started", "id": f"EV_{room_sid}", "room": {"sid": room_sid, "name": "r"}}
    ).encode()
    token = api.AccessToken(API_KEY, API_SECRET)
    token.claims.sha256 = base64.b64encode(hashlib.sha256(body).digest()).decode()
    headers = {
        "content-type": "application/webhook+json",
        "authorization": token.with_ttl(timedelta(minutes=5)).to_jwt(),
    }
    url = served.url + "/v1/livekit/webhook"
    return await served.client.post(url, content=body, headers=headers)


def gauge(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not in the metrics")


async def test_without_an_outbox_only_livekit_counts(stack: Stack) -> None:
    resp = await stack.client.get(stack.url + "/readyz")
    assert resp.status_code == 200, resp.text
    parts = resp.json()["parts"]
    assert resp.json()["status"] == "ready"
    assert parts["livekit"]["ok"] is True
    for name in ("outbox", "relay", "reconcile"):
        assert parts[name] == {"enabled": False}
    assert "endcall_outbox_reports" not in (await stack.client.get(stack.url + "/metrics")).text


async def test_livekit_unreachable_is_not_ready(make_stack: StackFactory) -> None:
    stack = await make_stack(livekit_url="http://127.0.0.1:1")
    resp = await stack.client.get(stack.url + "/readyz")
    assert resp.status_code == 503
    doc = resp.json()
    assert doc["status"] == "not_ready"
    assert doc["parts"]["livekit"]["ok"] is False and doc["parts"]["livekit"]["error"]
    assert (await stack.client.get(stack.url + "/healthz")).status_code == 200  # liveness


async def test_sqlite_outbox_loops_pass_and_a_dead_report_shows(
    served: Served, tmp_path: Path
) -> None:
    path = tmp_path / "outbox.sqlite3"
    await served.start(str(path))

    async def relay_ok() -> bool:
        status, doc = await served.ready()
        parts = doc["parts"]
        return (
            status == 200
            and parts["relay"]["last_ok_age_s"] is not None
            and (parts["reconcile"]["last_ok_age_s"] is not None)
        )

    await eventually(relay_ok, what="the relay and reconciler passed once")
    ob = open_outbox(str(path))
    try:
        ob.store("e_dead", "http://127.0.0.1:1/gone", b"{}", owner="t", lease=30)
        ob.mark_failed("e_dead", "t", dead=True, next_attempt_at=0, status_code=410, error="gone")
        ob.store("e_late", served.url + "/nowhere", b"{}", owner="someone", lease=3600)
    finally:
        ob.close()
    status, doc = await served.ready()
    assert status == 200, doc  # a dead report is an alert, not a broken server
    backlog = doc["parts"]["backlog"]
    assert backlog["dead"] == 1 and backlog["pending"] == 1
    assert backlog["oldest_pending_age_s"] >= 0
    text = await served.metrics()
    assert gauge(text, 'endcall_outbox_reports{status="dead"}') == 1
    assert gauge(text, 'endcall_outbox_reports{status="pending"}') == 1
    assert gauge(text, "endcall_outbox_oldest_pending_age_seconds") >= 0
    assert 'endcall_loop_passes_total{loop="relay",result="ok"}' in text
    check = await doctor_says(served, str(path))
    assert check["ok"] is True and check["data"]["parts"]["backlog"]["dead"] == 1


async def test_postgres_stopped_is_not_ready_and_started_is_ready_again(served: Served) -> None:
    from endcall.testing.pgcluster import PgCluster, PgUnavailable

    cluster = PgCluster()
    try:
        cluster.init()
        cluster.start()
    except PgUnavailable as e:
        cluster.remove()
        pytest.fail(f"PostgreSQL is needed here (make installs it): {e}")
    try:
        dsn = cluster.create_database("ready")
        await served.start(dsn)
        await eventually(lambda: _status_is(served, 200), what="ready with PostgreSQL up")
        await asyncio.to_thread(cluster.stop)
        status, doc = await served.ready()
        assert status == 503, doc
        assert doc["parts"]["outbox"]["ok"] is False and doc["parts"]["outbox"]["error"]
        await eventually(
            lambda: _failing(served, "relay", "reconcile"), what="the loops report failing"
        )
        assert (await served.client.get(served.url + "/healthz")).status_code == 200
        check = await doctor_says(served, dsn)
        assert check["ok"] is False and "outbox" in check["detail"], check
        assert check["data"]["status"] == "not_ready"
        down = await livekit_webhook(served, "RM_down")
        assert down.status_code == 500 and down.json()["code"]  # LiveKit retries it
        await asyncio.to_thread(cluster.start)
        await eventually(lambda: _status_is(served, 200), what="ready again after the start")
        up = await livekit_webhook(served, "RM_up")
        assert up.status_code == 200 and up.json()["status"] == "recorded", up.text
        text = await served.metrics()
        assert gauge(text, 'endcall_livekit_webhooks_total{result="failed"}') >= 1
        status, doc = await served.ready()
        assert doc["parts"]["relay"]["failing"] is False
        assert doc["parts"]["reconcile"]["failing"] is False
        text = await served.metrics()
        assert gauge(text, 'endcall_loop_passes_total{loop="relay",result="failed"}') >= 1
    finally:
        await asyncio.to_thread(cluster.remove)


async def _status_is(served: Served, code: int) -> bool:
    return (await served.ready())[0] == code


async def _failing(served: Served, *loops: str) -> bool:
    status, doc = await served.ready()
    return status == 503 and all(doc["parts"][name]["failing"] for name in loops)
