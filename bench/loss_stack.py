"""The report-loss benchmark's LiveKit side: servers, agent workers, the signalling proxy.

`BenchStack` is a livekit-server (production room timeouts; for a fleet, its own webhooks
sent to `endcall serve`) with the example page's site and the fallback server, dispatching the
kit's example agent (Python or Node) or the naive one per room; its kit workers share one
outbox (a SQLite file, or the fleet's PostgreSQL database; the Node workers one of their own).
`AgentWorker` is one worker process running an agent (`AgentServer`, or the Node example's
`ServerOptions`), in a directory of its own standing for its host's disk; a Node worker's
host also runs a `Sidecar` relay (`endcall outbox deliver --forever --ask-livekit`: Node
workers have no `endcall.prewarm`), which outlives the worker as the separate container it is
in production; `Toxiproxy` cuts the agent's signalling for the "signalling-cut" scenario. Used
by `loss_runner.py` and `loss_fleet.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from livekit import api
from starlette.requests import Request

from endcall.testing.livekit_server import LiveKitServer, node_ip
from endcall.testing.realstack import RealStack, WorkerProcess
from endcall.testing.stack import _bind, examples_dir, serve

ROOT = Path(__file__).resolve().parent.parent
NAIVE_SCRIPT = ROOT / "bench" / "naive_agent.py"
KIT_SCRIPT = examples_dir() / "interview_agent.py"
#: the Node example agent, compiled (`cd examples/node && npm run build`)
NODE_SCRIPT = examples_dir() / "node" / "dist" / "interview_agent.js"
#: what each agent's worker registers as (the Node example reads `AGENT_NAME`): distinct, so a
#: run of several agents on one livekit-server dispatches each room to its own agent
AGENT_NAMES = {"naive": "naive-agent", "kit": "interview-agent", "kit-node": "interview-agent-node"}
SCRIPTS = {"naive": NAIVE_SCRIPT, "kit": KIT_SCRIPT, "kit-node": NODE_SCRIPT}
TOXIPROXY = ROOT / ".tools" / "bin" / "toxiproxy-server"
#: livekit-server's defaults (production), not the 3 s / 10 s of the test configuration: with a
#: 3 s departure_timeout the room closes as the kit's 3 s disconnect grace runs out (see README)
DEPARTURE_TIMEOUT = 20
EMPTY_TIMEOUT = 300


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **extra}
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(proxy, None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "py"), env.get("PYTHONPATH", "")) if p
    )
    return env


class AgentWorker(WorkerProcess):
    """`WorkerProcess` running ``script`` (the kit's example agent, Python or Node — a ``.js``
    file runs under ``node`` —, or the naive one)."""

    def __init__(self, script: Path, env: dict[str, str], log_path: Path, cwd: Path) -> None:
        super().__init__(env, log_path)
        self.script = script
        #: the worker's working directory: its host's disk (relative paths land there)
        self.cwd = cwd

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = _clean_env({**self.env, "INTERVIEW_MODELS": "scripted"})
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        if self.script.suffix == ".js":
            argv = [
                shutil.which("node") or "node",
                str(self.script),
                "start",
                "--log-level",
                "info",
            ]
        else:
            argv = [sys.executable, str(self.script), "start", "--log-level", "INFO"]
        return subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.cwd,
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


class Sidecar:
    """A host's relay beside its Node worker: ``endcall outbox --outbox <the host's outbox>
    deliver --forever --ask-livekit`` with the workers' secret and LiveKit's credentials (it
    asks RoomService whether a silent crash draft's agent left its room). Its own process
    group: killing the worker's group leaves it running, as a sidecar container would be."""

    def __init__(self, outbox: str, env: dict[str, str], log_path: Path) -> None:
        self.outbox = outbox
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "endcall", "outbox", "--outbox", self.outbox]
        argv += ["deliver", "--forever", "--ask-livekit"]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_clean_env(self.env),
            start_new_session=True,
        )

    async def wait_outbox(self, timeout: float = 30.0) -> None:
        """Until the relay created the SQLite outbox (the worker then opens a file whose schema
        is there); a DSN: at once."""
        path = Path(self.outbox)
        if "://" in self.outbox:
            return
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(path.exists) and time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the sidecar relay exited: see {self.log_path}")
            await asyncio.sleep(0.2)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


