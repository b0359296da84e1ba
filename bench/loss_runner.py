"""The report-loss benchmark's runner: plays the interviews and applies the faults.

`Bench` runs the sessions of one (scenario, agent) `Cell` in batches: it opens the page in
Chromium, plays the candidate up to the scenario's point, applies the end or fault (click,
close, kills, SIGTERM, receiver down, signalling cut, server restart) and waits for the
reports. `Slots` bounds how many interviews are active at once. The scenarios are in
`loss_scenarios.py`, the stack in `loss_stack.py`; `loss_fleet.py` extends `Bench` with the
PostgreSQL outbox and the fleet scenarios; `loss_table.py` counts what arrived.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from livekit import api
from loss_receiver import CellReceiver
from loss_scenarios import BENCH_SCHEDULE, KIT_AGENTS, Scenario
from loss_stack import AgentWorker, BenchStack, Toxiproxy

import endcall
from endcall.testing.browser import BrowserDriver
from endcall.testing.stack import examples_dir

ANSWERS = (
    "I built the payments ledger at my last job: double-entry, idempotent writes.",
    "Alerts on error budgets, and a nightly reconciliation job.",
    "Write it to a durable outbox before sending, sign it, and retry.",
)
MARKERS = ("First question", "Second question", "Third question")
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


#: the kit page's End button, pressed from inside the page: both agents' ends are one DOM call
#: through the same driver command, so what is timed is the end, not the driver's click (its
#: actionability checks wait for animation frames: ~1 s each on the saturated machine)
KIT_END_JS = """(() => {
  const button = document.querySelector('[data-testid="end-button"]');
  if (!button || button.disabled) return false;
  button.click(); return true;
})()"""


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


def metadata(cell: Cell, room: str, dispatch_key: str) -> dict[str, Any]:
    """The job's dispatch metadata. The kit's destination and retry schedule come in a dispatch
    claim signed with the workers' `ENDCALL_DISPATCH_KEY` (`endcall.job_config`, and the Node
    example's `jobConfig`, honour a per-job URL and schedule only signed or allowed); the naive
    agent reads a plain URL."""
    sc = cell.scenario
    settings: dict[str, Any] = {"agent_ends": sc.agent_ends}
    if sc.max_duration is not None:
        settings["max_duration"] = sc.max_duration
    doc: dict[str, Any] = {"scenario": settings}
    if cell.agent in KIT_AGENTS:
        signed = endcall.dispatch_metadata(
            webhook_url=cell.receiver.kit_url,
            webhook_schedule=BENCH_SCHEDULE,
            room=room,
            key=dispatch_key,
            ttl=3600,
        )
        doc.update(json.loads(signed))
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
    stack.prepare_room(room, cell.agent, metadata(cell, room, stack.dispatch_key))
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


def covered_rooms(cell: Cell) -> set[str]:
    if cell.agent == "naive":
        return {a.key for a in cell.receiver.naive}
    return {r.room for r in cell.receiver.example.reports() if r.room}


class Bench:
    """One run: the shared livekit-server, workers and Chromium, the batches of every cell,
    and the servers of their own that some faults need."""

    def __init__(self, output: Path, sessions: int, parallel: int, say: Any) -> None:
        #: the kit workers' outbox (a postgresql:// DSN shared by every stack), else a SQLite
        #: file per stack; and how many kit workers the shared stack runs
        self.outbox: str | None = None
        self.kit_workers = 1
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
        self.shared = BenchStack(self.output, "shared", self.secret, outbox=self.outbox)
        await self.shared.start()
        self.stacks.append(self.shared)
        for agent in agents:
            for _ in range(self.kit_workers if agent == "kit" else 1):
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
                    own_stack = BenchStack(self.output, tag, self.secret, outbox=self.outbox)
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
            worker.signal(signal.SIGTERM)
            await asyncio.sleep(5)
            # the end is each candidate's click (stamped just before it, as in candidate-ends):
            # from the signal, a cell's later sessions were charged for the earlier clicks,
            # which the page driver makes one after another (~2 s each under this load)
            await self.click_end(cell, browser, page_of, sessions)
        elif sc.action == "worker-kill":
            assert worker is not None
            t = now()
            worker.kill_group()
            for s in sessions:
                s.end_at = t
            # the host brings a new worker up on the same volume (the same outbox)
            await stack.start_worker(cell.agent, cwd=worker.cwd)
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
        the naive page's `room.disconnect()` — each one call inside the page (`KIT_END_JS`,
        `NAIVE_END_JS`)."""
        for s in sessions:
            if stamp:
                s.end_at = time.time()
            script = NAIVE_END_JS if cell.agent == "naive" else KIT_END_JS
            pressed = await browser.command("eval", page=page_of[s.room], expression=script)
            if pressed is not True:
                raise RuntimeError(f"{s.room}: the End button could not be pressed")

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
