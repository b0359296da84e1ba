"""What `loop_stall.py` measures with: a monitor of the event loop's lateness, every loop
callback timed (and whose it is: the kit's tasks, or the others'), the kit's steps and worker
threads timed, and the garbage collections. Nothing here changes the library: its steps are
wrapped from outside (`instrument`)."""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from endcall.agent.attributes import AttributeWriter
from endcall.agent.checkpoints import Checkpoints
from endcall.agent.end_path import EndPath
from endcall.reports.pipeline import ReportPipeline

#: the monitor's sleep (seconds)
TICK = 0.001
#: callbacks (and young collections) longer than this are recorded one by one (seconds)
SLOW_CALLBACK = 0.0005


@dataclass
class Recorder:
    """What one run saw: the monitor's wake-ups, the kit's steps, its long callbacks and its
    threads."""

    late: list[tuple[float, float]] = field(default_factory=list)  # (due, woke)
    steps: list[tuple[str, float, float]] = field(default_factory=list)
    #: callbacks that ran longer than SLOW_CALLBACK: (name, the kit's?, start, end, CPU s
    #: without the garbage collections that ran inside)
    slow: list[tuple[str, bool, float, float, float]] = field(default_factory=list)
    #: the kit's functions run in worker threads: (name, start, end, CPU s, serializing?)
    threads: list[tuple[str, float, float, float, bool]] = field(default_factory=list)
    #: CPU seconds of the loop spent in the kit's wrapped steps' tasks, by step
    kit_cpu: dict[str, float] = field(default_factory=dict)
    #: full garbage collections (generation 2): (start, end)
    gcs: list[tuple[float, float]] = field(default_factory=list)
    #: younger collections that took longer than SLOW_CALLBACK: (start, end)
    young_gcs: list[tuple[float, float]] = field(default_factory=list)
    active: bool = False
    gc_seconds: float = 0.0  # all collections so far, in the loop's thread
    loop_thread: int = field(default_factory=threading.get_ident)
    _gc_start: float = 0.0

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            t1 = time.perf_counter()
            if threading.get_ident() == self.loop_thread:  # not a worker thread's collection
                self.gc_seconds += t1 - self._gc_start
            if not self.active:
                return
            if info.get("generation") == 2:
                self.gcs.append((self._gc_start, t1))
            elif t1 - self._gc_start > SLOW_CALLBACK:
                self.young_gcs.append((self._gc_start, t1))

    async def monitor(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(TICK)
            if self.active:
                self.late.append((t0 + TICK, time.perf_counter()))

    def stalls_in(self, start: float, end: float) -> list[tuple[float, float]]:
        return [(d, w) for d, w in self.late if start <= w < end]

    def kit_caused(self, samples: list[tuple[float, float]]) -> list[float]:
        """How much of each late wake-up the kit held the loop (seconds): the CPU time its
        callbacks ran within it (callbacks run one after the other, so a wake-up's lateness
        is the sum of what ran meanwhile; CPU, not wall: a busy machine's preemption stretches
        whatever was running), or all of it while one of its serializing threads was busy
        (holding the GIL). Wake-ups during a full garbage collection are left out: that pause
        is the process's, paid by whoever allocates next (counted apart)."""
        calls = sorted((t0, t1, cpu) for _, kit, t0, t1, cpu in self.slow if kit)
        starts = [t0 for t0, _, _ in calls]
        busy = [(t0, t1) for _, t0, t1, cpu, ser in self.threads if ser and cpu > 0.5 * (t1 - t0)]
        out = []
        for due, woke in samples:
            if woke - due < SLOW_CALLBACK:
                continue
            if any(t0 < woke and t1 > due for t0, t1 in self.gcs):
                continue
            if any(t0 < woke and t1 > due for t0, t1 in busy):
                out.append(woke - due)
                continue
            held = 0.0
            i = bisect.bisect_left(starts, woke) - 1
            while i >= 0 and calls[i][1] > due:
                t0, t1, cpu = calls[i]
                # its CPU time, the part of it inside the wake-up: a busy machine's preemption
                # stretches the wall time of whatever was running
                held += cpu * (min(t1, woke) - max(t0, due)) / (t1 - t0)
                i -= 1
            if held > 0:
                out.append(held)
        return out


RECORDER: Recorder | None = None


def _wrap_async(owner: Any, attr: str, name: str) -> None:
    original = getattr(owner, attr)

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            if RECORDER is not None:
                RECORDER.steps.append((name, t0, time.perf_counter()))

    wrapped.__qualname__ = f"kit:{name}"  # the name of the tasks running it
    setattr(owner, attr, wrapped)


def instrument() -> None:
    """Wrap the kit's steps (class attributes: every instance), time loop callbacks, and time
    the kit's functions run in threads (``asyncio.to_thread``)."""
    _wrap_async(Checkpoints, "_save", "draft")
    _wrap_async(EndPath, "_hand_over", "report")
    _wrap_async(AttributeWriter, "_flush", "attributes")
    for attr, name in (
        ("save_draft", "draft store"),
        ("mark_ending", "end durable"),
        ("store", "report store"),
        ("deliver", "delivery"),
    ):
        _wrap_async(ReportPipeline, attr, name)

    run = asyncio.events.Handle._run

    def timed_run(handle: asyncio.events.Handle) -> None:
        rec = RECORDER
        g0 = rec.gc_seconds if rec is not None else 0.0
        c0, t0 = time.thread_time(), time.perf_counter()
        run(handle)
        t1 = time.perf_counter()
        if rec is None or not rec.active:
            return
        # CPU of the callback itself, without the garbage collections that ran inside it
        cpu = time.thread_time() - c0 - (rec.gc_seconds - g0)
        task = getattr(getattr(handle, "_callback", None), "__self__", None)
        if isinstance(task, asyncio.Task):
            step = getattr(task.get_coro(), "__qualname__", "")
            if step.startswith("kit:"):
                rec.kit_cpu[step] = rec.kit_cpu.get(step, 0.0) + cpu
        if t1 - t0 > SLOW_CALLBACK:
            name, kit = _callback_owner(handle)
            rec.slow.append((name, kit, t0, t1, cpu))

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]

    to_thread = asyncio.to_thread

    async def timed_to_thread(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        rec = RECORDER
        name, kit = _function_owner(func)
        if rec is None or not kit:
            return await to_thread(func, *args, **kwargs)

        # the agent wing's threads serialize in Python (the GIL); the reports wing's write
        # to SQLite, which lets go of it
        serializing = "/endcall/agent/" in _function_file(func)

        def timed() -> Any:
            c0, t0 = time.thread_time(), time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                if rec.active:
                    cpu = time.thread_time() - c0
                    rec.threads.append((name, t0, time.perf_counter(), cpu, serializing))

        return await to_thread(timed)

    asyncio.to_thread = timed_to_thread


def _is_kit_code(filename: str) -> bool:
    return "/endcall/" in filename and "/endcall/testing/" not in filename


def _function_file(func: Any) -> str:
    fn = getattr(func, "func", func)
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    return str(code.co_filename) if code is not None else ""


def _function_owner(func: Any) -> tuple[str, bool]:
    fn = getattr(func, "func", func)  # functools.partial
    fn = getattr(fn, "__func__", fn)  # bound method
    code = getattr(fn, "__code__", None)
    name = str(getattr(fn, "__qualname__", repr(fn)))
    return name, code is not None and _is_kit_code(code.co_filename)


def _callback_owner(handle: asyncio.events.Handle) -> tuple[str, bool]:
    """A callback's name, and whether it is the kit's (a task running endcall code, or a
    function of endcall's)."""
    cb = getattr(handle, "_callback", None)
    task = getattr(cb, "__self__", None)
    if isinstance(task, asyncio.Task):
        coro = task.get_coro()
        name = str(getattr(coro, "__qualname__", repr(coro)))
        code = getattr(coro, "cr_code", None)
        kit = name.startswith("kit:") or (code is not None and _is_kit_code(code.co_filename))
        if kit:
            name += f" (then {_suspended_at(coro)})"
        return name, kit
    return _function_owner(cb)


def _suspended_at(coro: Any) -> str:
    """Where a task waits now, innermost kit frame first: what it ran up to (its last step)."""
    frames = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None and _is_kit_code(frame.f_code.co_filename):
            frames.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " < ".join(reversed(frames[-2:])) if frames else "?"
