"""A real livekit-server for tests and the demo: start it, wait until ready, stop it.

:class:`LiveKitServer` runs the ``livekit-server`` binary (built by ``make livekit-server``
into ``.tools/bin``) with a generated configuration that keeps every byte on this machine:
signalling bound to 127.0.0.1 and the test address, media announced on the test address only
(``rtc.node_ip``, ``use_external_ip: false``, no public STUN server handed to clients), short
room timeouts. :func:`external_server` returns the server named by ``LIVEKIT_URL``,
``LIVEKIT_API_KEY`` and ``LIVEKIT_API_SECRET`` instead, when they are set.

The Python rtc SDK (libwebrtc) ignores loopback interfaces, so a room with media or data
needs a non-loopback address: run inside ``scripts/in-netns``, which exports
``ENDCALL_NODE_IP``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "LIVEKIT_SERVER_VERSION",
    "LiveKitServer",
    "ServerInfo",
    "ServerUnavailable",
    "external_server",
    "find_binary",
    "node_ip",
    "server_for_tests",
]

#: the tag ``make livekit-server`` builds (keep in step with the Makefile)
LIVEKIT_SERVER_VERSION = "1.13.5"


class ServerUnavailable(RuntimeError):
    """No livekit-server can be started here; the message says what to do."""


@dataclass(frozen=True)
class ServerInfo:
    """Where a LiveKit server is and how to talk to it."""

    url: str  #: ws://… for participants
    api_key: str
    api_secret: str
    #: "livekit-server 1.13.5" for the one started here, "external" for LIVEKIT_URL
    name: str

    @property
    def http_url(self) -> str:
        """The server API's base URL (``http://…``) for livekit-api clients."""
        if self.url.startswith("ws://"):
            return "http://" + self.url[len("ws://") :]
        if self.url.startswith("wss://"):
            return "https://" + self.url[len("wss://") :]
        return self.url

    def env(self) -> dict[str, str]:
        """``LIVEKIT_URL``/``LIVEKIT_API_KEY``/``LIVEKIT_API_SECRET`` for a child process."""
        return {
            "LIVEKIT_URL": self.url,
            "LIVEKIT_API_KEY": self.api_key,
            "LIVEKIT_API_SECRET": self.api_secret,
        }


def node_ip() -> str | None:
    """The namespace's test address (``ENDCALL_NODE_IP``, set by ``scripts/in-netns``)."""
    return os.environ.get("ENDCALL_NODE_IP") or None


def external_server() -> ServerInfo | None:
    """The server named by ``LIVEKIT_URL``/``LIVEKIT_API_KEY``/``LIVEKIT_API_SECRET``, if set."""
    url = os.environ.get("LIVEKIT_URL")
    key = os.environ.get("LIVEKIT_API_KEY")
    secret = os.environ.get("LIVEKIT_API_SECRET")
    if url and key and secret:
        return ServerInfo(url, key, secret, "external")
    return None


def _repo_root() -> Path | None:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "Makefile").is_file() and (parent / "protocol.md").is_file():
            return parent
    return None


def find_binary() -> Path:
    """``ENDCALL_LIVEKIT_SERVER``, else ``.tools/bin/livekit-server`` of the checkout, else
    ``livekit-server`` on PATH; raises :class:`ServerUnavailable` naming the make target."""
    explicit = os.environ.get("ENDCALL_LIVEKIT_SERVER")
    if explicit:
        path = Path(explicit)
        if not os.access(path, os.X_OK):
            raise ServerUnavailable(f"ENDCALL_LIVEKIT_SERVER={explicit} is not an executable")
        return path
    root = _repo_root()
    if root is not None:
        built = root / ".tools" / "bin" / "livekit-server"
        if os.access(built, os.X_OK):
            return built
    found = shutil.which("livekit-server")
    if found:
        return Path(found)
    raise ServerUnavailable(
        "livekit-server is not built: run `make livekit-server` (go install at v"
        f"{LIVEKIT_SERVER_VERSION} into .tools/bin)"
    )


