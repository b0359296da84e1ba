"""The Next.js example (``examples/nextjs``) on the real stack: one tab, one ``Room``, three calls.

``next start`` serves the built example (``make install`` builds it) inside this test's network
namespace, against the stack of ``test_e2e_real.py``: livekit-server 1.13.5, the example
interview agent as a worker with explicit dispatch (``interview-agent``, set by the example's
own token route), the fallback server (``endcall serve``'s app) and the example receiver.
Debian's Chromium plays the candidate in ONE tab:

1. Start → the agent joins and listens → End (``useEndInterview``) → acknowledged, disconnected;
2. Start again on the same ``Room`` (a new room from the token route) → the hook is back to
   ``idle`` → End → acknowledged;
3. Start again → close the tab: the beacon goes to the example's ``/api/end`` route
   (``endProxy``), which forwards it to the fallback server, which tells the agent.

Each interview's report is verified at the receiver with its reason. This runs inside
``scripts/in-netns`` (``make test`` does it); it never skips: a missing part fails it with the
reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from endcall.testing.browser import BrowserDriver
from endcall.testing.demo import _preflight
from endcall.testing.realstack import RealStack
from endcall.testing.stack import examples_dir, load_example

ROOT = Path(__file__).resolve().parents[2]
NEXT_DIR = ROOT / "examples" / "nextjs"
OUT = ROOT / "test-output" / "e2e-nextjs"
PAGE = "interview"
CALLS = 3
#: what the interviewer's first question begins with (examples/interview_agent.py)
FIRST_QUESTION: str = load_example("interview_agent").QUESTION_MARKERS[0]

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(600)]


# ----------------------------------------------------------------------------- the parts


def nextjs_unavailable() -> str | None:
    """Why the built Next.js example cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed"
    build_id = NEXT_DIR / ".next" / "BUILD_ID"
    if not (NEXT_DIR / "node_modules" / "next").is_dir():
        return f"{NEXT_DIR} has no node_modules: run make install (npm ci there)"
    if not build_id.is_file():
        return f"{NEXT_DIR} is not built: run make install (next build)"
    installed = NEXT_DIR / "node_modules" / "endcall" / "dist"
    for name in ("index.js", "react.js", "server.js"):
        if (installed / name).read_bytes() != (ROOT / "web" / "dist" / name).read_bytes():
            return f"{NEXT_DIR} has an old copy of endcall (dist/{name}): run make install"
    built = build_id.stat().st_mtime
    sources = [*(NEXT_DIR / "app").rglob("*"), installed / "react.js"]
    stale = [p for p in sources if p.is_file() and p.stat().st_mtime > built]
    if stale:
        return f"the Next.js build is older than {stale[0]}: run make install"
    return None


class RecordingStack(RealStack):
    """:class:`RealStack` that records every request its fallback server gets on
    ``/v1/end`` (method, headers, answer status)."""

    def __init__(self, output_dir: Path, **options: Any) -> None:
        super().__init__(output_dir, **options)
        self.end_requests: list[dict[str, Any]] = []

    def _fallback_app(self) -> Any:
        app = super()._fallback_app()

        async def recording(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] != "/v1/end":
                await app(scope, receive, send)
                return
            seen: dict[str, Any] = {
                "method": scope["method"],
                "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
                "body": "",
                "status": None,
                "answer": "",
            }
            self.end_requests.append(seen)

            async def receive_recorded() -> Any:
                message = await receive()
                if message["type"] == "http.request":
                    seen["body"] += message.get("body", b"").decode("utf-8", "replace")
                return message

            async def send_recorded(message: Any) -> None:
                if message["type"] == "http.response.start":
                    seen["status"] = message["status"]
                elif message["type"] == "http.response.body":
                    seen["answer"] += message.get("body", b"").decode("utf-8", "replace")
                await send(message)

            await app(scope, receive_recorded, send_recorded)

        return recording


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            status: int = resp.status
            return status
    except OSError:
        return 0


