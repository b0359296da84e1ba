"""The whole endcall system on 127.0.0.1, for the demo and the browser tests (test tooling).

:class:`LocalStack` starts, in the running event loop:

- one "site" server: the built example page (``examples/web/dist``), ``GET /api/session``
  (mints the participant's LiveKit token and an endcall end token), the loopback bridge
  (``/loopback`` WebSocket), LiveKit's RoomService as the Twirp double (``/twirp/...``) and the
  fallback server (``POST /v1/end``, ``/healthz``, ``/openapi.json``) — one origin, so the page
  needs no CORS and ``sendBeacon`` goes to the same host;
- the example receiver (``examples/receiver.py``) on its own port, unless reports go to an
  external webhook;
- the shared :class:`~endcall.testing.LoopbackServer` hub the agents join.

The example page and receiver live in the repository (``examples/``); ``examples_dir()``
finds them from a source checkout (an editable install).
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import secrets
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import uvicorn
from livekit import api
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from endcall.server import create_app as create_fallback_app
from endcall.server.settings import Settings
from endcall.server.tokens import mint_end_token
from endcall.testing.bridge import BRIDGE_PATH, LoopbackBridge, bridge_app
from endcall.testing.loopback import LoopbackServer
from endcall.testing.roomservice import RoomServiceDouble

__all__ = [
    "LocalStack",
    "Served",
    "SessionRequest",
    "examples_dir",
    "load_example",
    "serve",
]

RECEIVER_PATH = "/webhooks/session-ended"


def examples_dir() -> Path:
    """``examples/`` of the source checkout this package runs from (raises if absent)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "examples"
        if (candidate / "receiver.py").is_file():
            return candidate
    raise FileNotFoundError(
        "examples/ not found: the demo runs from a source checkout (git clone, then make demo)"
    )


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (the examples are scripts, not a package)."""
    key = f"_endcall_example_{name}"
    module = sys.modules.get(key)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(key, examples_dir() / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load examples/{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[key]
        raise
    return module


@dataclass
class Served:
    """An ASGI app running on uvicorn at ``url``."""

    url: str
    server: uvicorn.Server
    task: asyncio.Task[None]
    sock: socket.socket

    async def stop(self) -> None:
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 10)
        except asyncio.TimeoutError:
            self.server.force_exit = True
            await self.task
        self.sock.close()


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


async def serve(app: Any, *, host: str = "127.0.0.1", sock: socket.socket | None = None) -> Served:
    """Start ``app`` on uvicorn in this event loop (a free port unless ``sock`` is given)."""
    sock = sock or _bind(host, 0)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        log_config=None,  # leave the process's logging alone (dictConfig would reset it)
        lifespan="on",
        ws="websockets-sansio",
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before starting")
        await asyncio.sleep(0.01)
    return Served(f"http://{host}:{port}", server, task, sock)


@dataclass(frozen=True)
class SessionRequest:
    """A page asked for a session (``GET /api/session``)."""

    room: str
    identity: str
    params: dict[str, str]


OnSession = Callable[[SessionRequest], Awaitable[None]]


class _Site:
    """One origin: bridge, Twirp double (both loopback only), session endpoint, fallback
    server, static page."""

    def __init__(
        self,
        *,
        bridge: Starlette | None,
        roomservice: RoomServiceDouble | None,
        fallback: Starlette,
        session: Starlette,
        page: Any,
    ) -> None:
        self.bridge = bridge
        self.roomservice = roomservice
        self.fallback = fallback
        self.session = session
        self.page = page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "lifespan":  # the fallback server closes its LiveKit client
            await self.fallback(scope, receive, send)
        elif scope["type"] == "websocket" and self.bridge is not None:
            await self.bridge(scope, receive, send)
        elif path.startswith("/twirp/") and self.roomservice is not None:
            await self.roomservice(scope, receive, send)
        elif path == "/api/session":
            await self.session(scope, receive, send)
        elif path.startswith("/v1/") or path in ("/healthz", "/openapi.json"):
            await self.fallback(scope, receive, send)
        else:
            await self.page(scope, receive, send)


async def _no_page(scope: Scope, receive: Receive, send: Send) -> None:
    response = Response(
        "the example page is not built: run `npm ci && npm run build` in examples/web\n",
        status_code=503,
        media_type="text/plain",
    )
    await response(scope, receive, send)


class LocalStack:
    """Everything the demo and the browser tests need, on 127.0.0.1 (see the module doc).

    ``webhook_url``/``webhook_secret``: send reports to another receiver instead of the
    example one. ``on_session``: called when a page asks for a session (start an agent there).
    ``ack_timeout``: the fallback server's wait for the agent's ack.
    """

    def __init__(
        self,
        output_dir: Path,
        *,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        page_dir: Path | None = None,
        ack_timeout: float = 3.0,
        on_session: OnSession | None = None,
        title: str = "Mock interview: Backend Engineer",
        stay_for_report_ms: int = 60_000,
        abandon_after: float = 2.0,
    ) -> None:
        self.output_dir = output_dir
        self.api_key = "endcall-demo"
        self.api_secret = secrets.token_urlsafe(32)
        self.hub = LoopbackServer()
        self.external_webhook = webhook_url
        self.webhook_secret = webhook_secret or (
            "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        )
        self.page_dir = page_dir if page_dir is not None else examples_dir() / "web" / "dist"
        self.ack_timeout = ack_timeout
        self.on_session = on_session
        self.title = title
        self.stay_for_report_ms = stay_for_report_ms
        self.abandon_after = abandon_after
        self.receiver: Any = None
        self.receiver_served: Served | None = None
        self.site: Served | None = None
        self.bridge: LoopbackBridge | None = None
        self.roomservice: RoomServiceDouble | None = None
        self._session_tasks: set[asyncio.Task[None]] = set()
        self._counter = 0

    # -- addresses ---------------------------------------------------------------------------
    @property
    def site_url(self) -> str:
        assert self.site is not None, "the stack is not started"
        return self.site.url

    @property
    def livekit_url(self) -> str:
        """Where livekit-api clients reach the RoomService double."""
        return self.site_url

    @property
    def webhook_url(self) -> str:
        if self.external_webhook:
            return self.external_webhook
        assert self.receiver_served is not None
        return self.receiver_served.url + RECEIVER_PATH

    @property
    def receiver_url(self) -> str | None:
        return self.receiver_served.url if self.receiver_served else None

    @property
    def outbox_path(self) -> Path:
        return self.output_dir / "outbox.sqlite"

    @property
    def reports_path(self) -> Path:
        return self.output_dir / "reports.sqlite"

    def page_url(self, room: str, identity: str, **params: str) -> str:
        from urllib.parse import urlencode

        return f"{self.site_url}/?{urlencode({'room': room, 'identity': identity, **params})}"

    def api_client(self) -> api.LiveKitAPI:
        """A real livekit-api client talking to the Twirp double (close it after use)."""
        return api.LiveKitAPI(self.livekit_url, self.api_key, self.api_secret)

    async def delete_room(self, room: str) -> None:
        """Delete ``room`` through the real livekit-api client (how an agent job does it)."""
        lk = self.api_client()
        try:
            await lk.room.delete_room(api.DeleteRoomRequest(room=room))
        except api.TwirpError as e:
            if e.code != api.TwirpErrorCode.NOT_FOUND:
                raise
        finally:
            await lk.aclose()

    # -- tokens ------------------------------------------------------------------------------
    def access_token(self, room: str, identity: str) -> str:
        token = (
            api.AccessToken(self.api_key, self.api_secret)
            .with_identity(identity)
            .with_name(identity)
            .with_grants(
                api.VideoGrants(
                    room_join=True,
                    room=room,
                    can_publish=True,
                    can_subscribe=True,
                    can_publish_data=True,
                )
            )
        )
        config = self.room_configuration(room)
        if config is not None:
            token = token.with_room_config(config)
        return token.to_jwt()

    def room_configuration(self, room: str) -> api.RoomConfiguration | None:
        """What the page's token asks of a room it creates (none here: the loopback demo
        starts its agents itself)."""
        return None

    def session_config(self, request: Request, room: str, identity: str) -> dict[str, Any]:
        host = request.headers.get("host") or request.url.netloc
        mode, url = self.join_target(host)
        return {
            "mode": mode,
            "url": url,
            "token": self.access_token(room, identity),
            "room": room,
            "identity": identity,
            "fallbackUrl": f"http://{host}/v1/end",
            "endToken": mint_end_token(
                room, identity, 3600, api_key=self.api_key, api_secret=self.api_secret
            ),
            "answerBox": True,
            "beaconReason": "customer-tab-closed",
            "stayForReportMs": self.stay_for_report_ms,
            "title": self.title,
        }

    def join_target(self, host: str) -> tuple[str, str]:
        """The page's ``mode`` and the URL it joins (here: the bridge on the page's host)."""
        return "loopback", f"ws://{host}{BRIDGE_PATH}"

    def room_exists(self, room: str) -> bool:
        return self.hub.room_exists(room)

    # -- lifecycle ---------------------------------------------------------------------------
    async def _session(self, request: Request) -> Response:
        params = dict(request.query_params)
        room = params.get("room")
        identity = params.get("identity")
        if not room:
            self._counter += 1
            room = f"interview-{self._counter}-{secrets.token_hex(3)}"
        if not identity:
            identity = f"candidate-{secrets.token_hex(3)}"
        if self.on_session is not None and not self.room_exists(room):
            await self.on_session(SessionRequest(room, identity, params))
        return JSONResponse(self.session_config(request, room, identity))

    async def start(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        await self._start_receiver()
        sock = _bind("127.0.0.1", 0)
        site_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.roomservice = RoomServiceDouble(
            self.hub, api_key=self.api_key, api_secret=self.api_secret
        )
        bridge = bridge_app(
            self.hub,
            token_verifier=api.TokenVerifier(self.api_key, self.api_secret),
            abandon_after=self.abandon_after,
        )
        self.bridge = bridge.state.bridge
        site = _Site(
            bridge=bridge,
            roomservice=self.roomservice,
            fallback=create_fallback_app(self.fallback_settings(site_url)),
            session=self._session_app(),
            page=self._page_app(),
        )
        self.site = await serve(site, sock=sock)

    async def _start_receiver(self) -> None:
        if self.external_webhook is None:
            receiver_mod = load_example("receiver")
            self.receiver = receiver_mod.Receiver(self.webhook_secret, self.reports_path)
            self.receiver_served = await serve(receiver_mod.create_app(self.receiver))

    def fallback_settings(self, livekit_url: str) -> Settings:
        """The fallback server's settings: LiveKit's RoomService at ``livekit_url``."""
        return Settings(
            livekit_url=livekit_url,
            api_key=self.api_key,
            api_secret=self.api_secret,
            ack_timeout=self.ack_timeout,
            rate_limit_address=None,
        )

    def _session_app(self) -> Starlette:
        return Starlette(routes=[Route("/api/session", self._session, methods=["GET"])])

    def _page_app(self) -> Any:
        if (self.page_dir / "index.html").is_file():
            return Starlette(
                routes=[Mount("/", StaticFiles(directory=str(self.page_dir), html=True))]
            )
        return _no_page

    async def stop(self) -> None:
        for served in (self.site, self.receiver_served):
            if served is not None:
                await served.stop()
        self.site = self.receiver_served = None
        if self.receiver is not None:
            self.receiver.close()
            self.receiver = None

    async def __aenter__(self) -> LocalStack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