def _free_port(host: str, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LiveKitServer:
    """One livekit-server process with a generated configuration (see the module doc).

    ``webhook_urls``: where the server sends its own webhooks (signed with this server's key).
    ``log_path``: the server's output goes there (a temporary file by default).
    """

    node_ip: str | None = None
    webhook_urls: list[str] = field(default_factory=list)
    empty_timeout: int = 10
    departure_timeout: int = 3
    log_path: Path | None = None
    binary: Path | None = None
    api_key: str = field(default_factory=lambda: "endcall-" + secrets.token_hex(4))
    api_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: Any = field(default=None, init=False, repr=False)
    _port: int = field(default=0, init=False)

    # -- configuration -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The server configuration (YAML is a superset of JSON: passed as JSON)."""
        ip = self.node_ip or node_ip()
        if ip is None:
            raise ServerUnavailable(
                "no test address: run inside scripts/in-netns (it exports ENDCALL_NODE_IP); "
                "libwebrtc ignores loopback, and the machine's own address is never used"
            )
        self.node_ip = ip
        if not self._port:
            self._port = _free_port(ip)
        config: dict[str, Any] = {
            "port": self._port,
            "bind_addresses": ["127.0.0.1", ip],
            "rtc": {
                "tcp_port": _free_port(ip),
                "udp_port": _free_port(ip, socket.SOCK_DGRAM),
                "node_ip": ip,
                "use_external_ip": False,
                "enable_loopback_candidate": False,
                "ips": {"includes": [f"{ip}/32"]},
                # clients get this instead of LiveKit's default public STUN servers; nothing
                # listens there, host candidates on the test address are all a test needs
                "stun_servers": [f"{ip}:3478"],
            },
            "keys": {self.api_key: self.api_secret},
            "room": {
                "empty_timeout": self.empty_timeout,
                "departure_timeout": self.departure_timeout,
            },
            "logging": {"level": "info", "json": False},
        }
        if self.webhook_urls:
            config["webhook"] = {"api_key": self.api_key, "urls": list(self.webhook_urls)}
        return config

    @property
    def info(self) -> ServerInfo:
        assert self.node_ip and self._port, "the server is not started"
        return ServerInfo(
            f"ws://{self.node_ip}:{self._port}",
            self.api_key,
            self.api_secret,
            f"livekit-server {LIVEKIT_SERVER_VERSION}",
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 30.0, *, append: bool = False) -> ServerInfo:
        """Start the process and wait until it is ready (``GET /`` answers 200, and the
        room API answers); raises :class:`ServerUnavailable` with the log's tail otherwise.
        ``append``: keep what the log already holds (a restart)."""
        binary = self.binary or find_binary()
        config = self.config()
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="livekit-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab" if append else "wb")
        self._proc = subprocess.Popen(
            [str(binary), "--config-body", json.dumps(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.info

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        http = f"http://{self.node_ip}:{self._port}"
        last = "no answer"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise ServerUnavailable(
                    f"livekit-server exited with {self._proc.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(http + "/", timeout=1) as resp:
                    if resp.status == 200 and self._rooms_answer():
                        return
                    last = f"GET / answered {resp.status}"
            except OSError as e:  # refused, 406 until node stats are fresh, …
                last = str(e)
            time.sleep(0.1)
        raise ServerUnavailable(
            f"livekit-server not ready after {timeout:.0f} s ({last}):\n{self.log_tail()}"
        )

    def _rooms_answer(self) -> bool:
        """One Twirp ``ListRooms`` (JSON, so it works from inside a running event loop)."""
        from livekit import api

        token = (
            api.AccessToken(self.api_key, self.api_secret)
            .with_grants(api.VideoGrants(room_list=True))
            .to_jwt()
        )
        request = urllib.request.Request(
            self.info.http_url + "/twirp/livekit.RoomService/ListRooms",
            data=b"{}",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, a second SIGTERM a second later (after the first the server waits for
        participants to leave), then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGTERM, timeout)):
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, timeout: float = 30.0) -> ServerInfo:
        """Stop and start again on the same ports and keys (rooms are gone afterwards); the
        log goes on in the same file."""
        self.stop()
        return self.start(timeout, append=True)

    def __enter__(self) -> ServerInfo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_for_tests() -> tuple[ServerInfo, LiveKitServer | None]:
    """The external server when ``LIVEKIT_URL`` & co. are set, else a started
    :class:`LiveKitServer` (the caller stops it)."""
    external = external_server()
    if external is not None:
        return external, None
    server = LiveKitServer()
    return server.start(), server
