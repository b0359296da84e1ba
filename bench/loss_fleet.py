"""The report-loss benchmark's fleet: a shared PostgreSQL outbox, worker hosts, `endcall serve`
replicas, and the faults of that infrastructure.

`FleetBench` is `Bench` with a PostgreSQL outbox (`--outbox postgres`: one real cluster for
the shared stack and the stacks of scenarios 6, 8, 11, 12, two kit workers on the shared one)
and the fleet scenarios (`loss_scenarios.FLEET`). Each fleet batch gets a `Fleet` of its own:
a livekit-server whose webhooks go to every `endcall serve` replica (its config's
`webhook.urls`), a PostgreSQL cluster (`endcall.testing.pgcluster`: a real server process,
stopped and started for real), `ServeProcess` replicas (`python -m endcall.cli serve` with
`ENDCALL_OUTBOX`, `ENDCALL_WEBHOOK_URL` = the cell's receiver, so their reconcilers send
`session.missing` there), and worker `Host`s (a directory standing for the host's local disk:
its TMPDIR, and its SQLite outbox in `host-lost-sqlite`). The naive agent has no database and
no `endcall serve`: its fleet cells run the same interviews, ends and host/receiver faults on
a livekit-server and workers of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from loss_runner import (
    ANSWERS,
    MARKERS,
    Bench,
    Cell,
    Session,
    close_pages,
    covered_rooms,
    delete_room,
    logger,
    metadata,
    to_mid_interview,
)
from loss_scenarios import KIT_AGENTS
from loss_stack import ROOT, AgentWorker, BenchStack

from endcall.testing.browser import BrowserDriver
from endcall.testing.pgcluster import PgCluster

#: `endcall serve` in the fleet: settle a finished room this long after `room_finished`
#: (production default 300 s), sweep ListRooms this often, relay every RELAY_POLL seconds
RECONCILE_AFTER = 60.0
RECONCILE_SWEEP = 30.0
RELAY_POLL = 5.0
#: how long PostgreSQL stays down in a restart, and in the restart as the report is stored
PG_RESTART_DOWN = 5.0
PG_STORE_OUTAGE = 10.0
#: pg-late: how long after the workers and `endcall serve` are up the database comes up; the
#: candidates arrive at once, and each waits this long plus a minute for the interviewer
PG_LATE = 60.0
#: serve-replica-killed: seconds after the End clicks that replica 1 is SIGKILLed
SERVE_KILL_AFTER = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServeProcess:
    """``python -m endcall.cli serve`` as a child process (its own process group)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = _free_port()
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def livekit_webhook_url(self) -> str:
        return self.url + "/v1/livekit/webhook"

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT / "py"), env.get("PYTHONPATH", "")) if p
        )
        for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(proxy, None)
        with open(self.log_path, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "endcall.cli", "serve", "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    async def start(self, timeout: float = 60.0) -> None:
        self.proc = await asyncio.to_thread(self._spawn)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"endcall serve exited with {self.proc.returncode}")
            if await asyncio.to_thread(self._healthy):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"endcall serve did not answer /healthz in {timeout:.0f} s")

    def kill(self) -> None:
        """SIGKILL (the replica's process group): no shutdown, no lifespan."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 10)


class Host:
    """A worker host: one worker process and a directory for its local disk."""

    def __init__(self, name: str, disk: Path) -> None:
        self.name = name
        self.disk = disk
        self.worker: AgentWorker | None = None

    def lose(self) -> None:
        """The host is gone: its processes SIGKILLed (the worker's whole process group, its
        job processes too), its local disk deleted."""
        if self.worker is not None:
            self.worker.kill_group()
        shutil.rmtree(self.disk, ignore_errors=True)


class Fleet:
    """The infrastructure of one fleet batch (see the module doc)."""

    def __init__(self, bench: Bench, cell: Cell, tag: str) -> None:
        self.bench = bench
        self.cell = cell
        self.tag = tag
        self.kit = cell.agent == "kit"
        sc = cell.scenario
        self.sqlite = sc.fleet_outbox == "sqlite"
        self.cluster: PgCluster | None = None
        self.dsn: str | None = None
        self.serves: list[ServeProcess] = []
        self.hosts: list[Host] = []
        self.stack: BenchStack | None = None
        self.pg_up: asyncio.Task[None] | None = None
        self.ledger_target: str | None = None

    @property
    def output(self) -> Path:
        return Path(self.bench.output)

    async def start(self) -> None:
        sc = self.cell.scenario
        secret = self.bench.secret
        if self.kit and not self.sqlite:
            base = Path(tempfile.mkdtemp(prefix=f"pg-{self.tag}-", dir=self.output))
            self.cluster = PgCluster(base)
            await asyncio.to_thread(self.cluster.init)
            await asyncio.to_thread(self.cluster.start)
            self.dsn = await asyncio.to_thread(self.cluster.create_database, "endcall")
            if sc.action == "pg-late":
                await asyncio.to_thread(self.cluster.stop)
        if self.kit:
            for i in range(sc.serve_replicas):
                self.serves.append(ServeProcess({}, self.output / f"serve-{self.tag}-{i + 1}.log"))
        self.stack = BenchStack(
            self.output,
            self.tag,
            secret,
            outbox=self.dsn,
            webhook_urls=[s.livekit_webhook_url for s in self.serves],
        )
        await self.stack.start()
        if self.serves:
            if self.dsn is None:  # its own ledger (and outbox), on its own disk
                serve_disk = self.output / f"serve-{self.tag}"
                serve_disk.mkdir(exist_ok=True)
                self.ledger_target = str(serve_disk / "ledger.sqlite")
            else:
                self.ledger_target = self.dsn
            env = {
                **self.stack.info.env(),
                "ENDCALL_OUTBOX": self.ledger_target,
                "ENDCALL_WEBHOOK_URL": self.cell.receiver.kit_url,
                "ENDCALL_WEBHOOK_SECRET": secret,
                "ENDCALL_RECONCILE_AFTER": str(RECONCILE_AFTER),
                "ENDCALL_RECONCILE_SWEEP": str(RECONCILE_SWEEP),
                "ENDCALL_RELAY_POLL": str(RELAY_POLL),
            }
            for serve in self.serves:
                serve.env = env
            await asyncio.gather(*(serve.start() for serve in self.serves))
        # host-lost: the interviews land on host A; host B comes up before A is lost
        names = ["A"] if sc.action == "host-lost" or not self.kit else ["A", "B"]
        await asyncio.gather(*(self.add_host(name) for name in names))
        if sc.action == "pg-late" and self.cluster is not None:
            self.pg_up = asyncio.create_task(self._pg_up_at(time.monotonic() + PG_LATE))

    async def _pg_up_at(self, when: float) -> None:
        assert self.cluster is not None
        await asyncio.sleep(max(0.0, when - time.monotonic()))
        await asyncio.to_thread(self.cluster.start)
        logger.info("%s: PostgreSQL is up (%.0f s late)", self.tag, PG_LATE)

    async def add_host(self, name: str) -> Host:
        assert self.stack is not None
        host = Host(name, self.output / f"host-{self.tag}-{name}")
        host.disk.mkdir(parents=True, exist_ok=True)
        outbox = str(host.disk / "outbox.sqlite") if self.sqlite else None
        host.worker = await self.stack.start_worker(
            self.cell.agent, outbox=outbox, extra_env={"TMPDIR": str(host.disk)}, cwd=host.disk
        )
        self.hosts.append(host)
        return host

    def settled(self, rooms: list[str]) -> bool:
        """Whether `endcall serve`'s ledger has a verdict (report or missing) on every room."""
        if self.ledger_target is None:
            return True
        from endcall.reports.outbox import open_outbox
        from endcall.reports.outbox.sql import SqlOutbox
        from endcall.server.ledger import Ledger

        try:
            outbox = open_outbox(self.ledger_target)
        except Exception:
            return False
        try:
            assert isinstance(outbox, SqlOutbox)
            ledger = Ledger(outbox)
            return all(any(r.verdict for r in ledger.rooms(room)) for room in rooms)
        except Exception:
            return False
        finally:
            outbox.close()

    def drained(self) -> bool:
        """Whether every outbox of the fleet still there (the database; with SQLite, endcall
        serve's and the hosts' files) holds nothing undelivered: no draft, pending or
        delivering row. Then nothing more will be sent."""
        from endcall.reports.outbox import open_outbox
        from endcall.reports.outbox.sql import SqlOutbox

        targets = [self.dsn] if self.dsn else []
        if self.dsn is None and self.ledger_target is not None:
            targets.append(self.ledger_target)
        if self.sqlite:
            targets += [str(h.disk / "outbox.sqlite") for h in self.hosts]
        for target in targets:
            if target is None or (self.sqlite and not Path(target).exists()):
                continue
            try:
                outbox = open_outbox(target)
            except Exception:
                return False
            try:
                assert isinstance(outbox, SqlOutbox)
                counts = outbox.counts()
            except Exception:
                return False
            finally:
                outbox.close()
            if any(counts.get(status, 0) for status in ("draft", "pending", "delivering")):
                return False
        return True

    async def stop(self) -> None:
        if self.pg_up is not None and not self.pg_up.done():
            self.pg_up.cancel()
        for serve in self.serves:
            with contextlib.suppress(Exception):
                await serve.stop()
        if self.stack is not None:
            with contextlib.suppress(Exception):
                await self.stack.stop()
        if self.cluster is not None:
            with contextlib.suppress(OSError):
                shutil.copy(self.cluster.log_path, self.output / f"postgres-{self.tag}.log")
            await asyncio.to_thread(self.cluster.remove)
        for host in self.hosts:
            shutil.rmtree(host.disk, ignore_errors=True)
        if self.ledger_target is not None and self.dsn is None:
            shutil.rmtree(Path(self.ledger_target).parent, ignore_errors=True)


