"""Load benchmark of the fallback server: ``POST /v1/end`` vs a bare Starlette route.

By default on a **real livekit-server** (started here: run inside ``scripts/in-netns``; or the
one ``LIVEKIT_URL``/``LIVEKIT_API_KEY``/``LIVEKIT_API_SECRET`` name). Processes:

- **livekit**: livekit-server itself;
- **agents**: one ``rtc.Room`` per load connection (``--concurrency``, default 32 here), each
  an agent participant in its own room that acks at once: on the server channel's data packet
  it sets ``endcall.request_id``/``end_id``/``reason`` in one ``set_attributes`` (it keeps
  ``endcall.state`` at ``active``, so the next request to its room runs the full flow again
  instead of being answered ``already_ending`` from the attributes);
- **server**: one uvicorn serving ``create_app(settings)`` on the real RoomService (rate
  limits off, ``escalation="none"`` so a late ack cannot delete a room mid-bench) with two
  more routes on the same app (same middleware): ``POST /bare`` answering a constant 202 JSON,
  and ``POST /raw`` making the same LiveKit calls as ``/v1/end`` with none of the kit's checks
  (no token, no body checks, no idempotency): the floor set by LiveKit's API;
- this process: the load generator (aiohttp), connection *k* always ending room *k* (one
  request at a time per room), bounded by ``--count`` requests and ``--duration`` seconds per
  route, run in ``--rounds`` interleaved rounds (bare, end, raw, bare, ...) so that other load
  on a shared machine falls on the three routes alike.

``--loopback`` runs the old mode: the loopback hub with one fresh room per request and the
Twirp RoomService double on uvicorn instead of livekit-server (default 64 connections).

Each end request has a unique request id and a LiveKit token for its room, so every request
runs the full flow (ListParticipants, UpdateParticipant + SendData, GetParticipant until the
ack); an answer other than 202 ``acked_by: agent`` counts as a failure. Prints req/s, p50, p99
of each route and the ratios, then the same routes over one connection (``--probe`` requests
each): latency without queueing. LiveKit shares the 2 cores with the server here, so the bench
also prints the CPU time each process spent per request (from ``/proc``).

    scripts/in-netns .venv/bin/python bench/fallback_load.py [--count 2000] [--duration 10]
        [--rounds 4] [--concurrency 32] [--json]
    .venv/bin/python bench/fallback_load.py --loopback [...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

API_KEY = "APIbench"
API_SECRET = "bench-secret-bench-secret-bench-secret-0123456789"
WARMUP = 100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _room(i: int) -> str:
    return f"bench-{i}"


def _run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed (as uvicorn does), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _stack() -> str:
    """The event loop and HTTP parser uvicorn picks ("auto": whichever imports), for the report."""
    names = []
    for fast, fallback in (("uvloop", "asyncio"), ("httptools", "h11")):
        try:
            __import__(fast)
        except ImportError:
            names.append(fallback)
        else:
            names.append(fast)
    return " + ".join(names)


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc``; None elsewhere)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


async def _agents_role(url: str, key: str, secret: str, rooms: int, ready: str) -> None:
    """``rooms`` agent participants on a real server, one per room, acking every end request
    that reaches them over the server channel (see the module doc)."""
    from livekit import api, rtc

    from endcall.protocol import (
        ATTR_END_ID,
        ATTR_REASON,
        ATTR_REQUEST_ID,
        DEFAULT_METHOD,
        ProtocolError,
        parse_request,
    )

    background: set[asyncio.Task[None]] = set()

    async def agent(i: int) -> rtc.Room:
        room = rtc.Room()

        def on_data(packet: rtc.DataPacket) -> None:
            if packet.participant is not None or packet.topic != DEFAULT_METHOD:
                return
            try:
                request = parse_request(packet.data, origin="server")
            except ProtocolError:
                return
            ack = {
                ATTR_END_ID: "e_" + uuid.uuid4().hex[:12],
                ATTR_REASON: request.reason,
                ATTR_REQUEST_ID: request.id,
            }
            task = asyncio.get_running_loop().create_task(
                room.local_participant.set_attributes(ack)
            )
            background.add(task)
            task.add_done_callback(background.discard)

        room.on("data_received", on_data)
        token = (
            api.AccessToken(key, secret)
            .with_identity(f"agent-{i}")
            .with_kind("agent")
            .with_grants(
                api.VideoGrants(room_join=True, room=_room(i), can_update_own_metadata=True)
            )
            .to_jwt()
        )
        await room.connect(url, token)
        await room.local_participant.set_attributes({"endcall.state": "active"})
        return room

    # created up front with long timeouts: livekit-server closes a room that holds only
    # agents (no candidate joins here) after its empty_timeout
    lk = api.LiveKitAPI(url, key, secret)
    try:
        for i in range(rooms):
            await lk.room.create_room(
                api.CreateRoomRequest(name=_room(i), empty_timeout=3600, departure_timeout=3600)
            )
    finally:
        await lk.aclose()
    connected = []
    for start in range(0, rooms, 8):  # a few connections at a time
        batch = range(start, min(rooms, start + 8))
        connected += await asyncio.gather(*(agent(i) for i in batch))
    await asyncio.to_thread(Path(ready).write_text, "ready\n")
    try:
        await asyncio.Event().wait()
    finally:
        for room in connected:
            with contextlib.suppress(Exception):
                await room.disconnect()


# --------------------------------------------------------------------------- server role


def _server_role(port: int, livekit_url: str, key: str, secret: str, real: bool) -> None:
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from endcall.protocol import ATTR_REQUEST, ATTR_REQUEST_ID, DEFAULT_METHOD
    from endcall.server import RoomGateway, Settings, create_app

    settings = Settings(
        livekit_url=livekit_url,
        api_key=key,
        api_secret=secret,
        rate_limit_identity=None,
        rate_limit_address=None,
        ack_timeout=3.0,
        # on the real server the rooms are reused: a late ack must not delete one
        escalation="none" if real else "delete_room",
    )
    gateway = RoomGateway(livekit_url, key, secret)

    async def bare(request: Request) -> Response:
        await request.body()
        return JSONResponse({"status": "accepted"}, status_code=202)

    async def raw(request: Request) -> Response:
        """The same LiveKit calls as /v1/end with none of the kit's checks: the floor."""
        body = json.loads(await request.body())
        room, rid = body["room"], body["id"]
        participants = await gateway.list_participants(room)
        agent = next(p.identity for p in participants if p.kind == 4)
        payload = json.dumps(body)
        wrote, _ = await asyncio.gather(
            gateway.set_attributes(room, agent, {ATTR_REQUEST: payload}),
            gateway.send_data(room, agent, payload.encode(), DEFAULT_METHOD),
        )
        if wrote.attributes.get(ATTR_REQUEST_ID) == rid:  # acked already, as the kit checks
            return JSONResponse({"status": "accepted"}, status_code=202)
        for _ in range(1500):  # poll like the kit, at most ~3 s
            await asyncio.sleep(0.002)
            info = await gateway.get_participant(room, agent)
            if info.attributes.get(ATTR_REQUEST_ID) == rid:
                return JSONResponse({"status": "accepted"}, status_code=202)
        return JSONResponse({"status": "no ack"}, status_code=504)

    # the baseline routes go on the endcall app itself: same uvicorn, same middleware stack
    app = create_app(settings)
    app.router.routes[:0] = [
        Route("/bare", bare, methods=["POST"]),
        Route("/raw", raw, methods=["POST"]),
    ]
    endcall_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        async with endcall_lifespan(app):
            yield
        await gateway.aclose()

    app.router.lifespan_context = lifespan
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


