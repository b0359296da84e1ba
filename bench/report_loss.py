"""Report loss: the naive agent vs the kit on a real LiveKit, under the faults of production.

Out of N interviews ending in each of the ways production ends them, how many session reports
reach the backend — the naive agent (`bench/naive_agent.py`) vs the kit
(`examples/interview_agent.py` deployed as the README says) — on livekit-server 1.13.5 with
real `AgentServer` worker processes (explicit dispatch), the example page in Chromium (fake
audio; the answer box stands in for speech) and one receiver per (scenario, agent) that
verifies Standard Webhooks signatures (kit) or takes plain JSON (naive) and records what
arrived and when.

The kit deployed as the README tells users: `setup_fnc=endcall.prewarm` (a relay in every job
process), `on_session_end=EndCall.on_session_end`, a SQLite outbox on a durable path
(`ENDCALL_OUTBOX`, one per host; the worker that replaces a killed one uses the same file),
`ENDCALL_WEBHOOK_SECRET` set for the relays. One host, so no `endcall outbox deliver` sidecar
(the README asks for one for a fleet). For the receiver-fault scenarios the retry schedule is
shortened through the job metadata (`"webhook_schedule"`, read by the example agent; printed).

Scenarios (expected `ended_reason` for the kit; `—`: nothing the agent can know):

 1 candidate-ends        the candidate clicks End                   customer-ended-call
 2 agent-ends            the agent's tool ends it after the goodbye assistant-ended-call
 3 max-duration          a 12 s limit                               exceeded-max-duration
 4 tab-closed            the candidate closes the tab               customer-tab-closed
 5 browser-killed        Chromium is SIGKILLed mid-interview        customer-disconnected
 6 worker-sigterm        SIGTERM to the worker (a redeploy); it     customer-ended-call
                         drains, the candidate clicks End 5 s later
 7 job-sigkill           the job process is SIGKILLed (OOM)         agent-crashed, complete:false
 8 worker-sigkill        the worker's process group is SIGKILLed,   agent-crashed, complete:false
                         a new worker starts on the same volume
 9 receiver-503          the receiver answers 503 for 120 s, then   customer-ended-call (late)
                         recovers; the candidate clicks End
10 receiver-unreachable  the receiver is down (connection refused)  customer-ended-call (late)
                         during the end, back 60 s later
11 signalling-cut        toxiproxy between the worker and LiveKit   —
                         cuts the agent's signalling for 60 s
12 server-restart        livekit-server is restarted mid-interview  —

Counting. The kit's receiver keeps one report per `end_id` (protocol.md §6: a crash draft has
webhook-id `<end_id>.draft`, the final report `<end_id>`; the final one replaces the draft):
`received` = sessions with at least one report; the report kept decides `with_expected_reason`
and `incomplete`; a draft followed by its final report is counted in `superseded_drafts`, not
as a duplicate. `dup_same_body` / `dup_diff_body`: a webhook-id (kit) or a room (naive)
accepted again with the same / a different body. `p50_ms`/`p99_ms`: from the end (the click,
the close, the kill, the signal, the fault; for 2 and 3 the report's `ended_at`) to the first
report accepted for the session.

Run inside the test namespace::

    scripts/in-netns .venv/bin/python bench/report_loss.py --quick        # 1 session each, ≤ 10 min
    scripts/in-netns .venv/bin/python bench/report_loss.py --sessions 20  # the README's table
    ... [--scenario NAME]... [--agent kit|naive] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from livekit import api
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from endcall.testing.browser import BrowserDriver
from endcall.testing.livekit_server import LiveKitServer, node_ip
from endcall.testing.realstack import RealStack, WorkerProcess
from endcall.testing.stack import Served, _bind, examples_dir, load_example, serve

ROOT = Path(__file__).resolve().parent.parent
NAIVE_SCRIPT = ROOT / "bench" / "naive_agent.py"
KIT_SCRIPT = examples_dir() / "interview_agent.py"
TOXIPROXY = ROOT / ".tools" / "bin" / "toxiproxy-server"
#: the kit's retry schedule for this bench (job metadata "webhook_schedule"), seconds before
#: each attempt: 11 attempts over ~8 min instead of ~46 h
BENCH_SCHEDULE = [0, 5, 10, 20, 30, 30, 60, 60, 60, 90, 120]
#: livekit-server's defaults (production), not the 3 s / 10 s of the test configuration: with a
#: 3 s departure_timeout the room closes as the kit's 3 s disconnect grace runs out (see README)
DEPARTURE_TIMEOUT = 20
EMPTY_TIMEOUT = 300
ANSWERS = (
    "I built the payments ledger at my last job: double-entry, idempotent writes.",
    "Alerts on error budgets, and a nightly reconciliation job.",
    "Write it to a durable outbox before sending, sign it, and retry.",
)
MARKERS = ("First question", "Second question", "Third question")
AGENTS = ("naive", "kit")
logger = logging.getLogger("report_loss")

# the naive page's End button: `room.disconnect()` on the page's LiveKit Room (found through
# React's RoomContext provider)
NAIVE_END_JS = """(() => {
  const root = document.getElementById('root');
  const key = Object.keys(root).find((k) => k.startsWith('__reactContainer$'));
  const stack = [root[key]]; const seen = new Set();
  while (stack.length) {
    const f = stack.pop();
    if (!f || seen.has(f)) continue; seen.add(f);
    const v = f.memoizedProps && f.memoizedProps.value;
    if (v && typeof v.disconnect === 'function' && v.localParticipant) {
      v.disconnect(); return true;
    }
    stack.push(f.child, f.sibling);
  }
  return false;
})()"""


@dataclass(frozen=True)
class Scenario:
    number: int
    name: str
    title: str
    expect: str | None
    #: how the interview ends: click, close, wait, kill-browser, job-kill, worker-term,
    #: worker-kill, signal-cut, server-restart
    action: str
    answers: int = 1
    agent_ends: bool = False
    max_duration: float | None = None
    receiver_503: float = 0.0
    receiver_unreachable: float = 0.0
    #: how long to wait for the reports after the end
    wait: float = 60.0
    #: the fault needs its own server/worker per batch
    dedicated: bool = False
    expect_incomplete: bool = False


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(1, "candidate-ends", "the candidate clicks End", "customer-ended-call", "click"),
    Scenario(
        2,
        "agent-ends",
        "the agent's tool ends it after the goodbye",
        "assistant-ended-call",
        "wait",
        answers=3,
        agent_ends=True,
    ),
    Scenario(3, "max-duration", "a 12 s limit", "exceeded-max-duration", "wait", max_duration=12.0),
    Scenario(4, "tab-closed", "the candidate closes the tab", "customer-tab-closed", "close"),
    Scenario(
        5,
        "browser-killed",
        "Chromium is SIGKILLed mid-interview",
        "customer-disconnected",
        "kill-browser",
        wait=90.0,
    ),
    Scenario(
        6,
        "worker-sigterm",
        "SIGTERM to the worker mid-interview (it drains), the candidate ends 5 s later",
        "customer-ended-call",
        "worker-term",
        dedicated=True,
    ),
    Scenario(
        7,
        "job-sigkill",
        "the job process is SIGKILLed mid-interview",
        "agent-crashed",
        "job-kill",
        wait=200.0,
        expect_incomplete=True,
    ),
    Scenario(
        8,
        "worker-sigkill",
        "the worker is SIGKILLed, a new one starts",
        "agent-crashed",
        "worker-kill",
        wait=220.0,
        dedicated=True,
        expect_incomplete=True,
    ),
    Scenario(
        9,
        "receiver-503",
        "the receiver answers 503 for 120 s",
        "customer-ended-call",
        "click",
        receiver_503=120.0,
        wait=220.0,
    ),
    Scenario(
        10,
        "receiver-unreachable",
        "the receiver is unreachable, back 60 s later",
        "customer-ended-call",
        "click",
        receiver_unreachable=60.0,
        wait=160.0,
    ),
    Scenario(
        11,
        "signalling-cut",
        "the agent's signalling is cut for 60 s",
        None,
        "signal-cut",
        wait=180.0,
        dedicated=True,
    ),
    Scenario(
        12,
        "server-restart",
        "livekit-server restarts mid-interview",
        None,
        "server-restart",
        wait=150.0,
        dedicated=True,
    ),
)


# ------------------------------------------------------------------------------- receiver


@dataclass
class Arrival:
    at: float
    key: str  # webhook-id (kit) or room name (naive)
    body: bytes
    status: int


class CellReceiver:
    """The backend of one (scenario, agent): the example receiver (Standard Webhooks verified,
    deduped by webhook-id) for the kit on ``/webhooks/session-ended``, a plain JSON recorder for
    the naive agent on ``/naive``; both answer 503 while ``down_for`` runs, and the whole port
    can be closed (``unreachable``)."""

    def __init__(self, secret: str, db: Path) -> None:
        self.example = load_example("receiver").Receiver(secret, db)
        self.naive: list[Arrival] = []
        self.served: Served | None = None
        self.port = 0

    @property
    def kit_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/session-ended"

    @property
    def naive_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/naive"

    def app(self) -> Starlette:
        async def naive(request: Request) -> Response:
            body = await request.body()
            if self.example.is_down:
                return JSONResponse({"error": "down"}, status_code=503)
            try:
                room = json.loads(body)["room"]["name"]
            except (ValueError, KeyError, TypeError):
                return JSONResponse({"error": "bad report"}, status_code=400)
            self.naive.append(Arrival(time.time(), str(room), body, 200))
            return JSONResponse({"status": "stored"})

        async def kit(request: Request) -> Response:
            # the example receiver's own handling: verify, dedupe by webhook-id, store
            headers = {k.lower(): v for k, v in request.headers.items()}
            status, answer, retry_after = self.example.handle(await request.body(), headers)
            extra = {"Retry-After": str(int(retry_after))} if retry_after else None
            return JSONResponse(answer, status_code=status, headers=extra)

        return Starlette(
            routes=[
                Route("/naive", naive, methods=["POST"]),
                Route("/webhooks/session-ended", kit, methods=["POST"]),
            ]
        )

    async def start(self) -> None:
        sock = _bind("127.0.0.1", self.port)
        self.port = sock.getsockname()[1]
        self.served = await serve(self.app(), sock=sock)

    async def stop(self) -> None:
        if self.served is not None:
            await self.served.stop()
            self.served = None

    async def unreachable_for(self, seconds: float) -> None:
        await self.stop()
        await asyncio.sleep(seconds)
        await self.start()


# ------------------------------------------------------------------------------- the stack


class AgentWorker(WorkerProcess):
    """`WorkerProcess` running ``script`` (the kit's example agent or the naive one)."""

    def __init__(self, script: Path, env: dict[str, str], log_path: Path) -> None:
        super().__init__(env, log_path)
        self.script = script

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.env, "INTERVIEW_MODELS": "scripted"}
        for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(proxy, None)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT / "py"), env.get("PYTHONPATH", "")) if p
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        return subprocess.Popen(
            [sys.executable, str(self.script), "start", "--log-level", "INFO"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )

    def kill_group(self) -> None:
        """SIGKILL the worker and its job processes (the whole process group)."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    async def wait_registered_again(self, since: int, timeout: float = 120.0) -> bool:
        """After a reconnect: a new "registered worker" line past byte ``since``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"registered worker" in self.log_path.read_bytes()[since:]:
                return True
            await asyncio.sleep(0.5)
        return False


class BenchStack(RealStack):
    """RealStack without its built-in worker: a server (own or shared), the page's site, the
    fallback server; workers are started per agent with `start_worker`. Naive rooms get the
    naive page (no fallback server, no beacon) and dispatch `naive-agent`."""

    def __init__(self, output_dir: Path, name: str, secret: str) -> None:
        super().__init__(output_dir, webhook_url="http://127.0.0.1:9/unused", webhook_secret=secret)
        self.name = name
        self._agent_for: dict[str, str] = {}
        self.workers: list[AgentWorker] = []
        self.proxy: Toxiproxy | None = None

    @property
    def outbox_path(self) -> Path:
        return self.output_dir / f"outbox-{self.name}.sqlite"

    def prepare_room(self, room: str, agent: str, metadata: dict[str, Any]) -> None:
        self._agent_for[room] = "naive-agent" if agent == "naive" else "interview-agent"
        self.prepare(room, metadata)

    def access_token(self, room: str, identity: str) -> str:
        dispatch = api.RoomAgentDispatch(
            agent_name=self._agent_for.get(room, "interview-agent"),
            metadata=self._dispatch_metadata.get(room, "{}"),
        )
        grants = api.VideoGrants(
            room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True
        )
        return (
            api.AccessToken(self.api_key, self.api_secret)
            .with_identity(identity)
            .with_name(identity)
            .with_grants(grants)
            .with_room_config(api.RoomConfiguration(agents=[dispatch]))
            .to_jwt()
        )

    def session_config(self, request: Request, room: str, identity: str) -> dict[str, Any]:
        config = super().session_config(request, room, identity)
        if self._agent_for.get(room) == "naive-agent":
            # the naive page: livekit-client only (End = room.disconnect(), no beacon)
            config.update(fallbackUrl=None, endToken=None, beaconReason=None)
        return config

    async def start(self) -> None:
        from endcall.testing.stack import _Site

        self.output_dir.mkdir(parents=True, exist_ok=True)
        # LiveKit's production room timeouts (the test default is 3 s / 10 s)
        self.server = LiveKitServer(
            log_path=self.output_dir / f"livekit-server-{self.name}.log",
            departure_timeout=DEPARTURE_TIMEOUT,
            empty_timeout=EMPTY_TIMEOUT,
        )
        self.server_info = await asyncio.to_thread(self.server.start)
        self.api_key, self.api_secret = self.info.api_key, self.info.api_secret
        site = _Site(
            bridge=None,
            roomservice=None,
            fallback=self._fallback_app(),
            session=self._session_app(),
            page=self._page_app(),
        )
        self.site = await serve(site, sock=_bind("127.0.0.1", 0))

    async def start_worker(self, agent: str, *, livekit_url: str | None = None) -> AgentWorker:
        env = {
            **self.info.env(),
            "ENDCALL_WEBHOOK_SECRET": self.webhook_secret,
            "ENDCALL_OUTBOX": str(self.outbox_path),
        }
        if livekit_url:
            env["LIVEKIT_URL"] = livekit_url
        n = len(self.workers) + 1
        worker = AgentWorker(
            NAIVE_SCRIPT if agent == "naive" else KIT_SCRIPT,
            env,
            self.output_dir / f"worker-{self.name}-{agent}-{n}.log",
        )
        await worker.start()
        self.workers.append(worker)
        return worker

    async def stop(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(Exception):
                await worker.stop(timeout=15)
        self.workers.clear()
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        await super().stop()


class Toxiproxy:
    """toxiproxy-server v2.12.0 with one TCP proxy to livekit-server's signalling port."""

    def __init__(self, upstream: str, log_path: Path) -> None:
        self.upstream = upstream  # host:port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.api_port = 0
        self.listen = ""

    def _call(self, method: str, path: str, doc: Any = None) -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}",
            data=None if doc is None else json.dumps(doc).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def start(self) -> str:
        if not os.access(TOXIPROXY, os.X_OK):
            raise SystemExit(f"{TOXIPROXY} is missing: run `make toxiproxy`")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.api_port = s.getsockname()[1]
        ip = node_ip() or "127.0.0.1"
        with socket.socket() as s:
            s.bind((ip, 0))
            listen_port = s.getsockname()[1]
        self.listen = f"{ip}:{listen_port}"
        self.proc = subprocess.Popen(
            [str(TOXIPROXY), "-host", "127.0.0.1", "-port", str(self.api_port)],
            stdout=open(self.log_path, "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                self._call("GET", "/version")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._call(
            "POST",
            "/proxies",
            {"name": "livekit", "listen": self.listen, "upstream": self.upstream},
        )
        return f"ws://{self.listen}"

    def set_enabled(self, enabled: bool) -> None:
        """Disabled: every connection through the proxy is closed, new ones are refused."""
        self._call("POST", "/proxies/livekit", {"enabled": enabled})

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# ------------------------------------------------------------------------------- sessions


@dataclass
class Session:
    scenario: str
    agent: str
    room: str
    end_at: float | None = None
    error: str | None = None


@dataclass
class Cell:
    scenario: Scenario
    agent: str
    receiver: CellReceiver
    sessions: list[Session] = field(default_factory=list)


class Slots:
    """At most ``n`` interviews in their active part at once; a batch takes its slots at once."""

    def __init__(self, n: int) -> None:
        self.free = n
        self.cond = asyncio.Condition()

    async def take(self, k: int) -> None:
        async with self.cond:
            await self.cond.wait_for(lambda: self.free >= k)
            self.free -= k

    async def give(self, k: int) -> None:
        async with self.cond:
            self.free += k
            self.cond.notify_all()


def metadata(cell: Cell) -> dict[str, Any]:
    sc = cell.scenario
    settings: dict[str, Any] = {"agent_ends": sc.agent_ends}
    if sc.max_duration is not None:
        settings["max_duration"] = sc.max_duration
    doc: dict[str, Any] = {"scenario": settings}
    if cell.agent == "kit":
        doc["webhook_url"] = cell.receiver.kit_url
        doc["webhook_schedule"] = BENCH_SCHEDULE
    else:
        doc["webhook_url"] = cell.receiver.naive_url
    return doc


async def to_mid_interview(
    stack: BenchStack, browser: BrowserDriver, cell: Cell, page: str
) -> Session:
    """Open the page and play the candidate up to the scenario's point: ``answers`` answers,
    then (unless the agent ends) the next question asked and the interviewer listening."""
    sc = cell.scenario
    room = f"rl-{sc.number}-{cell.agent}-{secrets.token_hex(3)}"
    stack.prepare_room(room, cell.agent, metadata(cell))
    session = Session(sc.name, cell.agent, room)
    cell.sessions.append(session)
    await browser.open(page, stack.page_url(room, f"candidate-{page}"))
    await browser.wait_text(page, "connection", "^connected", 45)
    for i in range(sc.answers):
        await browser.wait_text(page, "transcript", MARKERS[i], 40)
        await browser.wait_text(page, "agent-state", "listening", 30)
        await browser.fill(page, "answer-input", ANSWERS[i])
        await browser.click(page, "answer-send")
    if sc.answers < len(MARKERS) and not sc.agent_ends and sc.max_duration is None:
        await browser.wait_text(page, "transcript", MARKERS[sc.answers], 40)
        await browser.wait_text(page, "agent-state", "listening", 30)
    return session


async def job_pid(stack: BenchStack, room: str, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in await stack.participants(room):
            pid = p.attributes.get("demo.pid")
            if pid:
                return int(pid)
        await asyncio.sleep(0.2)
    raise TimeoutError(f"no agent with a demo.pid attribute in {room}")


def kill_browser_processes(driver: BrowserDriver) -> int:
    """SIGKILL the Chromium processes under the driver (the browser dies: no leave, no
    pagehide)."""
    proc = getattr(driver, "_proc", None)
    if proc is None:
        return 0
    killed = 0
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
                killed += 1
    return killed


async def close_pages(browser: BrowserDriver, pages: list[str]) -> None:
    for page in pages:
        with contextlib.suppress(Exception):
            await browser.close_page(page)


async def agent_gone(stack: BenchStack, room: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            people = await stack.participants(room)
        except Exception:
            people = []
        if not any(p.kind == api.ParticipantInfo.Kind.AGENT for p in people):
            return
        await asyncio.sleep(1.0)


async def delete_room(stack: BenchStack, room: str) -> None:
    with contextlib.suppress(Exception):
        await stack.delete_room(room)


class Bench:
    def __init__(self, output: Path, sessions: int, parallel: int, say: Any) -> None:
        self.output = output
        self.sessions = sessions
        self.batch = max(1, min(parallel, sessions))
        self.slots = Slots(parallel)
        self.startups = asyncio.Semaphore(2)
        self.say = say
        self.secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.shared: BenchStack | None = None
        self.browser: BrowserDriver | None = None
        self.stacks: list[BenchStack] = []

    async def start_shared(self, agents: list[str]) -> None:
        self.shared = BenchStack(self.output, "shared", self.secret)
        await self.shared.start()
        self.stacks.append(self.shared)
        for agent in agents:
            await self.shared.start_worker(agent)
        self.browser = BrowserDriver(examples_dir() / "web")
        await self.browser.start()

    async def stop(self) -> None:
        if self.browser is not None:
            (self.output / "browser-console.log").write_text(
                "\n".join(self.browser.console) + "\n", encoding="utf-8"
            )
            await self.browser.close()
        for stack in self.stacks:
            with contextlib.suppress(Exception):
                await stack.stop()

    async def run_cell(self, cell: Cell) -> None:
        """Batches until ``sessions`` interviews reached the fault: one that failed before
        it (a saturated machine: the greeting or a question too late) is replaced, up to as
        many replacements as sessions; the failed ones are counted apart (``not run``)."""
        n = 0
        while True:
            ran = sum(1 for s in cell.sessions if not s.error)
            if ran >= self.sessions or len(cell.sessions) >= 2 * self.sessions:
                return
            k = min(self.batch, self.sessions - ran, 2 * self.sessions - len(cell.sessions))
            n += 1
            before = len(cell.sessions)
            try:
                await self.run_batch(cell, k, n)
            except Exception as e:
                logger.exception("batch %s/%s/%d failed", cell.scenario.name, cell.agent, n)
                self.say(f"  {cell.scenario.name}/{cell.agent} batch {n}: {type(e).__name__}: {e}")
            if len(cell.sessions) == before:  # the batch failed before any interview began
                cell.sessions.extend(
                    Session(cell.scenario.name, cell.agent, f"(batch {n})", error="batch failed")
                    for _ in range(k)
                )

    async def run_batch(self, cell: Cell, k: int, n: int) -> None:
        sc = cell.scenario
        tag = f"{sc.number}-{cell.agent}-{n}"
        stack = self.shared
        browser = self.browser
        own_browser: BrowserDriver | None = None
        own_stack: BenchStack | None = None
        worker: AgentWorker | None = None
        assert stack is not None and browser is not None
        pages = [f"{tag}-{i}" for i in range(k)]
        sessions: list[Session] = []
        # the slots cover the batch's own server, worker and browser too: on 2 cores, stacks
        # started ahead and left waiting starve the interviews that are running
        await self.slots.take(k)
        released = False

        async def release() -> None:
            """The batch's active part is over: its slots go to the next batch."""
            nonlocal released
            if not released:
                released = True
                await self.slots.give(k)

        try:
            if sc.dedicated:
                async with self.startups:
                    own_stack = BenchStack(self.output, tag, self.secret)
                    self.stacks.append(own_stack)
                    await own_stack.start()
                    url = None
                    if sc.action == "signal-cut":
                        own_stack.proxy = Toxiproxy(
                            own_stack.info.url.removeprefix("ws://"),
                            self.output / f"toxiproxy-{tag}.log",
                        )
                        url = await asyncio.to_thread(own_stack.proxy.start)
                    worker = await own_stack.start_worker(cell.agent, livekit_url=url)
                stack = own_stack
            if sc.action == "kill-browser":
                own_browser = BrowserDriver(examples_dir() / "web")
                await own_browser.start()
                browser = own_browser
            results = await asyncio.gather(
                *(to_mid_interview(stack, browser, cell, p) for p in pages),
                return_exceptions=True,
            )
            for page, r in zip(pages, results, strict=True):
                if isinstance(r, Session):
                    sessions.append(r)
                else:
                    logger.error("%s: interview failed: %r", tag, r)
                    with contextlib.suppress(Exception):
                        await browser.screenshot(page, self.output / "failed" / f"{page}.png")
            for s in cell.sessions[-k:]:
                if s not in sessions:
                    # the fault was never applied: left out of the tallies, counted apart
                    s.error = "interview did not reach the end point"
                    await delete_room(stack, s.room)
            await self.act(cell, stack, browser, worker, pages, sessions, release)
            if sc.action in ("click", "worker-term"):
                # the End button's work is done when the page has left the room
                await asyncio.gather(
                    *(browser.wait_text(p, "connection", "disconnected", 30) for p in pages),
                    return_exceptions=True,
                )
            # the candidate has left by now (a page still open keeps encoding its microphone)
            if own_browser is not None:
                await own_browser.close()
                own_browser = None
            else:
                await close_pages(browser, pages)
            await release()
            await self.wait_reports(cell, sessions)
        finally:
            await release()
            if own_browser is not None:
                await own_browser.close()
            else:
                await close_pages(browser, pages)
            if own_stack is not None:
                await own_stack.stop()
                self.stacks.remove(own_stack)
            else:
                for s in sessions:
                    await delete_room(stack, s.room)

    async def act(
        self,
        cell: Cell,
        stack: BenchStack,
        browser: BrowserDriver,
        worker: AgentWorker | None,
        pages: list[str],
        sessions: list[Session],
        release: Callable[[], Awaitable[None]],
    ) -> None:
        """Apply the scenario's end or fault; ``release()`` before a long idle wait (the
        interviews are over or stuck; nothing heavy runs until the wait ends)."""
        sc = cell.scenario
        rooms = [s.room for s in sessions]
        page_of = dict(zip(rooms, pages, strict=False))
        receiver = cell.receiver
        if sc.receiver_503:
            receiver.example.down_for(sc.receiver_503)
        unreachable: asyncio.Task[None] | None = None
        if sc.receiver_unreachable:
            unreachable = asyncio.create_task(receiver.unreachable_for(sc.receiver_unreachable))
            await asyncio.sleep(0.5)
        now = time.time
        if sc.action == "click":
            await self.click_end(cell, browser, page_of, sessions)
        elif sc.action == "close":
            for s in sessions:
                s.end_at = now()
                await browser.close_page(page_of[s.room])
        elif sc.action == "wait":
            # the agent (its tool, its timer) ends it; the end time comes from the report
            await asyncio.gather(
                *(
                    browser.wait_text(page_of[s.room], "connection", "disconnected", 90)
                    for s in sessions
                ),
                return_exceptions=True,
            )
        elif sc.action == "kill-browser":
            t = now()
            kill_browser_processes(browser)
            for s in sessions:
                s.end_at = t
        elif sc.action == "job-kill":
            for s in sessions:
                pid = await job_pid(stack, s.room)
                s.end_at = now()
                os.kill(pid, signal.SIGKILL)
            await release()
            await asyncio.sleep(20)  # the candidate waits, then leaves
        elif sc.action == "worker-term":
            # a redeploy: SIGTERM makes a livekit-agents worker drain (its running jobs go on,
            # up to drain_timeout); the interview goes on and the candidate ends it
            assert worker is not None
            t = now()
            worker.signal(signal.SIGTERM)
            for s in sessions:
                s.end_at = t
            await asyncio.sleep(5)
            await self.click_end(cell, browser, page_of, sessions, stamp=False)
        elif sc.action == "worker-kill":
            assert worker is not None
            t = now()
            worker.kill_group()
            for s in sessions:
                s.end_at = t
            # the host brings a new worker up on the same volume (the same outbox)
            await stack.start_worker(cell.agent)
            await release()
            await asyncio.sleep(10)  # the candidate waits, then leaves
        elif sc.action == "signal-cut":
            assert stack.proxy is not None
            t = now()
            await asyncio.to_thread(stack.proxy.set_enabled, False)
            for s in sessions:
                s.end_at = t
            await release()
            await asyncio.sleep(60)
            await asyncio.to_thread(stack.proxy.set_enabled, True)
            await asyncio.gather(*(agent_gone(stack, r, 60) for r in rooms), return_exceptions=True)
        elif sc.action == "server-restart":
            assert stack.server is not None
            t = now()
            for s in sessions:
                s.end_at = t
            await asyncio.to_thread(stack.server.restart)
            await release()
            await asyncio.gather(*(agent_gone(stack, r, 60) for r in rooms), return_exceptions=True)
        if unreachable is not None:
            await unreachable

    async def click_end(
        self,
        cell: Cell,
        browser: BrowserDriver,
        page_of: dict[str, str],
        sessions: list[Session],
        *,
        stamp: bool = True,
    ) -> None:
        """The candidate clicks End: the kit page's button (RPC with ack, then data/REST), or
        the naive page's `room.disconnect()`."""
        for s in sessions:
            if stamp:
                s.end_at = time.time()
            if cell.agent == "naive":
                await browser.command("eval", page=page_of[s.room], expression=NAIVE_END_JS)
            else:
                await browser.click(page_of[s.room], "end-button")

    async def wait_reports(self, cell: Cell, sessions: list[Session]) -> None:
        """Until every session has a report, or the scenario's wait has passed; then a few
        seconds more for duplicates."""
        deadline = time.monotonic() + cell.scenario.wait
        while time.monotonic() < deadline:
            covered = covered_rooms(cell)
            if all(s.room in covered for s in sessions):
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(5.0)


# ------------------------------------------------------------------------------- tallies


def covered_rooms(cell: Cell) -> set[str]:
    if cell.agent == "naive":
        return {a.key for a in cell.receiver.naive}
    return {r.room for r in cell.receiver.example.reports() if r.room}


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def tally(cell: Cell) -> dict[str, Any]:
    sc = cell.scenario
    rooms = {s.room: s for s in cell.sessions if not s.error}
    received = with_expected = incomplete = dup_same = dup_diff = 0
    superseded = other_jobs = 0
    latencies: list[float] = []
    reasons: dict[str, int] = {}
    if cell.agent == "naive":
        by_room: dict[str, list[Arrival]] = {}
        for a in cell.receiver.naive:
            by_room.setdefault(a.key, []).append(a)
        for room, session in rooms.items():
            got = by_room.get(room, [])
            if not got:
                continue
            received += 1
            first = got[0]
            doc = json.loads(first.body)
            reason = doc.get("ended_reason")
            reasons[str(reason)] = reasons.get(str(reason), 0) + 1
            with_expected += int(sc.expect is not None and reason == sc.expect)
            for again in got[1:]:
                if again.body == first.body:
                    dup_same += 1
                else:
                    dup_diff += 1
            end_at = session.end_at or doc.get("ended_at")
            if end_at:
                latencies.append(first.at - float(end_at))
    else:
        stored = cell.receiver.example.reports()
        for room, session in rooms.items():
            mine = [r for r in stored if r.room == room]
            if not mine:
                continue
            received += 1
            # one report per end_id (protocol.md §6): the final replaces the draft
            by_end: dict[str, list[Any]] = {}
            for r in mine:
                by_end.setdefault(r.webhook_id.removesuffix(".draft"), []).append(r)
            first_end = min(by_end, key=lambda e: min(r.received_at for r in by_end[e]))
            other_jobs += len(by_end) - 1
            group = by_end[first_end]
            finals = [r for r in group if not r.webhook_id.endswith(".draft")]
            drafts = [r for r in group if r.webhook_id.endswith(".draft")]
            kept = finals[0] if finals else drafts[0]
            superseded += int(bool(finals and drafts))
            reason = kept.ended_reason
            reasons[str(reason)] = reasons.get(str(reason), 0) + 1
            with_expected += int(sc.expect is not None and reason == sc.expect)
            incomplete += int(kept.complete is False)
            for r in mine:
                dup_diff += r.body_mismatches
                dup_same += r.duplicates - r.body_mismatches
            end_at = session.end_at or kept.document.get("ended_at")
            if end_at:
                latencies.append(min(r.received_at for r in group) - float(end_at))
    n = len(rooms)
    p50, p99 = pct(latencies, 50), pct(latencies, 99)
    return {
        "scenario": sc.name,
        "agent": cell.agent,
        "sessions": n,
        "received": received,
        "expected_reason": sc.expect,
        "with_expected_reason": with_expected,
        "incomplete": incomplete,
        "dup_same_body": dup_same,
        "dup_diff_body": dup_diff,
        "lost": n - received,
        "p50_ms": None if p50 is None else round(p50 * 1000),
        "p99_ms": None if p99 is None else round(p99 * 1000),
        "reasons": reasons,
        "superseded_drafts": superseded,
        "other_jobs": other_jobs,
        "failed_interviews": sum(1 for s in cell.sessions if s.error),
    }


def fmt_table(rows: list[dict[str, Any]]) -> str:
    header = (
        "#",
        "scenario",
        "agent",
        "sessions",
        "received",
        "expected reason",
        "with it",
        "incomplete",
        "dup same",
        "dup diff",
        "lost",
        "p50 ms",
        "p99 ms",
        "not run",
        "reasons seen",
    )
    numbers = {s.name: s.number for s in SCENARIOS}

    def cell(v: Any) -> str:
        return "—" if v is None else str(v)

    body = [
        (
            str(numbers[r["scenario"]]),
            r["scenario"],
            r["agent"],
            cell(r["sessions"]),
            cell(r["received"]),
            cell(r["expected_reason"]),
            cell(r["with_expected_reason"]) if r["expected_reason"] else "—",
            cell(r["incomplete"]),
            cell(r["dup_same_body"]),
            cell(r["dup_diff_body"]),
            cell(r["lost"]),
            cell(r["p50_ms"]),
            cell(r["p99_ms"]),
            cell(r["failed_interviews"]),
            ", ".join(f"{k} ×{v}" for k, v in sorted(r["reasons"].items())) or "—",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def totals(rows: list[dict[str, Any]], agent: str) -> str:
    mine = [r for r in rows if r["agent"] == agent]
    n = sum(r["sessions"] for r in mine)
    got = sum(r["received"] for r in mine)
    lost = sum(r["lost"] for r in mine)
    knowable = [r for r in mine if r["expected_reason"]]
    exp_n = sum(r["sessions"] for r in knowable)
    exp = sum(r["with_expected_reason"] for r in knowable)
    diff = sum(r["dup_diff_body"] for r in mine)
    pct_lost = 100 * lost / n if n else 0.0
    return (
        f"TOTAL {agent:5}  sessions {n}  received {got}  lost {lost} ({pct_lost:.0f} %)  "
        f"expected reason {exp}/{exp_n}  incomplete {sum(r['incomplete'] for r in mine)}  "
        f"dup same body {sum(r['dup_same_body'] for r in mine)}  dup diff body {diff}"
    )


# ------------------------------------------------------------------------------- main


async def run(args: argparse.Namespace, output: Path, say: Any) -> list[dict[str, Any]]:
    chosen = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    agents = [a for a in AGENTS if not args.agent or a == args.agent]
    # the long waits first, so they overlap the rest
    chosen.sort(key=lambda s: -s.wait)
    bench = Bench(output, args.sessions, args.parallel, say)
    cells: list[Cell] = []
    try:
        await bench.start_shared(agents)
        for sc in chosen:
            for agent in agents:
                rec = CellReceiver(bench.secret, output / f"reports-{sc.number}-{agent}.sqlite")
                await rec.start()
                cells.append(Cell(sc, agent, rec))
        say(
            f"server: livekit-server (shared + one per batch for 6, 8, 11, 12), "
            f"{len(cells)} cells × {args.sessions} sessions, {args.parallel} interviews at a "
            f"time; kit retry schedule for this bench: {BENCH_SCHEDULE} s"
        )
        started = time.monotonic()

        async def one(cell: Cell) -> None:
            await bench.run_cell(cell)
            row = tally(cell)
            say(
                f"[{time.monotonic() - started:4.0f} s] {cell.scenario.number:2} "
                f"{cell.scenario.name}/{cell.agent}: received {row['received']}/"
                f"{row['sessions']}, reasons {row['reasons']}"
            )

        await asyncio.gather(*(one(c) for c in cells))
    finally:
        await bench.stop()
        for c in cells:
            with contextlib.suppress(Exception):
                await c.receiver.stop()
    order = {s.name: s.number for s in SCENARIOS}
    rows = sorted((tally(c) for c in cells), key=lambda r: (order[r["scenario"]], r["agent"]))
    for c in cells:
        c.receiver.example.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 session per scenario and agent")
    parser.add_argument("--sessions", type=int, default=None, help="sessions per scenario/agent")
    parser.add_argument("--parallel", type=int, default=3, help="interviews active at a time")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[s.name for s in SCENARIOS],
        help="only this scenario (repeatable)",
    )
    parser.add_argument("--agent", choices=AGENTS, help="only this agent")
    parser.add_argument("--json", action="store_true", help="one JSON object per line and cell")
    parser.add_argument("--output", type=Path, default=Path("test-output/report-loss"))
    args = parser.parse_args()
    args.sessions = args.sessions or (1 if args.quick else 20)
    if node_ip() is None:
        sys.exit(
            "bench/report_loss.py: run it inside the test network namespace: "
            "scripts/in-netns .venv/bin/python bench/report_loss.py --quick"
        )
    output = args.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    for old in output.glob("*.sqlite*"):
        old.unlink()
    handler = logging.FileHandler(output / "bench.log", mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    for noisy in ("livekit", "livekit.agents", "httpx", "httpcore", "asyncio", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def say(msg: str) -> None:
        logger.info("%s", msg)
        print(msg, file=sys.stderr, flush=True)

    t0 = time.monotonic()
    rows = asyncio.run(run(args, output, say))
    say(f"done in {time.monotonic() - t0:.0f} s; logs in {output}")
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return
    print(fmt_table(rows))
    for agent in AGENTS:
        if any(r["agent"] == agent for r in rows):
            print(totals(rows, agent))


if __name__ == "__main__":
    main()