class FleetBench(Bench):
    """`Bench` with ``--outbox postgres`` and the fleet scenarios (see the module doc)."""

    def __init__(
        self, output: Path, sessions: int, parallel: int, say: Any, *, outbox: str
    ) -> None:
        super().__init__(output, sessions, parallel, say)
        self.outbox_kind = outbox
        self.cluster: PgCluster | None = None
        #: pg-late: rooms whose candidate never got an interviewer and left
        self.no_interviewer: set[str] = set()

    async def start_shared(self, agents: list[str]) -> None:
        if self.outbox_kind == "postgres" and any(a in KIT_AGENTS for a in agents):
            base = Path(tempfile.mkdtemp(prefix="pg-shared-", dir=self.output))
            self.cluster = PgCluster(base)
            await asyncio.to_thread(self.cluster.init)
            await asyncio.to_thread(self.cluster.start)
            self.outbox = await asyncio.to_thread(self.cluster.create_database, "endcall")
            self.kit_workers = 2
        await super().start_shared(agents)

    async def stop(self) -> None:
        await super().stop()
        if self.cluster is not None:
            with contextlib.suppress(OSError):
                shutil.copy(self.cluster.log_path, self.output / "postgres-shared.log")
            await asyncio.to_thread(self.cluster.remove)
            self.cluster = None

    async def run_batch(self, cell: Cell, k: int, n: int) -> None:
        if not cell.scenario.fleet:
            await super().run_batch(cell, k, n)
            return
        sc = cell.scenario
        tag = f"{sc.number}-{cell.agent}-{n}"
        browser = self.browser
        assert browser is not None
        pages = [f"{tag}-{i}" for i in range(k)]
        sessions: list[Session] = []
        fleet = Fleet(self, cell, tag)
        await self.slots.take(k)
        released = False

        async def release() -> None:
            nonlocal released
            if not released:
                released = True
                await self.slots.give(k)

        try:
            async with self.startups:
                await fleet.start()
            stack = fleet.stack
            assert stack is not None
            play = self.patient_interview if sc.action == "pg-late" else to_mid_interview
            results = await asyncio.gather(
                *(play(stack, browser, cell, p) for p in pages),
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
                    s.error = "interview did not reach the end point"
                    await delete_room(stack, s.room)
            await self.fleet_act(cell, fleet, browser, pages, sessions, release)
            await close_pages(browser, pages)
            await release()
            await self.wait_fleet_reports(cell, fleet, sessions)
        finally:
            await release()
            await close_pages(browser, pages)
            await fleet.stop()

    async def patient_interview(
        self, stack: BenchStack, browser: BrowserDriver, cell: Cell, page: str
    ) -> Session:
        """`to_mid_interview` for a candidate who arrives while the database is down and
        waits up to PG_LATE + 60 s for the interviewer; one who never got one gives up then
        and leaves (the session counts: its room was opened, an agent was dispatched)."""
        sc = cell.scenario
        room = f"rl-{sc.number}-{cell.agent}-{secrets.token_hex(3)}"
        stack.prepare_room(room, cell.agent, metadata(cell, room, stack.dispatch_key))
        session = Session(sc.name, cell.agent, room)
        cell.sessions.append(session)
        await browser.open(page, stack.page_url(room, f"candidate-{page}"))
        await browser.wait_text(page, "connection", "^connected", 45)
        try:
            await browser.wait_text(page, "transcript", MARKERS[0], PG_LATE + 60)
        except Exception:
            logger.warning("%s: no interviewer came for %s; the candidate leaves", page, room)
            self.no_interviewer.add(room)
            return session
        for i in range(sc.answers):
            if i:
                await browser.wait_text(page, "transcript", MARKERS[i], 40)
            await browser.wait_text(page, "agent-state", "listening", 30)
            await browser.fill(page, "answer-input", ANSWERS[i])
            await browser.click(page, "answer-send")
        await browser.wait_text(page, "transcript", MARKERS[sc.answers], 40)
        await browser.wait_text(page, "agent-state", "listening", 30)
        return session

    async def fleet_act(
        self,
        cell: Cell,
        fleet: Fleet,
        browser: BrowserDriver,
        pages: list[str],
        sessions: list[Session],
        release: Callable[[], Awaitable[None]],
    ) -> None:
        """The fleet fault; the naive agent's cells run the same steps minus its database
        and `endcall serve` (it has neither)."""
        sc = cell.scenario
        page_of = {s.room: p for s, p in zip(sessions, pages, strict=False)}
        cluster = fleet.cluster
        if sc.action == "pg-restart":
            # mid-interview: the database restarts; the candidate answers the next question
            # (the agent checkpoints its draft on a dropped connection); then the database
            # goes down again, the candidate clicks End, and it stays down PG_STORE_OUTAGE s
            # while the end is accepted and the report stored and sent (all within a second)
            if cluster is not None:
                await asyncio.to_thread(cluster.restart, PG_RESTART_DOWN)
            await self.answer_next(browser, page_of, sessions, sc.answers)
            if cluster is not None:
                await asyncio.to_thread(cluster.stop)
                logger.info("%s: PostgreSQL stopped for %.0f s", fleet.tag, PG_STORE_OUTAGE)
            down = time.monotonic()
            await self.click_end(cell, browser, page_of, sessions)
            await self.wait_left(browser, pages)
            if cluster is not None:
                await asyncio.sleep(max(0.0, down + PG_STORE_OUTAGE - time.monotonic()))
                await asyncio.to_thread(cluster.start)
        elif sc.action == "pg-late":
            gave_up = [s for s in sessions if s.room in self.no_interviewer]
            talked = [s for s in sessions if s.room not in self.no_interviewer]
            for s in gave_up:
                s.end_at = time.time()
                with contextlib.suppress(Exception):
                    await browser.close_page(page_of[s.room])
            await self.click_end(cell, browser, page_of, talked)
            await self.wait_left(browser, [page_of[s.room] for s in talked])
            if fleet.pg_up is not None:
                await fleet.pg_up
        elif sc.action == "host-lost":
            await fleet.add_host("B")  # host B: another host of the fleet, alive
            t = time.time()
            fleet.hosts[0].lose()
            for s in sessions:
                s.end_at = t
            await release()
            await asyncio.sleep(10)  # the candidate waits, then leaves
        elif sc.action == "serve-kill":
            cell.receiver.example.down_for(sc.receiver_503)
            await self.click_end(cell, browser, page_of, sessions)
            await asyncio.sleep(SERVE_KILL_AFTER)
            if fleet.serves:
                fleet.serves[0].kill()
            await self.wait_left(browser, pages)
        else:  # pragma: no cover - a scenario table error
            raise ValueError(f"unknown fleet action {sc.action}")

    async def answer_next(
        self, browser: BrowserDriver, page_of: dict[str, str], sessions: list[Session], n: int
    ) -> None:
        """The candidate gives answer ``n`` (0-based) to the question being asked and waits
        for the next one."""

        async def one(s: Session) -> None:
            page = page_of[s.room]
            await browser.fill(page, "answer-input", ANSWERS[n])
            await browser.click(page, "answer-send")
            if n + 1 < len(MARKERS):
                await browser.wait_text(page, "transcript", MARKERS[n + 1], 40)
                await browser.wait_text(page, "agent-state", "listening", 30)

        await asyncio.gather(*(one(s) for s in sessions), return_exceptions=True)

    async def wait_left(self, browser: BrowserDriver, pages: list[str]) -> None:
        await asyncio.gather(
            *(browser.wait_text(p, "connection", "disconnected", 30) for p in pages),
            return_exceptions=True,
        )

    async def wait_fleet_reports(self, cell: Cell, fleet: Fleet, sessions: list[Session]) -> None:
        """Until every session has a report or a `session.missing` and, for the kit, `endcall
        serve`'s ledger has settled every room and the fleet's outboxes hold nothing
        undelivered (a stale draft or a late `session.missing` would still come), or the
        scenario's wait has passed; then a few seconds more for duplicates."""
        deadline = time.monotonic() + cell.scenario.wait
        rooms = [s.room for s in sessions]
        while time.monotonic() < deadline:
            covered = covered_rooms(cell)
            if all(r in covered for r in rooms):
                if not fleet.serves:
                    break
                if await asyncio.to_thread(fleet.settled, rooms) and await asyncio.to_thread(
                    fleet.drained
                ):
                    break
            await asyncio.sleep(1.0)
        await asyncio.sleep(2 * RELAY_POLL if fleet.serves else 5.0)
