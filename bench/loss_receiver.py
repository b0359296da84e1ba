"""The report-loss benchmark's backend: one receiver per (scenario, agent).

`CellReceiver` serves the example receiver (Standard Webhooks verified, deduped by webhook-id)
for the kit and a plain JSON recorder for the naive agent, and can fail on purpose (503 for a
while, or the port closed); `Arrival` is what the naive recorder kept. Used by
`bench/report_loss.py` through `loss_runner.py` and read by `loss_table.py`.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from endcall.testing.stack import Served, _bind, load_example, serve


@dataclass
class Arrival:
    at: float
    key: str  # webhook-id (kit) or room name (naive)
    body: bytes
    status: int


class CellReceiver:
    """The backend of one (scenario, agent): the example receiver (Standard Webhooks verified,
    deduped by webhook-id) for the kit on ``/webhooks/session-ended``, a plain JSON recorder for
    the naive agent on ``/naive``; both answer 503 while ``down_for`` runs, and the whole port
    can be closed (``unreachable``)."""

    def __init__(self, secret: str, db: Path) -> None:
        self.example = load_example("receiver").Receiver(secret, db)
        self.naive: list[Arrival] = []
        self.served: Served | None = None
        self.port = 0

    @property
    def kit_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/session-ended"

    @property
    def naive_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/naive"

    def app(self) -> Starlette:
        async def naive(request: Request) -> Response:
            body = await request.body()
            if self.example.is_down:
                return JSONResponse({"error": "down"}, status_code=503)
            try:
                room = json.loads(body)["room"]["name"]
            except (ValueError, KeyError, TypeError):
                return JSONResponse({"error": "bad report"}, status_code=400)
            self.naive.append(Arrival(time.time(), str(room), body, 200))
            return JSONResponse({"status": "stored"})

        async def kit(request: Request) -> Response:
            # the example receiver's own handling: verify, dedupe by webhook-id, store
            headers = {k.lower(): v for k, v in request.headers.items()}
            status, answer, retry_after = self.example.handle(await request.body(), headers)
            extra = {"Retry-After": str(int(retry_after))} if retry_after else None
            return JSONResponse(answer, status_code=status, headers=extra)

        return Starlette(
            routes=[
                Route("/naive", naive, methods=["POST"]),
                Route("/webhooks/session-ended", kit, methods=["POST"]),
            ]
        )

    async def start(self) -> None:
        sock = _bind("127.0.0.1", self.port)
        self.port = sock.getsockname()[1]
        self.served = await serve(self.app(), sock=sock)

    async def stop(self) -> None:
        if self.served is not None:
            await self.served.stop()
            self.served = None

    async def unreachable_for(self, seconds: float) -> None:
        await self.stop()
        await asyncio.sleep(seconds)
        await self.start()
