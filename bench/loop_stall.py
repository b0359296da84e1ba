"""Event-loop stalls the kit causes per turn, with 2,000 and 10,000 conversation items.

A voice agent's event loop carries its audio: frames are 10–20 ms, so anything that holds the
loop for longer than a few milliseconds is heard. This bench runs one session per cell — a real
``AgentSession`` with scripted models in livekit-agents' ``fake_job_context``, on the loopback
double (``endcall.testing.LoopbackServer``) and on a real livekit-server (started here: run
inside ``scripts/in-netns``) — grown to N conversation items, then T timed turns and the end.
Each cell runs twice in the same process: **baseline** (the same session and the same
conversation growth, no EndCall; its end is ``session.aclose()``) and **kit** (``EndCall``
started, with the real ``ReportPipeline`` on a SQLite outbox and a receiver answering 200; its
end is the customer's RPC end request, through drain, report, store and delivery).

How a stall is measured: a monitor task sleeps 1 ms again and again and records how late it
wakes; the lateness is the time the loop could not run anything. Per turn (one every
``--turn-seconds``, 2.2 s by default: just over the kit's 2 s draft rate limit, so about one
crash draft per turn, the kit's worst case) the longest lateness is kept; the tables give
p50/p99/max over the turns, for the baseline, for the kit's run, and the kit's run minus the
baseline (**extra**). **Kit-caused** is the part of each late wake-up that the kit held the
loop: every loop callback is timed (``Handle._run``), those of the kit's tasks (endcall code,
and its steps wrapped here: the crash draft ``Checkpoints._save`` and its ``save_draft``, the
accepted end's ``mark_ending``, the report hand-over ``EndPath._hand_over`` with its ``store``,
the delivery, the attribute writes ``AttributeWriter._flush``) have their CPU time summed
within the wake-up (CPU, not wall time, without the garbage collections that ran inside: on a
shared machine, preemption stretches whatever was running); a wake-up while one of the agent
wing's threads was busy serializing (the drafts of old, which held the GIL) counts whole; one
during a full garbage collection is left out (a process-wide pause, paid by whoever allocates
next; the collections are listed). The library is not changed for any of this. Also printed:
the kit's longest callbacks (wall and CPU time) and where each stopped, the kit's loop CPU per
draft, and ``--profile N`` prints cProfile's top N of the timed part.

Conversation growth: two real turns first (their items and events are the pattern), then the
session's history (and the agent's chat context, which the LLM gets every turn) is filled to
N - 2T items of the same shape — distinct copies, older than the real turns, with the events a
session records for them (~7 per item: a 2,000-item report is ~6 MB, a 10,000-item one ~31 MB,
trimmed to 8 MiB) — the grown call is drafted once, unmeasured (a real call's drafts grew with
it), and T real turns bring it to N. On the real server the customer publishes a microphone
track (10 ms frames of silence), so audio flows into the agent throughout.

    scripts/in-netns .venv/bin/python bench/loop_stall.py            # full: 60 turns, ~25 min
    scripts/in-netns .venv/bin/python bench/loop_stall.py --quick    # 3 turns; 10,000 items
                                                      # on the loopback only: < 2 min
    .venv/bin/python bench/loop_stall.py --loopback                  # the double only
    ... [--items 2000 10000] [--turns T] [--turn-seconds S] [--json] [--profile N]

Goal (issue 21): the kit-caused stall p99 <= 5 ms per turn at 2,000 items. The measuring is in
``loop_probe.py``, next to this file (run as a script, bench/ is on ``sys.path``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import loop_probe
from livekit import api, rtc
from livekit.agents import Agent, AgentSession, llm
from livekit.agents.testing import fake_job_context
from loop_probe import TICK, Recorder, instrument

from endcall import EndCall
from endcall.reports.outbox.sqlite import SqliteOutbox
from endcall.reports.pipeline import ReportPipeline
from endcall.reports.webhook import Webhook
from endcall.testing import LoopbackServer, ScriptedLLM, ScriptedSTT, TimedTTS, request_end
from endcall.testing.livekit_server import (
    LiveKitServer,
    ServerInfo,
    ServerUnavailable,
    external_server,
    node_ip,
)

GOAL_P99_MS = 5.0
GOAL_ITEMS = 2000
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TURN_HANDLING: Any = {
    "turn_detection": "stt",
    "endpointing": {"min_delay": 0.05, "max_delay": 0.5},
    "preemptive_generation": {"enabled": False},
}
USER_TEXT = (
    "Well, in my last role I led the migration of our billing system, and the hardest part "
    "was keeping the old and new ledgers in step while customers kept paying."
)
AGENT_TEXT = (
    "That sounds like a demanding project. How did you decide when the new ledger was "
    "trustworthy enough to switch over, and what would you do differently today?"
)
NO_SERVER = (
    "no LiveKit server: run inside a test network namespace (scripts/in-netns .venv/bin/python "
    "bench/loop_stall.py), set LIVEKIT_URL/LIVEKIT_API_KEY/LIVEKIT_API_SECRET, or pass --loopback"
)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else 0.0


# ---------------------------------------------------------------------------- rooms


@dataclass
class Rooms:
    agent: Any
    customer: Any
    server: str
    settle: Callable[[], Awaitable[Any]]


@contextlib.asynccontextmanager
async def loopback_rooms() -> AsyncIterator[Rooms]:
    hub = LoopbackServer()
    agent = await hub.connect("bench", "agent", kind=rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)
    customer = await hub.connect("bench", "customer")
    try:
        yield Rooms(agent, customer, "loopback", hub.settle)
    finally:
        await customer.disconnect()
        await agent.disconnect()
        await hub.aclose()


def _token(info: ServerInfo, room: str, identity: str, *, agent: bool) -> str:
    grants = api.VideoGrants(room_join=True, room=room, can_update_own_metadata=True)
    token = api.AccessToken(info.api_key, info.api_secret).with_identity(identity)
    token = token.with_grants(grants)
    return (token.with_kind("agent") if agent else token).to_jwt()


@contextlib.asynccontextmanager
async def real_rooms(info: ServerInfo) -> AsyncIterator[Rooms]:
    """Agent and customer in one room of a real livekit-server; the customer's microphone
    sends 10 ms frames of silence."""
    room = f"bench-stall-{uuid.uuid4().hex[:8]}"
    agent, customer = rtc.Room(), rtc.Room()
    mic: asyncio.Task[None] | None = None
    try:
        await agent.connect(info.url, _token(info, room, "agent", agent=True))
        await customer.connect(info.url, _token(info, room, "customer", agent=False))
        source = rtc.AudioSource(48000, 1)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await customer.local_participant.publish_track(track, options)

        async def speak() -> None:
            frame = rtc.AudioFrame(bytes(480 * 2), 48000, 1, 480)
            while True:
                await source.capture_frame(frame)  # paced by the source: real time

        mic = asyncio.create_task(speak())

        async def settle() -> None:
            deadline = time.monotonic() + 30
            while "customer" not in agent.remote_participants:
                if time.monotonic() > deadline:
                    raise TimeoutError("the agent never saw the customer join")
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)

        yield Rooms(agent, customer, info.name, settle)
    finally:
        if mic is not None:
            mic.cancel()
        await customer.disconnect()
        await agent.disconnect()


# ---------------------------------------------------------------------------- one run


def _grow(session: AgentSession[None], agent: Agent, items: int) -> None:
    """Fill the session's history and the agent's chat context with `items` distinct items
    shaped like the real turns already in it (older than them), with their events."""
    history = session.history.items
    pattern = [i for i in history if isinstance(i, llm.ChatMessage) and i.role != "system"]
    events = [e for e in session._recorded_events if e.type != "close"]
    if not pattern:
        raise RuntimeError("no real turn to copy the shape of")
    per_item = max(1, round(len(events) / len(pattern)))
    oldest = min(i.created_at for i in pattern)
    grown: list[Any] = []
    grown_events: list[Any] = []
    for k in range(items):
        model = pattern[k % len(pattern)]
        text = (USER_TEXT if model.role == "user" else AGENT_TEXT) + f" ({k})"
        grown.append(
            model.model_copy(
                update={
                    "id": f"item_{uuid.uuid4().hex[:12]}",
                    "content": [text],
                    "created_at": oldest - (items - k),
                },
                deep=True,
            )
        )
        for j in range(per_item):
            grown_events.append(events[(k * per_item + j) % len(events)].model_copy())
    history[0:0] = grown
    session._recorded_events[0:0] = grown_events
    ctx_items = agent._chat_ctx.items
    first = next(
        (n for n, i in enumerate(ctx_items) if getattr(i, "role", None) not in ("system",)),
        len(ctx_items),
    )
    ctx_items[first:first] = grown


@dataclass
class RunResult:
    turns_ms: list[float]  # the longest stall of each turn
    kit_ms: list[float]  # the longest stall of each turn that the kit caused
    kit_cpu_ms: list[float]  # the CPU time of the kit's longest callback in each turn
    end_ms: float
    kit_end_ms: float
    steps: dict[str, dict[str, float]]
    slowest: dict[str, list[tuple[str, float, float]]]
    kit_where: list[tuple[str, int, float]]
    items: int
    seconds: float
    gc_pauses_ms: list[float]
    young_gc_ms: list[float]
    kit_loop_cpu_ms: dict[str, float]
    warm_s: float
    report_bytes: int | None = None


async def one_run(
    rooms_cm: Any, *, items: int, turns: int, turn_seconds: float, kit: bool, profile: int = 0
) -> RunResult:
    started = time.monotonic()
    rec = Recorder()
    loop_probe.RECORDER = rec
    gc.callbacks.append(rec.on_gc)
    monitor = asyncio.create_task(rec.monitor())
    tmp = Path(tempfile.mkdtemp(prefix="loop-stall-"))
    pipeline = ReportPipeline(
        Webhook(url="https://backend.test/end", secret=SECRET, in_process_window=5.0),
        SqliteOutbox(tmp / "outbox.db"),
        transport=httpx.MockTransport(lambda r: httpx.Response(200)),
    )
    stt = ScriptedSTT()
    windows: list[tuple[float, float]] = []
    e0 = e1 = warm = 0.0
    n_items = 0
    report: bytes | None = None
    try:
        async with rooms_cm as rooms:
            with fake_job_context(room=rooms.agent) as ctx:
                session: AgentSession[None] = AgentSession(
                    stt=stt,
                    llm=ScriptedLLM(default=AGENT_TEXT),
                    tts=TimedTTS(duration=0.3),
                    vad=None,
                    turn_handling=TURN_HANDLING,
                )
                end = EndCall(ctx, session, pipeline=pipeline, delete_room=False) if kit else None
                agent = Agent(instructions="You interview.", tools=[end.tool] if end else [])
                await session.start(agent=agent, room=rooms.agent)
                if end is not None:
                    await end.start()
                await rooms.settle()
                added = asyncio.Event()

                def on_item(ev: Any) -> None:
                    if getattr(ev.item, "role", None) == "assistant":
                        added.set()

                session.on("conversation_item_added", on_item)

                async def turn(k: int) -> None:
                    added.clear()
                    stt.say(f"{USER_TEXT} [{k}]")
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(added.wait(), 10)

                for k in range(2):  # the pattern
                    await turn(-1 - k)
                grown = time.perf_counter()
                _grow(session, agent, max(0, items - len(session.history.items) - 2 * turns))
                if end is not None:
                    # a real call's drafts grew with it: draft the grown call, unmeasured
                    drafts = end._checkpoints
                    drafts.schedule()
                    deadline = time.monotonic() + 600
                    while (task := drafts._draft_task) is not None and not task.done():
                        if time.monotonic() > deadline:
                            raise TimeoutError("the grown call's draft never finished")
                        await asyncio.sleep(0.1)
                    warm = time.perf_counter() - grown
                gc.collect()  # the grown call is old: in the oldest generation, as in a real one
                await asyncio.sleep(0.5)
                rec.steps.clear()
                rec.active = True
                prof = cProfile.Profile() if profile else None
                if prof is not None:
                    prof.enable()
                for k in range(turns):
                    t0 = time.perf_counter()
                    await turn(k)
                    await asyncio.sleep(max(0.0, t0 + turn_seconds - time.perf_counter()))
                    windows.append((t0, time.perf_counter()))
                n_items = len(session.history.items)
                e0 = time.perf_counter()
                if end is not None:
                    await request_end(rooms.customer, agent_identity="agent", timeout=10)
                    await end.wait()
                    await EndCall.on_session_end(ctx)
                    await session.aclose()
                else:
                    await session.aclose()
                e1 = time.perf_counter()
                rec.active = False
                if prof is not None:
                    prof.disable()
                    print(
                        f"--- profile: {'kit' if kit else 'baseline'}, {items} items",
                        file=sys.stderr,
                    )
                    pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(profile)
                report = end.report if end is not None else None
    finally:
        monitor.cancel()
        gc.callbacks.remove(rec.on_gc)
        loop_probe.RECORDER = None
        await pipeline.aclose()
    return _result(rec, windows, (e0, e1), n_items, time.monotonic() - started, report, warm)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _result(
    rec: Recorder,
    windows: list[tuple[float, float]],
    end_window: tuple[float, float],
    n_items: int,
    seconds: float,
    report: bytes | None,
    warm: float,
) -> RunResult:
    def worst(start: float, end: float) -> float:
        return max((w - d for d, w in rec.stalls_in(start, end)), default=0.0) * 1000

    def kit(start: float, end: float) -> float:
        return max(rec.kit_caused(rec.stalls_in(start, end)), default=0.0) * 1000

    def kit_cpu(start: float, end: float) -> float:
        cpu = [c for _, k, t0, _, c in rec.slow if k and start <= t0 < end]
        return max(cpu, default=0.0) * 1000

    steps: dict[str, dict[str, float]] = {}
    for name in sorted({n for n, _, _ in rec.steps}):
        spans = [(s, e) for n, s, e in rec.steps if n == name]
        steps[name] = {
            "count": len(spans),
            "mean_ms": round(sum(e - s for s, e in spans) / len(spans) * 1000, 2),
        }
    for name in sorted({n for n, _, _, _, _ in rec.threads}):
        runs = [(t1 - t0, c) for n, t0, t1, c, _ in rec.threads if n == name]
        steps[f"thread {name}"] = {
            "count": len(runs),
            "mean_ms": round(sum(w for w, _ in runs) / len(runs) * 1000, 2),
            "mean_cpu_ms": round(sum(c for _, c in runs) / len(runs) * 1000, 2),
        }
    ranked = sorted(rec.slow, key=lambda x: x[2] - x[3])
    slowest = {  # (name, wall ms, CPU ms)
        "kit": [(n, _ms(t1 - t0), _ms(c)) for n, k, t0, t1, c in ranked if k][:5],
        "other": [(n, _ms(t1 - t0), _ms(c)) for n, k, t0, t1, c in ranked if not k][:5],
    }
    # the kit's callbacks of the timed turns, by where they stopped: (count, longest CPU ms)
    where: dict[str, list[float]] = {}
    first = windows[0][0] if windows else 0.0
    last = windows[-1][1] if windows else 0.0
    for n, k, t0, _, c in rec.slow:
        if k and first <= t0 < last:
            where.setdefault(n, []).append(c)
    kit_where = sorted(((n, len(cs), _ms(max(cs))) for n, cs in where.items()), key=lambda x: -x[2])
    return RunResult(
        turns_ms=[worst(a, b) for a, b in windows],
        kit_ms=[kit(a, b) for a, b in windows],
        kit_cpu_ms=[kit_cpu(a, b) for a, b in windows],
        end_ms=worst(*end_window),
        kit_end_ms=kit(*end_window),
        steps=steps,
        slowest=slowest,
        kit_where=kit_where[:8],
        items=n_items,
        seconds=round(seconds, 1),
        gc_pauses_ms=[round((e - s) * 1000, 1) for s, e in rec.gcs],
        young_gc_ms=sorted((round((e - s) * 1000, 1) for s, e in rec.young_gcs), reverse=True),
        kit_loop_cpu_ms={k[4:]: round(v * 1000, 1) for k, v in rec.kit_cpu.items()},
        warm_s=round(warm, 2),
        report_bytes=len(report) if report is not None else None,
    )


# ---------------------------------------------------------------------------- the bench


def _dist(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(pct(values, 50), 2),
        "p99": round(pct(values, 99), 2),
        "max": round(max(values, default=0.0), 2),
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    instrument()
    backends: list[tuple[str, ServerInfo | None]] = [("loopback", None)]
    server: LiveKitServer | None = None
    if not args.loopback:
        info = external_server()
        if info is None:
            server = LiveKitServer()
            try:
                info = await asyncio.to_thread(server.start)
            except ServerUnavailable as e:
                raise SystemExit(f"livekit-server did not start: {e}") from e
        backends.append(("livekit-server", info))
    cells: list[dict[str, Any]] = []
    t_start = time.monotonic()
    try:
        for backend, info in backends:
            sizes = args.items or ([2000] if args.quick and info is not None else [2000, 10000])
            for items in sizes:
                runs: dict[str, RunResult] = {}
                for mode in ("baseline", "kit"):
                    rooms = loopback_rooms() if info is None else real_rooms(info)
                    runs[mode] = await one_run(
                        rooms,
                        items=items,
                        turns=args.turns,
                        turn_seconds=args.turn_seconds,
                        kit=mode == "kit",
                        profile=args.profile,
                    )
                    if not args.json:
                        r = runs[mode]
                        print(
                            f"  {backend} {items} items {mode}: {r.seconds} s, "
                            f"per-turn p99 {_dist(r.turns_ms)['p99']} ms, "
                            f"kit-caused {_dist(r.kit_ms)['p99']} ms",
                            file=sys.stderr,
                        )
                cells.append(_cell(backend, items, runs["baseline"], runs["kit"]))
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)
    return {
        "turns": args.turns,
        "turn_seconds": args.turn_seconds,
        "tick_ms": TICK * 1000,
        "goal": {"items": GOAL_ITEMS, "kit_p99_ms_max": GOAL_P99_MS},
        "seconds": round(time.monotonic() - t_start, 1),
        "cells": cells,
    }


def _cell(backend: str, items: int, base: RunResult, kit: RunResult) -> dict[str, Any]:
    b, k = _dist(base.turns_ms), _dist(kit.turns_ms)
    return {
        "backend": backend,
        "items": items,
        "items_at_end": {"baseline": base.items, "kit": kit.items},
        "baseline": b,
        "kit_run": k,
        "extra": {q: round(k[q] - b[q], 2) for q in ("p50", "p99", "max")},
        "kit_caused": _dist(kit.kit_ms),
        "kit_callback_cpu": _dist(kit.kit_cpu_ms),
        "end_ms": {
            "baseline": round(base.end_ms, 2),
            "kit_run": round(kit.end_ms, 2),
            "kit_caused": round(kit.kit_end_ms, 2),
        },
        "steps": kit.steps,
        "slowest_callbacks": {"baseline": base.slowest["other"], "kit_run": kit.slowest},
        "full_gc_ms": {"baseline": base.gc_pauses_ms, "kit": kit.gc_pauses_ms},
        "young_gc_ms_over_half_ms": {"baseline": base.young_gc_ms, "kit": kit.young_gc_ms},
        "kit_loop_cpu_ms": kit.kit_loop_cpu_ms,
        "first_draft_of_grown_call_s": kit.warm_s,
        "kit_callbacks_in_turns": kit.kit_where,
        "report_bytes": kit.report_bytes,
        "run_seconds": {"baseline": base.seconds, "kit": kit.seconds},
    }


def _trio(d: dict[str, float]) -> str:
    return f"{d['p50']} / {d['p99']} / {d['max']}"


def print_table(r: dict[str, Any]) -> None:
    print(
        f"longest event-loop stall per turn, ms ({r['turns']} turns of {r['turn_seconds']} s "
        f"per run, 1 ms ticker), and in the end; {r['seconds']} s in all"
    )
    print(
        "| backend | items | baseline p50/p99/max | kit run p50/p99/max | extra p50/p99 "
        "| kit-caused p50/p99/max | end: baseline / kit run / kit-caused |"
    )
    print("|" + "---|" * 7)
    for c in r["cells"]:
        e = c["end_ms"]
        print(
            f"| {c['backend']} | {c['items']:,} | {_trio(c['baseline'])} | {_trio(c['kit_run'])} "
            f"| {c['extra']['p50']:+} / {c['extra']['p99']:+} | {_trio(c['kit_caused'])} "
            f"| {e['baseline']} / {e['kit_run']} / {e['kit_caused']} |"
        )
    print()
    for c in r["cells"]:
        steps = ", ".join(
            f"{n} ×{int(v['count'])} {v['mean_ms']} ms" for n, v in c["steps"].items()
        )
        print(f"{c['backend']} {c['items']:,}: kit steps (mean wall time): {steps}")
        slow = c["slowest_callbacks"]["kit_run"]
        mine = "; ".join(f"{n} {w}/{cpu}" for n, w, cpu in slow["kit"][:3]) or "-"
        other = "; ".join(f"{n} {w}/{cpu}" for n, w, cpu in slow["other"][:3]) or "-"
        base = c["slowest_callbacks"]["baseline"][:3]
        base_s = "; ".join(f"{n} {w}/{cpu}" for n, w, cpu in base) or "-"
        print(f"  longest callbacks (wall/CPU ms), kit run: the kit's {mine} | others {other}")
        print(f"  longest callbacks (wall/CPU ms), baseline: {base_s}")
        print(
            f"  the kit's longest callback per turn, CPU p50/p99/max "
            f"{_trio(c['kit_callback_cpu'])} ms; report {c['report_bytes']} bytes"
        )
        where = "; ".join(f"{n} ×{k} ≤{ms}" for n, k, ms in c["kit_callbacks_in_turns"][:5])
        print(f"  the kit's callbacks over 0.5 ms in the turns (count, longest CPU ms): {where}")
        gcs = c["full_gc_ms"]
        print(f"  full GC pauses (ms): baseline {gcs['baseline']}, kit run {gcs['kit']}")
        young = c["young_gc_ms_over_half_ms"]
        print(
            f"  younger GCs over 0.5 ms: baseline {len(young['baseline'])} "
            f"(longest {young['baseline'][:3]}), kit run {len(young['kit'])} "
            f"(longest {young['kit'][:3]})"
        )
        drafts = c["steps"].get("draft store", {}).get("count", 0)
        cpu = c["kit_loop_cpu_ms"]
        per = round(cpu.get("draft", 0.0) / drafts, 1) if drafts else "-"
        print(
            f"  the kit's loop CPU (ms): {cpu}; per draft {per} ms; the grown call's first "
            f"draft (every item new) {c['first_draft_of_grown_call_s']} s"
        )
    for c in r["cells"]:
        if c["items"] != GOAL_ITEMS:
            continue
        own = c["kit_caused"]["p99"]
        print(
            f"goal {c['backend']}: kit-caused stall p99 {own} ms at {GOAL_ITEMS:,} items "
            f"({'met' if own <= GOAL_P99_MS else 'MISSED'}: <= {GOAL_P99_MS} ms)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loopback", action="store_true", help="the double only")
    parser.add_argument(
        "--quick", action="store_true", help="3 turns per run; 10,000 items on the loopback only"
    )
    parser.add_argument(
        "--items", type=int, nargs="+", help="conversation sizes (default 2000 10000)"
    )
    parser.add_argument("--turns", type=int, help="timed turns per run (default 60; quick 3)")
    parser.add_argument("--turn-seconds", type=float, default=2.2)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="cProfile the timed part: top N"
    )
    args = parser.parse_args()
    if args.turns is None:
        args.turns = 3 if args.quick else 60
    if not args.loopback and external_server() is None and node_ip() is None:
        sys.exit(NO_SERVER)
    r = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(r))
    else:
        print_table(r)


if __name__ == "__main__":
    main()
