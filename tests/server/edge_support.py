"""Helpers for the edge tests: ASGI apps on real uvicorn servers (127.0.0.1, free ports) run by
an event loop in a thread, for synchronous tests (raw sockets, schemathesis), and the real
``endcall serve`` command in a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Iterator, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
import uvicorn

T = TypeVar("T")


class ThreadedServers:
    """uvicorn servers on an event loop in a thread: ``serve(app, **uvicorn_options)`` → URL."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[tuple[uvicorn.Server, socket.socket, asyncio.Task[None]]] = []

    def call(self, coro: Awaitable[T], timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return future.result(timeout=timeout)

    def serve(self, app: Any, **options: Any) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", access_log=False, **options
        )
        server = uvicorn.Server(config)

        async def start() -> asyncio.Task[None]:
            task = asyncio.get_running_loop().create_task(server.serve([sock]))
            for _ in range(1000):
                if server.started or task.done():
                    break
                await asyncio.sleep(0.005)
            if task.done():
                task.result()
            assert server.started, "uvicorn did not start"
            return task

        self.servers.append((server, sock, self.call(start())))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    def close(self) -> None:
        async def stop() -> None:
            for server, _, _ in self.servers:
                server.should_exit = True
            for _, _, task in self.servers:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=10)
            current = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not current]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        self.call(stop())
        for _, sock, _ in self.servers:
            sock.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class ServeProcess:
    """``endcall serve`` in a subprocess on a free port, its stderr in a file."""

    def __init__(self, env: Mapping[str, str], stderr_path: Path, *args: str) -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = stderr_path
        self._stderr: IO[bytes] = stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "endcall.cli", "serve", "--port", str(self.port), *args],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url + "/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert self.proc.poll() is None, self.stderr()
                assert time.monotonic() < deadline, "endcall serve did not start"
                time.sleep(0.05)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def peak_rss_kib(self) -> int:
        """The process's peak resident memory so far (VmHWM), KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")

    def connect(self, timeout: float = 5) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._stderr.close()


def read_answer(sock: socket.socket, timeout: float = 5) -> tuple[int, bytes]:
    """The status and body of one HTTP/1.1 answer (Content-Length bodies), read until the
    body is complete or the peer closes."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), data[:200]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split()[1]), body


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer closes the connection within ``timeout`` s (whatever it sends first)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def send_until_closed(sock: socket.socket, head: bytes, chunks: Iterator[bytes]) -> int:
    """Send ``head`` then ``chunks`` until the peer stops taking them; the bytes it took."""
    sock.settimeout(5)
    sock.sendall(head)
    sent = 0
    try:
        for chunk in chunks:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:  # reset, broken pipe, or a full window the server no longer reads (timeout)
        pass
    return sent