@dataclasses.dataclass
class _Sample:
    """One run of one route: latencies (s), wall time (s), failures, CPU seconds used."""

    latencies: list[float]
    seconds: float
    failures: dict[str, int]
    cpu: dict[str, float | None]


Payload = tuple[bytes, dict[str, str]]


async def _phase(
    url: str,
    rows: list[int],
    make: Callable[[int, int], Payload],
    *,
    concurrency: int,
    duration: float,
    agent_ack: bool,
    pids: dict[str, int | None],
) -> _Sample:
    """POST ``make(connection, row)`` for each of ``rows`` to ``url`` over ``concurrency``
    connections (at most ``duration`` s). Success is 202, and with ``agent_ack`` also
    ``acked_by: agent`` in the answer."""
    import aiohttp

    latencies: list[float] = []
    failures: dict[str, int] = {}
    index = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        cpu_before["loadgen"] = time.process_time()
        start = time.perf_counter()
        deadline = start + duration

        async def worker(connection: int) -> None:
            nonlocal index
            while index < len(rows) and time.perf_counter() < deadline:
                body, headers = make(connection, rows[index])
                index += 1
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        answer = await resp.read()
                        status = resp.status
                except aiohttp.ClientError as exc:  # e.g. a connection reset: a failure
                    failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                    continue
                latencies.append(time.perf_counter() - t0)
                outcome = str(status)
                if status == 202 and agent_ack:
                    acked_by = json.loads(answer).get("acked_by")
                    outcome = "202" if acked_by == "agent" else f"202 acked_by={acked_by}"
                if outcome != "202":
                    failures[outcome] = failures.get(outcome, 0) + 1

        await asyncio.gather(*(worker(c) for c in range(concurrency)))
        elapsed = time.perf_counter() - start
        cpu_after = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        cpu_after["loadgen"] = time.process_time()
    cpu: dict[str, float | None] = {}
    for name, before in cpu_before.items():
        after = cpu_after[name]
        cpu[name] = None if before is None or after is None else after - before
    return _Sample(latencies, elapsed, failures, cpu)


