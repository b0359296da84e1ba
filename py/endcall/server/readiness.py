"""``GET /readyz``: can this server do its job right now, part by part.

``/healthz`` stays liveness (the process answers). Readiness asks every part the server needs:

- ``outbox``: the database answers (a backlog query, bounded by ``timeout``; one probe at a
  time — a probe still hanging on a dead database answers "not ready" at once);
- ``relay`` and ``reconcile``: the background loop's thread is alive, not failing, and its last
  good pass is recent (`endcall.reports.loop_health`); ``enabled: false`` when not configured;
- ``livekit``: RoomService answers (a ListRooms for one name);
- ``backlog``: rows by status, the oldest undelivered report's age, the dead count — shown,
  never a reason to be unready (a dead report is an alert, not a broken server).

Ready (200) only when every enabled part is ok, else 503 with the same body. Answers are
cached for ``cache`` seconds, so a probe storm costs one check per interval.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from endcall.reports.loop_health import LoopHealth
from endcall.reports.outbox.base import Backlog
from endcall.reports.redact import redact

__all__ = ["Readiness"]

#: the room name the LiveKit probe asks about (no room needs to exist)
PROBE_ROOM = "endcall-readyz-probe"


class _OutboxProbe:
    """One backlog query at a time, in a worker thread; its last answer kept for metrics."""

    def __init__(self, backlog: Callable[[], Backlog], timeout: float) -> None:
        self._backlog = backlog
        self._timeout = timeout
        self._lock = threading.Lock()
        self._running_since: float | None = None
        self.last: Backlog | None = None

    def run_sync(self) -> Backlog:
        with self._lock:
            if self._running_since is not None:
                waited = time.monotonic() - self._running_since
                raise TimeoutError(f"the previous probe is still waiting ({waited:.1f} s)")
            self._running_since = time.monotonic()
        try:
            self.last = self._backlog()
            return self.last
        except Exception:
            self.last = None
            raise
        finally:
            with self._lock:
                self._running_since = None

    async def check(self) -> dict[str, Any]:
        started = time.monotonic()
        task = asyncio.ensure_future(asyncio.to_thread(self.run_sync))
        try:
            backlog = await asyncio.wait_for(asyncio.shield(task), self._timeout)
        except asyncio.TimeoutError:
            return {"ok": False, "error": f"no answer within {self._timeout:g} s"}
        except Exception as e:
            return {"ok": False, "error": redact(f"{type(e).__name__}: {e}")[:300]}
        return {"ok": True, "latency_ms": round(1000 * (time.monotonic() - started), 1)} | {
            "backlog": {
                "counts": backlog.counts,
                "oldest_pending_age_s": None
                if backlog.oldest_pending_age is None
                else round(backlog.oldest_pending_age, 3),
            }
        }


class Readiness:
    """Checks the parts: ``backlog`` reads the outbox (None: no outbox configured),
    ``livekit`` asks RoomService, ``loops()`` gives each loop's health by name (None: configured
    but not running; ``"disabled"``: not configured)."""

    def __init__(
        self,
        *,
        backlog: Callable[[], Backlog] | None,
        livekit: Callable[[], Awaitable[object]],
        loops: Callable[[], dict[str, LoopHealth | Literal["disabled"] | None]],
        timeout: float = 3.0,
        cache: float = 1.0,
    ) -> None:
        self._probe = None if backlog is None else _OutboxProbe(backlog, timeout)
        self._livekit = livekit
        self._loops = loops
        self._timeout = timeout
        self._cache = cache
        self._last: tuple[float, bool, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    def backlog(self) -> Backlog | None:
        """The outbox's backlog now (for the metrics page), or None when it cannot be read."""
        if self._probe is None:
            return None
        try:
            return self._probe.run_sync()
        except TimeoutError:  # a readiness probe is asking right now: its last answer
            return self._probe.last
        except Exception:
            return None

    async def check(self) -> tuple[bool, dict[str, Any]]:
        async with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last[0] < self._cache:
                return self._last[1], self._last[2]
            parts: dict[str, Any] = {}
            outbox, livekit = await asyncio.gather(self._outbox(), self._livekit_part())
            parts["outbox"] = outbox
            parts["livekit"] = livekit
            for name, health in self._loops().items():
                if health == "disabled":
                    parts[name] = {"enabled": False}
                elif health is None:
                    parts[name] = {"ok": False, "error": "configured but not running"}
                else:
                    parts[name] = health.status()
            backlog = outbox.pop("backlog", None)
            if backlog is not None:
                counts = backlog["counts"]
                parts["backlog"] = {
                    "pending": counts.get("pending", 0) + counts.get("delivering", 0),
                    "dead": counts.get("dead", 0),
                    "drafts": counts.get("draft", 0),
                    "oldest_pending_age_s": backlog["oldest_pending_age_s"],
                }
            ok = all(p.get("ok", True) for p in parts.values() if p.get("enabled", True))
            doc = {"status": "ready" if ok else "not_ready", "parts": parts}
            self._last = (time.monotonic(), ok, doc)
            return ok, doc

    async def _outbox(self) -> dict[str, Any]:
        if self._probe is None:
            return {"enabled": False}
        return await self._probe.check()

    async def _livekit_part(self) -> dict[str, Any]:
        started = time.monotonic()
        try:
            await asyncio.wait_for(self._livekit(), self._timeout)
        except asyncio.TimeoutError:
            return {"ok": False, "error": f"no answer within {self._timeout:g} s"}
        except Exception as e:
            return {"ok": False, "error": redact(f"{type(e).__name__}: {e}")[:300]}
        return {"ok": True, "latency_ms": round(1000 * (time.monotonic() - started), 1)}
