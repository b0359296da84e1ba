"""Test support: a real webhook receiver (Starlette on uvicorn, 127.0.0.1) and a fake clock.

The receiver verifies every request with the reference ``standardwebhooks`` verifier and
answers according to a ``plan`` (fault injection): status, delay, headers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import standardwebhooks
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Action:
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    end_id: str
    body: bytes
    headers: dict[str, str]
    verified: bool
    verified_by: tuple[int, ...]  # indexes of secrets that verify it on their own
    nth: int  # 1-based attempt number seen for this end_id
    status: int  # what we answered
    at: float  # real time.time()
    completed: bool = False  # True once the answer was produced (after any delay)


Plan = Callable[[str, int], Action]


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records, verifies and injects faults."""

    def __init__(self, secrets: list[str], port: int | None = None) -> None:
        self.secrets = secrets
        self.port = port or free_port()
        self.plan: Plan = lambda end_id, nth: Action()
        self.requests: list[Received] = []
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        end_id = headers.get("webhook-id", "")
        verified_by = []
        for i, s in enumerate(self.secrets):
            try:
                standardwebhooks.Webhook(s).verify(body, headers, json_parse=False)
                verified_by.append(i)
            except Exception:
                pass
        with self._lock:
            nth = self._seen.get(end_id, 0) + 1
            self._seen[end_id] = nth
        action = self.plan(end_id, nth) if verified_by else Action(status=401)
        rec = Received(
            end_id,
            body,
            headers,
            bool(verified_by),
            tuple(verified_by),
            nth,
            action.status,
            time.time(),
        )
        with self._lock:
            self.requests.append(rec)
        if action.delay:
            await asyncio.sleep(action.delay)
        rec.completed = True
        content = b"" if action.status in (204, 304) else b"ok"
        return Response(content, status_code=action.status, headers=action.headers)

    def start(self) -> Receiver:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="error",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.time() + 10
        while not self._server.started:
            if time.time() > deadline or not self._thread.is_alive():
                raise RuntimeError("receiver did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None

    # -- views ---------------------------------------------------------------------------
    def accepted(self) -> dict[str, list[Received]]:
        """2xx answers per end_id."""
        out: dict[str, list[Received]] = {}
        with self._lock:
            for r in self.requests:
                if 200 <= r.status < 300 and r.completed:
                    out.setdefault(r.end_id, []).append(r)
        return out

    def by_id(self) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = {}
        with self._lock:
            for r in self.requests:
                out.setdefault(r.end_id, []).append(r)
        return out

    def kept(self) -> dict[str, bytes]:
        """What a receiver following protocol.md §6 ends with, per session: accepted reports in
        arrival order, a ``complete: true`` one replacing a ``complete: false`` one (a draft,
        webhook-id ``<end_id>.draft``), never the other way round."""
        out: dict[str, tuple[bool, bytes]] = {}
        with self._lock:
            for r in self.requests:
                if not (200 <= r.status < 300 and r.completed):
                    continue
                session = r.end_id.removesuffix(".draft")
                complete = json.loads(r.body).get("complete") is True
                if session not in out or (complete and not out[session][0]):
                    out[session] = (complete, r.body)
        return {k: v[1] for k, v in out.items()}

    def assert_invariants(self, expected: dict[str, bytes] | None = None) -> None:
        """Every request verified; every id's bodies byte-identical (and equal to expected);
        with ``expected``: every report accepted, no foreign ids."""
        groups = self.by_id()
        for end_id, reqs in groups.items():
            assert all(r.verified for r in reqs), f"{end_id}: unverified request"
            bodies = {r.body for r in reqs}
            assert len(bodies) == 1, f"{end_id}: {len(bodies)} different bodies"
            for r in reqs:
                assert r.headers["webhook-id"] == end_id
        if expected is not None:
            assert set(groups) <= set(expected), set(groups) - set(expected)
            acc = self.accepted()
            missing = set(expected) - set(acc)
            assert not missing, f"{len(missing)} reports never delivered: {sorted(missing)[:5]}"
            for end_id, body in expected.items():
                assert groups[end_id][0].body == body


class FakeClock:
    """Clock whose sleep advances time instantly (yielding once to the loop)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.now += seconds
