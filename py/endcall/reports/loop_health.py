"""How a background loop is doing, for readiness checks and metrics.

A loop (the relay, the reconciler) reports each pass to its `LoopHealth`: `passed` or `failed`,
with the pass's duration (counted in `endcall.reports.metrics`). `status` answers "is it doing
its job": its thread is alive, it is not failing, and its last good pass is recent — or a pass is
running that has not been running for too long (a relay delivering a large backlog).
Thread-safe: loops run in their own threads, readiness checks in the server's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from endcall.reports import metrics

__all__ = ["LoopHealth"]


class LoopHealth:
    """The health of one background loop named ``name`` (a metric label: ``relay`` or
    ``reconcile``), whose passes come every ``every`` seconds."""

    def __init__(
        self,
        name: str,
        every: float,
        *,
        alive: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.every = every
        #: a pass may be this late before the loop counts as stuck
        self.stale_after = max(3 * every, 60.0)
        self._alive = alive
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._pass_since: float | None = None
        self._last_ok: float | None = None
        self._error: str | None = None

    def set_alive(self, alive: Callable[[], bool]) -> None:
        self._alive = alive

    def begin(self) -> None:
        """A pass starts."""
        with self._lock:
            self._pass_since = self._clock()

    def passed(self) -> None:
        """The pass that began worked."""
        self._end("ok", None)

    def failed(self, error: str) -> None:
        """The pass that began (or an attempt to start the loop) failed with ``error``."""
        self._end("failed", error[:300])

    def _end(self, result: str, error: str | None) -> None:
        now = self._clock()
        with self._lock:
            began, self._pass_since = self._pass_since, None
            self._error = error
            if error is None:
                self._last_ok = now
        metrics.LOOP_PASSES.labels(self.name, result).inc()
        if began is not None:
            metrics.LOOP_PASS_SECONDS.labels(self.name).observe(max(0.0, now - began))

    def status(self) -> dict[str, Any]:
        """``{"ok", "alive", "failing", "error", "last_ok_age_s", "pass_running_s"}``."""
        now = self._clock()
        with self._lock:
            pass_since, last_ok, error = self._pass_since, self._last_ok, self._error
        alive = self._alive() if self._alive is not None else True
        last_ok_age = None if last_ok is None else now - last_ok
        running = None if pass_since is None else now - pass_since
        recent = (
            (last_ok_age is not None and last_ok_age <= self.stale_after)
            or (running is not None and running <= 10 * self.stale_after)
            or (last_ok is None and now - self._started <= self.stale_after)
        )
        return {
            "ok": alive and error is None and recent,
            "alive": alive,
            "failing": error is not None,
            "error": error,
            "last_ok_age_s": None if last_ok_age is None else round(last_ok_age, 3),
            "pass_running_s": None if running is None else round(running, 3),
        }
