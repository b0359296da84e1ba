"""The alert rules people copy (examples/prometheus), tested twice (issue 20):

- ``promtool check rules`` and ``promtool test rules``: each alert fires when it should and
  not before (Debian's ``prometheus`` package, installed by ``make``);
- a real Prometheus scraping a running ``endcall serve`` (a subprocess, the CLI): the scrape
  succeeds, and when a report goes dead (the receiver answers 410 Gone) `EndcallReportDead`
  fires from the rules file as shipped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_support import API_KEY, API_SECRET, ServedApp, free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from endcall.reports.outbox import SqliteOutbox
from endcall.testing import LoopbackServer, RoomServiceDouble

RULES = Path(__file__).resolve().parents[2] / "examples" / "prometheus"
WH_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: make installs Debian's prometheus package")
    return path


def test_the_rules_are_valid_and_their_unit_tests_pass() -> None:
    promtool = tool("promtool")
    check = subprocess.run(
        [promtool, "check", "rules", "alerts.yml"], cwd=RULES, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"], cwd=RULES, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


async def wait_for(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.25)


async def test_a_real_prometheus_scrapes_serve_and_fires_when_a_report_goes_dead(
    tmp_path: Path,
) -> None:
    prometheus = tool("prometheus")
    hub = LoopbackServer()
    livekit = ServedApp(RoomServiceDouble(hub, api_key=API_KEY, api_secret=API_SECRET))
    gone: list[bytes] = []

    async def receive(request: Request) -> Response:
        gone.append(await request.body())
        return Response(status_code=410)  # "stop sending": the report goes dead at once

    receiver = ServedApp(Starlette(routes=[Route("/r", receive, methods=["POST"])]))
    lk_url, receiver_url = await livekit.start(), await receiver.start()
    outbox = tmp_path / "outbox.sqlite3"
    serve_port, prom_port = free_port(), free_port()
    env = dict(
        os.environ,
        LIVEKIT_URL=lk_url.replace("http://", "ws://"),
        LIVEKIT_API_KEY=API_KEY,
        LIVEKIT_API_SECRET=API_SECRET,
        ENDCALL_OUTBOX=str(outbox),
        ENDCALL_WEBHOOK_SECRET=WH_SECRET,
        ENDCALL_RELAY_POLL="0.5",
    )
    serve = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "endcall.cli",
        "serve",
        "--port",
        str(serve_port),
        "--log-level",
        "warning",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    config = tmp_path / "prometheus.yml"
    shutil.copy(RULES / "alerts.yml", tmp_path / "alerts.yml")
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [alerts.yml]\n"
        "scrape_configs:\n"
        "  - job_name: endcall\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{serve_port}']}}]\n",
        encoding="utf-8",
    )
    log = (tmp_path / "prometheus.log").open("wb")
    prom = await asyncio.create_subprocess_exec(
        prometheus,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )
    api = f"http://127.0.0.1:{prom_port}/api/v1"
    try:
        async with httpx.AsyncClient(timeout=5) as client:

            async def get(url: str) -> Any:
                try:
                    resp = await client.get(url)
                except httpx.TransportError:
                    return None
                return resp.json() if resp.status_code == 200 else None

            async def scraped() -> bool:
                doc = await get(api + "/targets")
                targets = doc["data"]["activeTargets"] if doc else []
                return any(t["health"] == "up" for t in targets)

            await wait_for("Prometheus scrapes endcall serve", scraped)

            async def firing() -> list[dict[str, Any]]:
                doc = await get(api + "/alerts")
                alerts = doc["data"]["alerts"] if doc else []
                return [
                    a
                    for a in alerts
                    if a["labels"]["alertname"] == "EndcallReportDead" and a["state"] == "firing"
                ]

            await asyncio.sleep(3)  # a few evaluations with nothing dead
            assert await firing() == []
            store = SqliteOutbox(outbox)
            store.store("e_dead", receiver_url + "/r", b'{"complete":true}', owner="t", lease=0)
            store.close()
            fired = await wait_for("EndcallReportDead fires", firing)
            assert fired[0]["labels"]["severity"] == "critical"
            assert gone  # the relay of endcall serve did send it, and was told 410
            query = await get(api + '/query?query=endcall_reports_dead_total{kind="final"}')
            assert float(query["data"]["result"][0]["value"][1]) == 1.0
    finally:
        prom.terminate()
        serve.terminate()
        await asyncio.wait_for(prom.wait(), 20)
        log.close()
        await asyncio.wait_for(serve.wait(), 20)
        await livekit.stop()
        await receiver.stop()
