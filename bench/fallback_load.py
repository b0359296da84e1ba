"""Load benchmark of the fallback server: ``POST /v1/end`` vs a bare Starlette route.

Three processes on 127.0.0.1:

- **livekit**: the loopback hub with one room per request, each with an agent that acks at once
  (it answers the server channel by setting ``endcall.request_id``/``state``/``end_id``/
  ``reason``), behind the Twirp RoomService double on uvicorn;
- **server**: one uvicorn serving ``create_app(settings)`` (rate limits off) and, on the same
  app, a bare route ``POST /bare`` answering a constant 202 JSON;
- this process: the load generator (aiohttp, ``--concurrency`` connections, default 64),
  bounded by ``--count`` requests and ``--duration`` seconds per phase.

Each end request has a unique request id and a fresh room, and a LiveKit token for it, so
every request runs the full flow (ListParticipants, UpdateParticipant + SendData,
GetParticipant until the ack). A third route, ``POST /raw``, makes the same LiveKit calls
with none of the kit's checks (no token, no idempotency): the floor set by LiveKit's API.
Prints req/s, p50, p99 of each and the ratios (goal: end/bare throughput >= 0.5 and end p99
<= 25 ms), then the same routes over one connection (``--probe`` requests each): latency
without queueing.

    .venv/bin/python bench/fallback_load.py [--count 2000] [--duration 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

API_KEY = "APIbench"
API_SECRET = "bench-secret-bench-secret-bench-secret-0123456789"
WARMUP = 100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _room(i: int) -> str:
    return f"bench-{i}"


# --------------------------------------------------------------------------- livekit role


async def _livekit_role(port: int, rooms: int) -> None:
    import uvicorn
    from livekit import rtc

    from endcall.protocol import (
        ATTR_END_ID,
        ATTR_REASON,
        ATTR_REQUEST_ID,
        ATTR_STATE,
        DEFAULT_METHOD,
        ProtocolError,
        parse_request,
    )
    from endcall.testing import LoopbackRoom, LoopbackServer, RoomServiceDouble

    hub = LoopbackServer()
    background: set[asyncio.Task[None]] = set()

    def agent(room: LoopbackRoom) -> None:
        def on_data(packet: rtc.DataPacket) -> None:
            if packet.participant is not None or packet.topic != DEFAULT_METHOD:
                return
            try:
                request = parse_request(packet.data, origin="server")
            except ProtocolError:
                return
            task = asyncio.get_running_loop().create_task(
                room.local_participant.set_attributes(
                    {
                        ATTR_STATE: "ending",
                        ATTR_END_ID: "e_" + uuid.uuid4().hex[:12],
                        ATTR_REASON: request.reason,
                        ATTR_REQUEST_ID: request.id,
                    }
                )
            )
            background.add(task)
            task.add_done_callback(background.discard)

        room.on("data_received", on_data)

    for i in range(rooms):
        lb = await hub.connect(_room(i), "agent", kind=rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)
        agent(lb)
    double = RoomServiceDouble(hub, api_key=API_KEY, api_secret=API_SECRET)
    config = uvicorn.Config(
        double, host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    await uvicorn.Server(config).serve()


# --------------------------------------------------------------------------- server role


def _server_role(port: int, livekit_url: str) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Mount, Route

    from endcall.protocol import ATTR_REQUEST, ATTR_REQUEST_ID, DEFAULT_METHOD
    from endcall.server import RoomGateway, Settings, create_app

    settings = Settings(
        livekit_url=livekit_url,
        api_key=API_KEY,
        api_secret=API_SECRET,
        rate_limit_identity=None,
        rate_limit_address=None,
        ack_timeout=3.0,
    )
    endcall_app = create_app(settings)

    async def bare(request: Request) -> Response:
        await request.body()
        return JSONResponse({"status": "accepted"}, status_code=202)

    gateway = RoomGateway(livekit_url, API_KEY, API_SECRET)

    async def raw(request: Request) -> Response:
        """The same LiveKit calls as /v1/end with none of the kit's checks: the floor."""
        body = json.loads(await request.body())
        room, rid = body["room"], body["id"]
        participants = await gateway.list_participants(room)
        agent = next(p.identity for p in participants if p.kind == 4)
        payload = json.dumps(body)
        await asyncio.gather(
            gateway.set_attributes(room, agent, {ATTR_REQUEST: payload}),
            gateway.send_data(room, agent, payload.encode(), DEFAULT_METHOD),
        )
        for _ in range(1500):  # poll like the kit, at most ~3 s
            info = await gateway.get_participant(room, agent)
            if info.attributes.get(ATTR_REQUEST_ID) == rid:
                break
            await asyncio.sleep(0.002)
        return JSONResponse({"status": "accepted"}, status_code=202)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        async with endcall_app.router.lifespan_context(endcall_app):
            yield
        await gateway.aclose()

    app = Starlette(
        routes=[
            Route("/bare", bare, methods=["POST"]),
            Route("/raw", raw, methods=["POST"]),
            Mount("/", app=endcall_app),
        ],
        lifespan=lifespan,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --------------------------------------------------------------------------- load


async def _wait_ready(url: str, timeout: float = 60.0) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.post(url, data=b"") as resp:
                    await resp.read()
                    return
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


async def _phase(
    url: str,
    payloads: list[tuple[bytes, dict[str, str]]],
    *,
    concurrency: int,
    duration: float,
    expect: int,
) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    failures: dict[str, int] = {}
    index = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        deadline = start + duration

        async def worker() -> None:
            nonlocal index
            while index < len(payloads) and time.perf_counter() < deadline:
                body, headers = payloads[index]
                index += 1
                t0 = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
                latencies.append(time.perf_counter() - t0)
                if status != expect:
                    failures[str(status)] = failures.get(str(status), 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "seconds": round(elapsed, 3),
        "rps": round(n / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[min(n - 1, int(n * 0.99))] * 1000, 2),
        "failures": failures,
    }


def _end_payloads(first_room: int, count: int) -> list[tuple[bytes, dict[str, str]]]:
    from livekit import api

    out = []
    for i in range(first_room, first_room + count):
        room = _room(i)
        token = (
            api.AccessToken(API_KEY, API_SECRET)
            .with_identity("candidate")
            .with_grants(api.VideoGrants(room_join=True, room=room))
            .with_ttl(datetime.timedelta(hours=1))
            .to_jwt()
        )
        body = {"type": "end.request", "v": 1, "id": f"r_{uuid.uuid4().hex}", "room": room}
        out.append(
            (
                json.dumps(body).encode(),
                {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            )
        )
    return out


def _start(
    args: argparse.Namespace, lk_port: int, server_port: int
) -> list[subprocess.Popen[bytes]]:
    rooms = args.count + WARMUP + args.probe
    me = [sys.executable, __file__]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    livekit = subprocess.Popen(
        [*me, "--role", "livekit", "--port", str(lk_port), "--rooms", str(rooms)], env=env
    )
    server = subprocess.Popen(
        [
            *me,
            "--role",
            "server",
            "--port",
            str(server_port),
            "--livekit-url",
            f"http://127.0.0.1:{lk_port}",
        ],
        env=env,
    )
    return [server, livekit]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _run(args: argparse.Namespace, lk_port: int, server_port: int) -> dict[str, Any]:
    rooms = args.count + WARMUP + args.probe
    base = f"http://127.0.0.1:{server_port}"
    await _wait_ready(f"http://127.0.0.1:{lk_port}/twirp/livekit.RoomService/ListRooms")
    await _wait_ready(base + "/bare")
    end_payloads = _end_payloads(0, rooms)
    plain = [(body, {"Content-Type": "application/json"}) for body, _ in end_payloads]
    warm, measured, probe = (
        slice(0, WARMUP),
        slice(WARMUP, WARMUP + args.count),
        slice(WARMUP + args.count, rooms),
    )

    async def phase(route: str, payloads: Any, concurrency: int) -> dict[str, Any]:
        return await _phase(
            base + route, payloads, concurrency=concurrency, duration=args.duration, expect=202
        )

    # warm-up: connections, first-call costs. /raw reuses the rooms after /v1/end used them
    # (its agent acks every request; /v1/end needs rooms that are not ending yet).
    await phase("/v1/end", end_payloads[warm], args.concurrency)
    await phase("/bare", plain[warm], args.concurrency)
    await phase("/raw", plain[warm], args.concurrency)
    loaded = {
        "bare": await phase("/bare", plain[measured], args.concurrency),
        "end": await phase("/v1/end", end_payloads[measured], args.concurrency),
        "raw": await phase("/raw", plain[measured], args.concurrency),
    }
    one = {
        "bare": await phase("/bare", plain[probe], 1),
        "end": await phase("/v1/end", end_payloads[probe], 1),
        "raw": await phase("/raw", plain[probe], 1),
    }
    return {
        "concurrency": args.concurrency,
        **loaded,
        "ratio": round(loaded["end"]["rps"] / loaded["bare"]["rps"], 3),
        "ratio_vs_raw": round(loaded["end"]["rps"] / loaded["raw"]["rps"], 3),
        "one_connection": one,
        "goal": {"ratio_min": 0.5, "end_p99_ms_max": 25},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="requests per phase (max)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase (max)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--probe", type=int, default=300, help="requests over one connection")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--role", choices=["livekit", "server"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rooms", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--livekit-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "livekit":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_livekit_role(args.port, args.rooms))
        return
    if args.role == "server":
        _server_role(args.port, args.livekit_url)
        return
    lk_port, server_port = _free_port(), _free_port()
    procs = _start(args, lk_port, server_port)
    try:
        result = asyncio.run(_run(args, lk_port, server_port))
    finally:
        _stop(procs)
    if args.json:
        print(json.dumps(result))
        return
    names = {"bare": "/bare", "raw": "/raw", "end": "/v1/end"}
    print(f"fallback server load ({args.concurrency} connections, then 1 connection)")
    header = ("route", "conns", "requests", "req/s", "p50 ms", "p99 ms")
    print(f"{header[0]:<10}" + "".join(f"{h:>10}" for h in header[1:]) + "  failures")
    for rows, conns in ((result, args.concurrency), (result["one_connection"], 1)):
        for name in ("bare", "raw", "end"):
            row = rows[name]
            print(
                f"{names[name]:<10}{conns:>10}{row['requests']:>10}{row['rps']:>10}"
                f"{row['p50_ms']:>10}{row['p99_ms']:>10}  {row['failures'] or '-'}"
            )
    ratio = result["ratio"]
    verdict = "met" if ratio >= 0.5 else "NOT met"
    print(f"throughput /v1/end vs /bare: {ratio} (goal >= 0.5: {verdict})")
    print(f"throughput /v1/end vs /raw (same LiveKit calls, no checks): {result['ratio_vs_raw']}")
    p99 = result["end"]["p99_ms"]
    verdict = "met" if p99 <= 25 else "NOT met"
    print(f"/v1/end p99 at {args.concurrency} connections: {p99} ms (goal <= 25 ms: {verdict})")
    p99_one = result["one_connection"]["end"]["p99_ms"]
    print(f"/v1/end p99 over 1 connection: {p99_one} ms ({'<=' if p99_one <= 25 else '>'} 25 ms)")


if __name__ == "__main__":
    main()