class BenchStack(RealStack):
    """RealStack without its built-in worker: a server (own or shared), the page's site, the
    fallback server; workers are started per agent with `start_worker`. Naive rooms get the
    naive page (no fallback server, no beacon); each room dispatches its agent's name
    (`AGENT_NAMES`)."""

    def __init__(
        self,
        output_dir: Path,
        name: str,
        secret: str,
        *,
        outbox: str | None = None,
        webhook_urls: list[str] | None = None,
    ) -> None:
        super().__init__(output_dir, webhook_url="http://127.0.0.1:9/unused", webhook_secret=secret)
        self.name = name
        #: the kit workers' outbox: a postgresql:// DSN shared by the fleet, else this stack's
        #: SQLite file (`outbox_path`)
        self.outbox = outbox
        #: where livekit-server sends its own webhooks (`endcall serve` replicas)
        self.webhook_urls = list(webhook_urls or [])
        #: signs the kit's dispatch claims (`endcall.dispatch_metadata`); its workers verify
        self.dispatch_key = secrets.token_urlsafe(32)
        self._agent_for: dict[str, str] = {}
        self.workers: list[AgentWorker] = []
        self._started_workers = 0
        self.proxy: Toxiproxy | None = None
        #: the Node workers' sidecar relays, by host directory (one per host)
        self.sidecars: dict[Path, Sidecar] = {}

    @property
    def outbox_path(self) -> Path:
        return self.output_dir / f"outbox-{self.name}.sqlite"

    @property
    def outbox_target(self) -> str:
        return self.outbox or str(self.outbox_path)

    @property
    def node_outbox_target(self) -> str:
        """The Node workers' outbox: the fleet's database, else a SQLite file of their own
        (its sidecar relays only what the Node workers left)."""
        return self.outbox or str(self.output_dir / f"outbox-{self.name}-node.sqlite")

    def prepare_room(self, room: str, agent: str, metadata: dict[str, Any]) -> None:
        self._agent_for[room] = AGENT_NAMES[agent]
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
            webhook_urls=self.webhook_urls,
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

    async def start_worker(
        self,
        agent: str,
        *,
        livekit_url: str | None = None,
        outbox: str | None = None,
        extra_env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 90.0,
    ) -> AgentWorker:
        """A worker of ``agent``; ``outbox``: its own (a file on its host's disk) instead of
        the stack's `outbox_target`; ``extra_env``: more environment (its host's TMPDIR);
        ``cwd``: its host's disk (default: a new directory, one host per worker). A Node
        worker's host gets its sidecar relay first, unless it has one running (a worker
        replacing a killed one on the same host)."""
        if agent == "kit-node":
            outbox = outbox or self.node_outbox_target
        env = {
            **self.info.env(),
            "ENDCALL_WEBHOOK_SECRET": self.webhook_secret,
            "ENDCALL_OUTBOX": outbox or self.outbox_target,
            "ENDCALL_DISPATCH_KEY": self.dispatch_key,
            "AGENT_NAME": AGENT_NAMES[agent],
            **(extra_env or {}),
        }
        if livekit_url:
            env["LIVEKIT_URL"] = livekit_url
        # numbered before any await: workers started at once get their own log and disk
        self._started_workers += 1
        n = self._started_workers
        if cwd is None:
            cwd = self.output_dir / f"host-{self.name}-{agent}-{n}"
        cwd.mkdir(parents=True, exist_ok=True)
        if agent == "kit-node":
            sidecar = self.sidecars.get(cwd)
            if sidecar is None or not sidecar.running():
                # LiveKit reached directly (not through the signalling-cut proxy): it is a
                # separate container, and it only calls RoomService
                sidecar = Sidecar(
                    env["ENDCALL_OUTBOX"],
                    {**env, **self.info.env()},
                    self.output_dir / f"relay-{self.name}-{agent}-{n}.log",
                )
                sidecar.start()
                self.sidecars[cwd] = sidecar
                await sidecar.wait_outbox()
        worker = AgentWorker(
            SCRIPTS[agent],
            env,
            self.output_dir / f"worker-{self.name}-{agent}-{n}.log",
            cwd,
        )
        await worker.start(timeout)
        self.workers.append(worker)
        return worker

    async def stop(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(Exception):
                await worker.stop(timeout=15)
        self.workers.clear()
        for sidecar in self.sidecars.values():
            with contextlib.suppress(Exception):
                await asyncio.to_thread(sidecar.stop)
        self.sidecars.clear()
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
