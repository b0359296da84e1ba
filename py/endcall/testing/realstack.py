"""The whole endcall system on a real livekit-server, for the demo and the browser tests.

:class:`RealStack` is :class:`~endcall.testing.stack.LocalStack` with the loopback replaced by
the real parts: a livekit-server (started here, or the one ``LIVEKIT_URL`` names), the
example interview agent as a real ``AgentServer`` worker process
(``INTERVIEW_MODELS=scripted python examples/interview_agent.py start``, see
:class:`WorkerProcess`), and the page joining with the real ``livekit-client``. Each page's
token dispatches the agent explicitly (``RoomConfiguration(agents=[RoomAgentDispatch(...)])``)
with the scenario's settings as the job's metadata; the fallback server talks to the real
RoomService. Run it inside ``scripts/in-netns``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from livekit import api

from endcall.testing.livekit_server import LiveKitServer, ServerInfo, external_server
from endcall.testing.stack import LocalStack, _bind, _Site, examples_dir, serve

__all__ = ["AGENT_NAME", "RealJob", "RealStack", "WorkerProcess"]

AGENT_NAME = "interview-agent"
#: the attribute the scripted example agent publishes its job process id in (test mode only)
PID_ATTRIBUTE = "demo.pid"


class WorkerProcess:
    """``python examples/interview_agent.py start`` as a child process, scripted models.

    ``env``: added to this process's environment (LiveKit credentials, webhook, outbox).
    """

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    async def start(self, timeout: float = 90.0) -> None:
        """Start the worker and wait until it registered with the server (a dispatch made
        before that would be skipped)."""
        self._proc = self._spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"the agent worker exited with {self._proc.returncode}:\n{self.log_tail()}"
                )
            if b"registered worker" in self.log_path.read_bytes():
                return
            await asyncio.sleep(0.1)
        await self.stop()
        raise RuntimeError(f"the agent worker did not register in {timeout:.0f} s")

    def _spawn(self) -> subprocess.Popen[bytes]:
        script = examples_dir() / "interview_agent.py"
        env = {**os.environ, **self.env, "INTERVIEW_MODELS": "scripted"}
        for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(proxy, None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        return subprocess.Popen(
            [sys.executable, str(script), "start", "--log-level", "INFO"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def signal(self, sig: int) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)

    async def wait(self, timeout: float) -> int | None:
        """The exit code, or None when still running after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self._proc is not None and time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.1)
        return None if self._proc is None else self._proc.poll()

    async def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (the worker drains its jobs), then SIGKILL of the whole process group."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self.signal(signal.SIGTERM)
            if await self.wait(timeout) is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await self.wait(10)
        if proc is not None:
            # job processes left behind by a killed worker
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class RealJob:
    """One dispatched interview job, seen from outside: through the server API, and through
    the job process (its pid is the agent's ``demo.pid`` attribute)."""

    def __init__(self, stack: RealStack, room: str) -> None:
        self.stack = stack
        self.room_name = room
        self._stopped_pid: int | None = None
        self._done = False

    async def agent_pid(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in await self.stack.participants(self.room_name):
                pid = p.attributes.get(PID_ATTRIBUTE)
                if pid:
                    return int(pid)
            await asyncio.sleep(0.2)
        raise TimeoutError(f"no agent with a {PID_ATTRIBUTE} attribute in {self.room_name}")

    async def partition(self) -> None:
        """The agent stops answering anything: its job process is stopped (SIGSTOP)."""
        pid = await self.agent_pid()
        os.kill(pid, signal.SIGSTOP)
        self._stopped_pid = pid

    def heal(self) -> None:
        if self._stopped_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._stopped_pid, signal.SIGCONT)
            self._stopped_pid = None

    @property
    def done(self) -> bool:
        return self._done

    async def finished(self, timeout: float) -> None:
        """Wait until no agent is left in the room (the job ended and left, or the room is
        gone)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            people = await self.stack.participants(self.room_name)
            if not any(p.kind == api.ParticipantInfo.Kind.AGENT for p in people):
                self._done = True
                return
            await asyncio.sleep(0.25)
        raise TimeoutError(f"the agent in {self.room_name} did not finish in {timeout:.0f} s")

    async def end_now(self) -> None:
        """Clean-up after a failed scenario: delete the room (the job ends)."""
        self.heal()
        await self.stack.delete_room(self.room_name)


class RealStack(LocalStack):
    """:class:`LocalStack` on a real livekit-server with the example agent as a real worker.

    ``server``: use this server (e.g. ``external_server()``); by default one is started with
    its log in ``output_dir``. ``worker_env``: extra environment for the worker.
    """

    def __init__(
        self,
        output_dir: Path,
        *,
        server: ServerInfo | None = None,
        worker_env: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(output_dir, **options)
        self.server_info: ServerInfo | None = server or external_server()
        self.server: LiveKitServer | None = None
        self.worker_env = dict(worker_env or {})
        self.worker: WorkerProcess | None = None
        self._dispatch_metadata: dict[str, str] = {}

    @property
    def server_name(self) -> str:
        return self.info.name

    @property
    def info(self) -> ServerInfo:
        assert self.server_info is not None, "the stack is not started"
        return self.server_info

    @property
    def livekit_url(self) -> str:
        return self.info.http_url

    def join_target(self, host: str) -> tuple[str, str]:
        return "livekit", self.info.url

    def room_exists(self, room: str) -> bool:
        return False  # every page load dispatches through its own token

    def prepare(self, room: str, metadata: dict[str, Any]) -> None:
        """The job dispatched when a page first joins ``room`` gets this metadata."""
        self._dispatch_metadata[room] = json.dumps(metadata)

    def room_configuration(self, room: str) -> api.RoomConfiguration:
        """The page's token dispatches the agent explicitly, with the scenario's metadata."""
        dispatch = api.RoomAgentDispatch(
            agent_name=AGENT_NAME, metadata=self._dispatch_metadata.get(room, "{}")
        )
        return api.RoomConfiguration(agents=[dispatch])

    def job(self, room: str) -> RealJob:
        return RealJob(self, room)

    async def participants(self, room: str) -> list[api.ParticipantInfo]:
        lk = self.api_client()
        try:
            resp = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
            return list(resp.participants)
        except api.TwirpError as e:
            if e.code == api.TwirpErrorCode.NOT_FOUND:
                return []
            raise
        finally:
            await lk.aclose()

    async def start(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if self.server_info is None:
            self.server = LiveKitServer(log_path=self.output_dir / "livekit-server.log")
            self.server_info = await asyncio.to_thread(self.server.start)
        self.api_key, self.api_secret = self.info.api_key, self.info.api_secret
        await self._start_receiver()
        sock = _bind("127.0.0.1", 0)
        site = _Site(
            bridge=None,
            roomservice=None,
            fallback=self._fallback_app(),
            session=self._session_app(),
            page=self._page_app(),
        )
        self.site = await serve(site, sock=sock)
        self.worker = self._make_worker(
            {
                **self.info.env(),
                "ENDCALL_WEBHOOK_URL": self.webhook_url,
                "ENDCALL_WEBHOOK_SECRET": self.webhook_secret,
                "ENDCALL_OUTBOX": str(self.outbox_path),
                **self.worker_env,
            }
        )
        try:
            await self.worker.start()
        except BaseException:
            await self.stop()
            raise

    def _make_worker(self, env: dict[str, str]) -> WorkerProcess:
        """The agent worker this stack runs (the Python example; `node_agent` swaps it)."""
        return WorkerProcess(env, self.output_dir / "worker.log")

    def _fallback_app(self) -> Any:
        from endcall.server import create_app

        return create_app(self.fallback_settings(self.livekit_url))

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None
        await super().stop()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
            self.server = None
