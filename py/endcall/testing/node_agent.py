"""The Node example interview agent as a real worker, for the demo and the e2e tests.

:class:`NodeWorkerProcess` runs ``node examples/node/dist/interview_agent.js start`` (the
example on ``@livekit/agents`` for Node, with endcall-agent's ``EndCall`` and scripted models
written in TypeScript) the way :class:`~endcall.testing.realstack.WorkerProcess` runs the Python
example: LiveKit credentials and ``ENDCALL_WEBHOOK_URL`` / ``ENDCALL_WEBHOOK_SECRET`` /
``ENDCALL_OUTBOX`` in its environment (the example has scripted models only), its output in a
log file, started once it logged "registered worker" (a dispatch made before that is skipped),
stopped with SIGTERM (the worker drains its jobs) then SIGKILL of its process group.
:class:`NodeRealStack` is :class:`~endcall.testing.realstack.RealStack` with that worker: same
livekit-server, page, receiver, fallback server and explicit dispatch (agent name
``interview-agent``), so every scenario and test runs unchanged against either agent.

The example is compiled by tsc (``cd examples/node && npm ci && npm run build``): the worker
forks job processes that import the agent file again, so it runs as plain JavaScript.
:func:`ensure_built` rebuilds it when a source is newer than its build (when its
``node_modules`` is installed) and :func:`node_agent_unavailable` says what is missing.
Run inside ``scripts/in-netns`` (libwebrtc ignores loopback).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from endcall.testing.realstack import RealStack, WorkerProcess
from endcall.testing.stack import examples_dir

__all__ = [
    "AGENTS",
    "NodeRealStack",
    "NodeWorkerProcess",
    "ensure_built",
    "node_agent_unavailable",
    "node_example_dir",
    "real_stack",
]

#: the agents the demo and the contract tests can run: ``--agent python|node``
AGENTS = ("python", "node")


def node_example_dir() -> Path:
    return examples_dir() / "node"


def _script() -> Path:
    return node_example_dir() / "dist" / "interview_agent.js"


def _sources() -> list[Path]:
    root = node_example_dir()
    found = list(root.glob("*.ts"))
    found += [root / "tsconfig.json", root / "package.json"]
    dep = root / "node_modules" / "endcall-agent" / "dist" / "index.js"
    if dep.exists():
        found.append(dep)
    return [p for p in found if p.exists()]


def _stale() -> bool:
    script = _script()
    if not script.exists():
        return True
    built = script.stat().st_mtime
    return any(p.stat().st_mtime > built for p in _sources())


def node_agent_unavailable() -> str | None:
    """None when the Node example can run here, else what to do."""
    if shutil.which("node") is None:
        return "node is not installed (the Node agent needs Node.js >= 20)"
    root = node_example_dir()
    if not (root / "node_modules" / "@livekit" / "agents").is_dir():
        return "the Node example is not installed: cd examples/node && npm ci && npm run build"
    if not _script().exists():
        return "the Node example is not built: cd examples/node && npm run build"
    return None


def ensure_built(timeout: float = 300.0) -> None:
    """``npm run build`` in examples/node when the build is missing or older than a source
    (needs its ``node_modules``); raises RuntimeError with tsc's output when it fails."""
    root = node_example_dir()
    if not _stale() or not (root / "node_modules").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        return
    done = subprocess.run(
        [npm, "run", "build"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"examples/node: npm run build failed:\n{done.stdout}\n{done.stderr}")


class NodeWorkerProcess(WorkerProcess):
    """``node examples/node/dist/interview_agent.js start`` as a child process (scripted
    models); the same lifecycle as the Python :class:`WorkerProcess`."""

    async def start(self, timeout: float = 90.0) -> None:
        problem = node_agent_unavailable()
        if problem:
            raise RuntimeError(problem)
        await asyncio.to_thread(ensure_built)
        await super().start(timeout)

    def _spawn(self) -> subprocess.Popen[bytes]:
        node = shutil.which("node") or "node"
        env = {**os.environ, **self.env}
        for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(proxy, None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        return subprocess.Popen(
            [node, str(_script()), "start", "--log-level", "info"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(node_example_dir()),
            start_new_session=True,
        )


class NodeRealStack(RealStack):
    """:class:`RealStack` with the Node example agent as its worker (same server, page,
    receiver, fallback server and dispatch)."""

    agent = "node"

    def _make_worker(self, env: dict[str, str]) -> WorkerProcess:
        return NodeWorkerProcess(env, self.output_dir / "worker-node.log")


def real_stack(agent: str, output_dir: Path, **options: Any) -> RealStack:
    """A :class:`RealStack` whose worker is the ``agent`` example (``python`` or ``node``)."""
    if agent == "node":
        return NodeRealStack(output_dir, **options)
    if agent == "python":
        return RealStack(output_dir, **options)
    raise ValueError(f"unknown agent {agent!r}: one of {', '.join(AGENTS)}")