def _summary(samples: list[_Sample]) -> dict[str, Any]:
    """One route's figures over its rounds: requests over summed wall time, pooled latencies."""
    latencies = sorted(x for sample in samples for x in sample.latencies)
    n = len(latencies)
    elapsed = sum(sample.seconds for sample in samples)
    failures: dict[str, int] = {}
    cpu_ms: dict[str, float | None] = {}
    for sample in samples:
        for outcome, count in sample.failures.items():
            failures[outcome] = failures.get(outcome, 0) + count
        for name, used in sample.cpu.items():
            so_far = cpu_ms.get(name, 0.0)
            cpu_ms[name] = None if used is None or so_far is None else so_far + used
    return {
        "requests": n,
        "seconds": round(elapsed, 3),
        "rps": round(n / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[min(n - 1, int(n * 0.99))] * 1000, 2),
        "failures": failures,
        "cpu_ms_per_request": {
            name: None if used is None else round(used * 1000 / n, 2)
            for name, used in cpu_ms.items()
        },
    }


def _token(key: str, secret: str, room: str) -> str:
    from livekit import api

    return (
        api.AccessToken(key, secret)
        .with_identity("candidate")
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .with_ttl(datetime.timedelta(hours=1))
        .to_jwt()
    )


def _payload(room: str, token: str | None) -> Payload:
    """An end request for ``room`` with a fresh id (and the candidate's token, if any)."""
    body = {"type": "end.request", "v": 1, "id": f"r_{uuid.uuid4().hex}", "room": room}
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return json.dumps(body).encode(), headers


@dataclasses.dataclass
class _Target:
    """Where the load goes and what LiveKit the server talks to."""

    real: bool
    server_port: int
    livekit_url: str  #: http(s) base URL of the RoomService for the server role
    ws_url: str  #: for the agents (real mode)
    key: str
    secret: str
    name: str  #: "livekit-server 1.13.5", "external" or "loopback"
    lk_port: int = 0  #: the loopback double's port
    ready_file: str = ""