class NextServer:
    """``next start`` of the built example on 127.0.0.1 (the page must be a secure context)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        next_bin = NEXT_DIR / "node_modules" / "next" / "dist" / "bin" / "next"
        with open(self.log_path, "wb") as log:
            return subprocess.Popen(
                ["node", str(next_bin), "start", "-H", "127.0.0.1", "-p", str(self.port)],
                cwd=NEXT_DIR,
                env={**os.environ, "NEXT_TELEMETRY_DISABLED": "1", **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    async def start(self, timeout: float = 60.0) -> None:
        self._proc = self._spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"next start exited with {self._proc.returncode}:\n{self.log()}")
            if await asyncio.to_thread(http_status, self.url + "/") == 200:
                return
            await asyncio.sleep(0.25)
        raise RuntimeError(f"next start did not answer in {timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-30:])

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        for _ in range(100):
            if proc.poll() is not None:
                return
            await asyncio.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)


# ----------------------------------------------------------------------------- the run


@dataclass
class Call:
    """One interview in the tab, as the page showed it."""

    number: int
    room: str
    #: the hook's state just before End (or the tab close)
    state_before_end: str | None = None
    #: the page's outcome (``data-outcome`` of ``ack``); None for the tab close
    outcome: dict[str, Any] | None = None


@dataclass
class Run:
    calls: list[Call] = field(default_factory=list)
    #: the receiver's reports (webhook_id, room, ended_reason, verified, attempts, body)
    reports: list[Any] = field(default_factory=list)
    end_requests: list[dict[str, Any]] = field(default_factory=list)
    history: str | None = None
    error: str | None = None
    seconds: float = 0.0


async def play(stack: RecordingStack, browser: BrowserDriver, next_url: str, run: Run) -> None:
    await browser.open(PAGE, next_url + "/")
    await browser.wait_text(PAGE, "connection", "^disconnected$", 15)
    for number in range(1, CALLS + 1):
        await browser.click(PAGE, "start-button")
        await browser.wait_text(PAGE, "calls", f"^call {number}$", 5)
        await browser.wait_text(PAGE, "connection", "^connected$", 30)
        # the agent joined, greeted and asked the first question, and listens now
        await browser.wait_text(PAGE, "transcript", FIRST_QUESTION, 60)
        await browser.wait_text(PAGE, "agent-state", "listening", 30)
        call = Call(number, str(await browser.text(PAGE, "room")))
        call.state_before_end = await browser.text(PAGE, "end-state")
        run.calls.append(call)
        if number < CALLS:
            await browser.click(PAGE, "end-button")
            await browser.wait_text(PAGE, "ack", "Acknowledged|Not acknowledged", 20)
            raw = await browser.command(
                "eval",
                page=PAGE,
                expression="document.querySelector('[data-testid=ack]').dataset.outcome",
            )
            call.outcome = json.loads(raw)
            # endInterview() disconnects the Room: the Start button is back
            await browser.wait_text(PAGE, "connection", "^disconnected$", 30)
            await browser.wait_text(PAGE, "end-state", "ended", 5)
        else:
            run.history = await browser.text(PAGE, "history")
            await browser.screenshot(PAGE, OUT / "before-tab-close.png")
            await browser.close_page(PAGE)
    rooms = {c.room for c in run.calls}
    run.reports = await stack.receiver.wait_for(
        lambda reports: rooms <= {r.room for r in reports}, timeout=120.0
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def run() -> Run:
    problem = _preflight(need_browser=True, loopback=False) or nextjs_unavailable()
    assert problem is None, problem
    # a fresh receiver database and outbox: only this run's reports
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    result = Run()
    started = time.monotonic()
    stack = RecordingStack(OUT)
    await stack.start()
    try:
        next_server = NextServer(
            {**stack.info.env(), "ENDCALL_URL": stack.site_url}, OUT / "next.log"
        )
        try:
            await next_server.start()
            async with BrowserDriver(examples_dir() / "web") as browser:
                try:
                    await asyncio.wait_for(play(stack, browser, next_server.url, result), 420)
                except Exception as e:
                    result.error = f"{type(e).__name__}: {e}"
                    with contextlib.suppress(Exception):
                        await browser.screenshot(PAGE, OUT / "failed.png")
                finally:
                    (OUT / "browser-console.log").write_text(
                        "\n".join(browser.console) + "\n", encoding="utf-8"
                    )
        finally:
            await next_server.stop()
        result.reports = result.reports or stack.receiver.reports()
        result.end_requests = list(stack.end_requests)
    finally:
        # a call whose report never came: end its job, so the worker drains at once
        reported = {r.room for r in result.reports}
        for call in result.calls:
            if call.room not in reported:
                with contextlib.suppress(Exception):
                    await stack.delete_room(call.room)
        await stack.stop()
    result.seconds = time.monotonic() - started
    (OUT / "run.json").write_text(
        json.dumps(
            {
                "seconds": round(result.seconds, 1),
                "error": result.error,
                "calls": [c.__dict__ for c in result.calls],
                "reports": [r.summary() for r in result.reports],
                "end_requests": result.end_requests,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return result


def report_of(run: Run, call: Call) -> Any:
    mine = [r for r in run.reports if r.room == call.room]
    assert len(mine) == 1, f"{len(mine)} reports for {call.room}: {[r.summary() for r in mine]}"
    return mine[0]


def channel_of(report: Any) -> str | None:
    end = report.document.get("end") or {}
    channel = end.get("channel")
    return channel if isinstance(channel, str) else None


# ----------------------------------------------------------------------------- the checks


async def test_the_tab_played_three_interviews_on_one_room(run: Run) -> None:
    assert run.error is None, run
    assert [c.number for c in run.calls] == [1, 2, 3], run
    # each Start got a new room from the token route (and with it a new agent job)
    assert len({c.room for c in run.calls}) == CALLS, run.calls
    assert all(c.room.startswith("interview-") for c in run.calls), run.calls


async def test_each_new_connection_starts_the_hook_fresh(run: Run) -> None:
    # the same hook and Room: back to idle on every new connection (else the second End stays
    # disabled, or returns the first call's outcome and sends nothing)
    states = [c.state_before_end for c in run.calls]
    assert states == ["end: idle"] * len(states), (states, run.error)
    assert run.error is None and len(states) == CALLS, run


async def test_end_clicked_twice_in_one_tab_gives_two_reports(run: Run) -> None:
    assert run.error is None, run
    ended = [c for c in run.calls if c.outcome is not None]
    assert len(ended) == 2, run.calls
    for call in ended:
        assert call.outcome is not None
        assert call.outcome["status"] == "accepted", call
        assert call.outcome["via"] == "rpc", call
        report = report_of(run, call)
        assert report.verified and report.attempts == 1, report.summary()
        assert report.ended_reason == "customer-ended-call", report.summary()
        assert channel_of(report) == "rpc", report.summary()
        # the ack the page got names the report the receiver got
        assert call.outcome["endId"] == report.webhook_id, (call, report.summary())
    first, second = ended
    assert first.outcome is not None and second.outcome is not None
    assert first.outcome["requestId"] != second.outcome["requestId"]
    assert first.outcome["endId"] != second.outcome["endId"]
    # both ends are listed in the page's history, in order
    assert run.history is not None, run
    lines = run.history.splitlines()
    assert len(lines) == 2 and first.room in lines[0] and second.room in lines[1], run.history


async def test_tab_close_reaches_the_agent_through_the_next_proxy(run: Run) -> None:
    assert run.error is None, run
    third = run.calls[2]
    report = report_of(run, third)
    assert report.verified and report.attempts == 1, report.summary()
    assert report.ended_reason == "customer-tab-closed", report.summary()
    # the agent took the end from the fallback server, not from the page
    assert channel_of(report) == "server", report.summary()
    # the fallback server got exactly one request in the whole run: the beacon of the third
    # call, from the example's /api/end route (Node's fetch, not Chromium), answered 2xx. The
    # two clicked ends were acknowledged over RPC and sent no beacon.
    assert len(run.end_requests) == 1, run.end_requests
    request = run.end_requests[0]
    assert request["method"] == "POST", request
    assert request["status"] is not None and 200 <= request["status"] < 300, request
    assert request["headers"].get("content-type", "").startswith("text/plain"), request
    assert "Chrome" not in request["headers"].get("user-agent", ""), request
    assert "authorization" not in request["headers"], request  # a beacon carries its token


async def test_one_verified_report_per_interview(run: Run) -> None:
    assert run.error is None, run
    assert sorted(r.room for r in run.reports) == sorted(c.room for c in run.calls), [
        r.summary() for r in run.reports
    ]
    assert all(r.verified and r.duplicates == 0 for r in run.reports), [
        r.summary() for r in run.reports
    ]
    assert len({r.webhook_id for r in run.reports}) == CALLS
