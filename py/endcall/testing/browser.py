"""Drive a headless Chromium from asyncio, for the demo and the browser tests.

:class:`BrowserDriver` starts ``examples/web/scripts/drive.mjs`` (playwright-core driving
Debian's ``/usr/bin/chromium``; no browser is ever downloaded) and sends it one JSON command
per line: open a page, click / fill by ``data-testid``, wait for a text, screenshot, close a
tab (``pagehide`` runs, as when a person closes it). Page console output is kept in
:attr:`BrowserDriver.console` for failure reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_CHROMIUM", "BrowserDriver", "BrowserError", "browser_unavailable"]

DEFAULT_CHROMIUM = "/usr/bin/chromium"


class BrowserError(Exception):
    """A browser command failed (the message says which and why)."""


def browser_unavailable(web_dir: Path, chromium: str = DEFAULT_CHROMIUM) -> str | None:
    """Why the browser cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not Path(chromium).exists():
        return f"{chromium} is missing (Debian: apt-get install -y chromium)"
    if not (web_dir / "node_modules" / "playwright-core").is_dir():
        return f"playwright-core is not installed (run: npm ci --prefix {web_dir})"
    return None


class BrowserDriver:
    """One Chromium, many pages (tabs), commanded over the driver's stdin/stdout."""

    def __init__(
        self, web_dir: Path, *, chromium: str = DEFAULT_CHROMIUM, fake_audio: Path | None = None
    ) -> None:
        self.web_dir = web_dir
        self.chromium = chromium
        #: a WAV the fake microphone plays (Chromium's beep without it)
        self.fake_audio = fake_audio
        self.console: list[str] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.version = ""

    async def start(self, timeout: float = 30.0) -> None:
        reason = browser_unavailable(self.web_dir, self.chromium)
        if reason is not None:
            raise BrowserError(reason)
        env = {**os.environ, "CHROMIUM_PATH": self.chromium}
        if self.fake_audio is not None:
            env["FAKE_AUDIO"] = str(self.fake_audio.resolve())
        self._proc = await asyncio.create_subprocess_exec(
            "node",
            str(self.web_dir / "scripts" / "drive.mjs"),
            cwd=str(self.web_dir),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[0] = ready
        self._tasks = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]
        try:
            value = await asyncio.wait_for(ready, timeout)
        except BaseException:
            await self.close()
            raise
        self.version = str(value.get("version", "")) if isinstance(value, dict) else ""

    async def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for line in self._proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                self.console.append(f"driver: {line.decode(errors='replace').rstrip()}")
                continue
            fut = self._waiting.pop(msg.get("id"), None)
            if fut is None or fut.done():
                continue
            if msg.get("ok"):
                fut.set_result(msg.get("value"))
            else:
                fut.set_exception(BrowserError(str(msg.get("error"))))
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(BrowserError("the browser driver exited"))
        self._waiting.clear()

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        async for line in self._proc.stderr:
            self.console.append(line.decode(errors="replace").rstrip())
            del self.console[:-2000]

    async def command(self, cmd: str, timeout: float = 60.0, **fields: Any) -> Any:
        """Send one command; returns its value or raises :class:`BrowserError`."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise BrowserError("the browser is not running")
        cmd_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[cmd_id] = fut
        proc.stdin.write(json.dumps({"id": cmd_id, "cmd": cmd, **fields}).encode() + b"\n")
        await proc.stdin.drain()
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiting.pop(cmd_id, None)

    # -- conveniences --------------------------------------------------------------------
    async def open(self, page: str, url: str) -> None:
        await self.command("open", page=page, url=url)

    async def click(self, page: str, testid: str) -> None:
        await self.command("click", page=page, testid=testid)

    async def fill(self, page: str, testid: str, text: str) -> None:
        await self.command("fill", page=page, testid=testid, text=text)

    async def wait_text(self, page: str, testid: str, pattern: str, timeout: float = 10.0) -> str:
        value = await self.command(
            "wait_text",
            timeout=timeout + 5,
            page=page,
            testid=testid,
            pattern=pattern,
            **{"timeout_ms": int(timeout * 1000)},
        )
        return str(value)

    async def text(self, page: str, testid: str) -> str | None:
        value = await self.command("text", page=page, testid=testid)
        return None if value is None else str(value)

    async def screenshot(self, page: str, path: Path) -> Path:
        await self.command("screenshot", page=page, path=str(path))
        return path

    async def close_page(self, page: str) -> None:
        await self.command("close", page=page)

    async def close(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.returncode is None:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.write(b'{"id": -1, "cmd": "quit"}\n')
                await proc.stdin.drain()
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def __aenter__(self) -> BrowserDriver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