def _start(args: argparse.Namespace, target: _Target) -> list[subprocess.Popen[bytes]]:
    me = [sys.executable, __file__]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if target.real:
        helper = subprocess.Popen(
            [
                *me,
                "--role",
                "agents",
                "--livekit-url",
                target.ws_url,
                "--rooms",
                str(args.concurrency),
                "--ready",
                target.ready_file,
            ],
            env=dict(env, BENCH_LK_KEY=target.key, BENCH_LK_SECRET=target.secret),
        )
    else:
        rooms = args.count + WARMUP + args.probe
        helper = subprocess.Popen(
            [*me, "--role", "livekit", "--port", str(target.lk_port), "--rooms", str(rooms)],
            env=env,
        )
    server = subprocess.Popen(
        [
            *me,
            "--role",
            "server",
            "--port",
            str(target.server_port),
            "--livekit-url",
            target.livekit_url,
            *(["--real"] if target.real else []),
        ],
        env=dict(env, BENCH_LK_KEY=target.key, BENCH_LK_SECRET=target.secret),
    )
    return [server, helper]


async def _wait_file(path: str, proc: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(os.path.exists, path):
        if proc.poll() is not None:
            raise RuntimeError(f"the agents process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the agents did not join in {timeout:.0f} s")
        await asyncio.sleep(0.2)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _run(
    args: argparse.Namespace,
    target: _Target,
    procs: list[subprocess.Popen[bytes]],
    pids: dict[str, int | None],
) -> dict[str, Any]:
    rooms = args.count + WARMUP + args.probe
    base = f"http://127.0.0.1:{target.server_port}"
    make_end: Callable[[int, int], Payload]
    make_plain: Callable[[int, int], Payload]
    if target.real:
        await _wait_file(target.ready_file, procs[1])
        # connection k always ends room k: one request at a time per room and agent
        tokens = [_token(target.key, target.secret, _room(k)) for k in range(args.concurrency)]

        def make_end(connection: int, row: int) -> Payload:
            return _payload(_room(connection), tokens[connection])

        def make_plain(connection: int, row: int) -> Payload:
            return _payload(_room(connection), None)
    else:
        await _wait_ready(f"http://127.0.0.1:{target.lk_port}/twirp/livekit.RoomService/ListRooms")
        # one fresh room per request (an ended agent answers from its attributes)
        end_payloads = [
            _payload(_room(i), _token(target.key, target.secret, _room(i))) for i in range(rooms)
        ]
        plain = [(body, {"Content-Type": "application/json"}) for body, _ in end_payloads]

        def make_end(connection: int, row: int) -> Payload:
            return end_payloads[row]

        def make_plain(connection: int, row: int) -> Payload:
            return plain[row]

    await _wait_ready(base + "/bare")
    warm, measured, probe = (
        slice(0, WARMUP),
        slice(WARMUP, WARMUP + args.count),
        slice(WARMUP + args.count, rooms),
    )

    async def phase(route: str, chunk: list[int], concurrency: int, duration: float) -> _Sample:
        return await _phase(
            base + route,
            chunk,
            make_end if route == "/v1/end" else make_plain,
            concurrency=concurrency,
            duration=duration,
            agent_ack=route == "/v1/end",
            pids=pids,
        )

    async def compare(payloads: slice, concurrency: int) -> dict[str, dict[str, Any]]:
        """The three routes in ``args.rounds`` interleaved rounds (bare, end, raw; each on its
        share of ``payloads``, for at most its share of ``args.duration``), so that load from
        other tenants of a shared machine falls on all three alike. On the loopback /raw
        reuses the rooms /v1/end just ended (its agent acks every request; /v1/end needs
        fresh rooms there)."""
        rows = list(range(rooms))[payloads]
        size = -(-len(rows) // args.rounds)
        samples: dict[str, list[_Sample]] = {"bare": [], "end": [], "raw": []}
        for r in range(args.rounds):
            chunk = rows[r * size : (r + 1) * size]
            if not chunk:
                break
            share = args.duration / args.rounds
            samples["bare"].append(await phase("/bare", chunk, concurrency, share))
            samples["end"].append(await phase("/v1/end", chunk, concurrency, share))
            samples["raw"].append(await phase("/raw", chunk, concurrency, share))
        return {name: _summary(runs) for name, runs in samples.items()}

    load_before = os.getloadavg()[0]
    await compare(warm, args.concurrency)  # warm-up: connections, first-call costs
    loaded = await compare(measured, args.concurrency)
    one = await compare(probe, 1)
    result: dict[str, Any] = {
        "livekit": target.name,
        "concurrency": args.concurrency,
        "stack": _stack(),
        "cpus": os.cpu_count(),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        **loaded,
        "ratio": round(loaded["end"]["rps"] / loaded["bare"]["rps"], 3),
        "ratio_vs_raw": round(loaded["end"]["rps"] / loaded["raw"]["rps"], 3),
        "one_connection": one,
        "goal": {"ratio_min": 0.5, "end_p99_ms_max": 25},
    }
    cpu = {name: loaded[name]["cpu_ms_per_request"] for name in ("bare", "raw", "end")}
    if all(v is not None for row in cpu.values() for v in row.values()):
        total = {name: sum(row.values()) for name, row in cpu.items()}
        result["cpu"] = {
            # the server alone (LiveKit elsewhere, one core each): its throughput ratio
            "server_ratio": round(cpu["bare"]["server"] / cpu["end"]["server"], 3),
            # what the kit's checks add to the LiveKit calls themselves, per request
            "checks_ms": round(cpu["end"]["server"] - cpu["raw"]["server"], 3),
            # all three processes on this machine's cores: the best ratio CPU allows here
            "machine_ratio": round(total["bare"] / total["end"], 3),
            "end_rps_ceiling": round((os.cpu_count() or 1) * 1000 / total["end"], 1),
        }
    return result


def _print(args: argparse.Namespace, result: dict[str, Any]) -> None:
    names = {"bare": "/bare", "raw": "/raw", "end": "/v1/end"}
    print(
        f"fallback server load on {result['livekit']} ({args.concurrency} connections, "
        "then 1 connection; "
        f"{result['stack']}; {result['cpus']} CPUs; load average "
        f"{result['load_average_before']} before, {result['load_average_after']} after)"
    )
    header = ("route", "conns", "requests", "req/s", "p50 ms", "p99 ms")
    cpu_header = tuple(result["end"]["cpu_ms_per_request"])
    print(
        f"{header[0]:<10}"
        + "".join(f"{h:>9}" for h in header[1:])
        + "  CPU ms/req:"
        + "".join(f"{h:>8}" for h in cpu_header)
        + "  failures"
    )
    for rows, conns in ((result, args.concurrency), (result["one_connection"], 1)):
        for name in ("bare", "raw", "end"):
            row = rows[name]
            cpu = row["cpu_ms_per_request"]
            print(
                f"{names[name]:<10}{conns:>9}{row['requests']:>9}{row['rps']:>9}"
                f"{row['p50_ms']:>9}{row['p99_ms']:>9}"
                + " " * 12
                + "".join(f"{'-' if cpu[h] is None else cpu[h]:>8}" for h in cpu_header)
                + f"  {row['failures'] or '-'}"
            )
    if any(rows[name]["failures"] for rows in (result, result["one_connection"]) for name in names):
        print("WARNING: some requests failed (see failures): the figures above count them too")
    ratio = result["ratio"]
    verdict = "met" if ratio >= 0.5 else "NOT met"
    print(f"throughput /v1/end vs /bare: {ratio} (goal >= 0.5: {verdict})")
    print(f"throughput /v1/end vs /raw (same LiveKit calls, no checks): {result['ratio_vs_raw']}")
    p99 = result["end"]["p99_ms"]
    verdict = "met" if p99 <= 25 else "NOT met"
    print(f"/v1/end p99 at {args.concurrency} connections: {p99} ms (goal <= 25 ms: {verdict})")
    mean = args.concurrency * 1000 / result["end"]["rps"]
    print(
        f"  (closed loop: mean latency = {args.concurrency} / req/s = {mean:.0f} ms; "
        f"p99 <= 25 ms at {args.concurrency} connections needs more than "
        f"{args.concurrency * 1000 // 25} req/s)"
    )
    p99_one = result["one_connection"]["end"]["p99_ms"]
    print(f"/v1/end p99 over 1 connection: {p99_one} ms ({'<=' if p99_one <= 25 else '>'} 25 ms)")
    cpu = result.get("cpu")
    if cpu:
        print(
            "CPU-bound ceilings (from the CPU ms/req above): all three processes on these "
            f"{result['cpus']} CPUs allow at most {cpu['end_rps_ceiling']} /v1/end req/s and a "
            f"ratio of {cpu['machine_ratio']}; the server alone (LiveKit elsewhere) a ratio of "
            f"{cpu['server_ratio']}; the kit's checks cost {cpu['checks_ms']} ms per end over /raw"
        )


NO_SERVER = (
    "no LiveKit server to measure on: run inside a test network namespace "
    "(scripts/in-netns .venv/bin/python bench/fallback_load.py), set LIVEKIT_URL/"
    "LIVEKIT_API_KEY/LIVEKIT_API_SECRET, or pass --loopback"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="requests per phase (max)")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per route and load (max)"
    )
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per load")
    parser.add_argument(
        "--concurrency", type=int, help="connections (default 32 on a real server, 64 loopback)"
    )
    parser.add_argument("--probe", type=int, default=300, help="requests over one connection")
    parser.add_argument("--loopback", action="store_true", help="endcall.testing's double")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--role", choices=["livekit", "server", "agents"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rooms", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--livekit-url", help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    parser.add_argument("--real", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    key = os.environ.get("BENCH_LK_KEY", API_KEY)
    secret = os.environ.get("BENCH_LK_SECRET", API_SECRET)
    if args.role == "livekit":
        with contextlib.suppress(KeyboardInterrupt):
            _run_loop(_livekit_role(args.port, args.rooms))
        return
    if args.role == "agents":
        with contextlib.suppress(KeyboardInterrupt):
            _run_loop(_agents_role(args.livekit_url, key, secret, args.rooms, args.ready))
        return
    if args.role == "server":
        _server_role(args.port, args.livekit_url, key, secret, args.real)
        return
    if args.concurrency is None:
        args.concurrency = 64 if args.loopback else 32
    server_port = _free_port()
    lkserver = None
    if args.loopback:
        lk_port = _free_port()
        target = _Target(
            False,
            server_port,
            f"http://127.0.0.1:{lk_port}",
            "",
            API_KEY,
            API_SECRET,
            "loopback",
            lk_port=lk_port,
        )
        pids: dict[str, int | None] = {}
    else:
        from endcall.testing.livekit_server import (
            LiveKitServer,
            ServerUnavailable,
            external_server,
            node_ip,
        )

        info = external_server()
        if info is None:
            if node_ip() is None:
                sys.exit(NO_SERVER)
            lkserver = LiveKitServer()
            try:
                info = lkserver.start()
            except ServerUnavailable as e:
                sys.exit(f"livekit-server did not start: {e}")
        ready = os.path.join(tempfile.mkdtemp(prefix="bench-fallback-"), "agents-ready")
        target = _Target(
            True,
            server_port,
            info.http_url,
            info.url,
            info.api_key,
            info.api_secret,
            info.name,
            ready_file=ready,
        )
        pids = {"livekit": lkserver.pid if lkserver is not None else None}
    try:
        procs = _start(args, target)
        pids = {"server": procs[0].pid, "livekit": pids.get("livekit", procs[1].pid)}
        if target.real:
            pids["agents"] = procs[1].pid
        try:
            result = _run_loop(_run(args, target, procs, pids))
        finally:
            _stop(procs)
    finally:
        if lkserver is not None:
            lkserver.stop()
    if args.json:
        print(json.dumps(result))
    else:
        _print(args, result)


if __name__ == "__main__":
    main()
