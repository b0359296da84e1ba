"""A relay asking whether silent drafts' owners are gone, so it may take them over early.

`endcall serve` hears from LiveKit's webhooks when an agent leaves its room. A relay without
them (the ``endcall.prewarm`` relays of a single host) asks instead: every `CHECK_EVERY`
seconds it looks for crash drafts still held under a lease whose owner has not renewed them
for `TAKEOVER_QUIET` seconds (`Outbox.silent_scopes`: a live session renews every 5 s, so only
a dead or stalled owner's drafts are silent), and asks a `GoneCheck` — given by the agent
wing, which knows LiveKit; this wing knows nothing of rooms — which of those scopes' owners
are confirmed gone. Those are released (`Outbox.release_scope`) and the relay makes a pass.

Never weaker than the lease: a check that fails (LiveKit unreachable) or says nothing leaves
the drafts to their lease; an owner that merely stalls is still in its room, and one that comes
back after a takeover still delivers its final report, which receivers keep (protocol.md §6).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from endcall.reports.heartbeats import TAKEOVER_QUIET
from endcall.reports.outbox.base import Outbox
from endcall.reports.redact import redact

__all__ = ["CHECK_EVERY", "CHECK_TIMEOUT", "MAX_SCOPES", "GoneCheck", "OwnerWatch"]

logger = logging.getLogger("endcall.report")

#: seconds between two looks for silent drafts (one small query; LiveKit is asked only when
#: there are some)
CHECK_EVERY = 5.0
#: the longest a `GoneCheck` may take before it counts as failed (seconds)
CHECK_TIMEOUT = 10.0
#: scopes asked about per check, the longest silent first: bounds the calls to LiveKit
MAX_SCOPES = 20

#: given scopes of silent drafts, the ones whose owner LiveKit confirms gone (may raise)
GoneCheck = Callable[[Sequence[str]], Awaitable[Sequence[str]]]


class OwnerWatch:
    """``check()`` once in a while: the earliest time (the outbox's clock) a draft it released
    becomes claimable, or None. Failures are logged once per state change, never raised."""

    def __init__(
        self,
        outbox: Outbox,
        gone: GoneCheck,
        *,
        quiet: float = TAKEOVER_QUIET,
        every: float = CHECK_EVERY,
        timeout: float = CHECK_TIMEOUT,
    ) -> None:
        self.outbox = outbox
        self.gone = gone
        self.quiet = quiet
        self.every = every
        self.timeout = timeout
        self.released = 0
        """Scopes released so far."""
        self._next = 0.0
        self._failing = False

    def due_in(self) -> float:
        """Seconds until the next check is due (0 when it is)."""
        return max(0.0, self._next - time.monotonic())

    async def check(self) -> float | None:
        if self.due_in() > 0:
            return None
        self._next = time.monotonic() + self.every
        try:
            silent = await asyncio.to_thread(self.outbox.silent_scopes, self.quiet, MAX_SCOPES)
            if not silent:
                self._recovered()
                return None
            gone = list(await asyncio.wait_for(self.gone(silent), self.timeout))
            asked = set(silent)
            when: float | None = None
            for scope in gone:
                if scope not in asked:  # a check may only answer what it was asked
                    continue
                at = await asyncio.to_thread(self.outbox.release_scope, scope, self.quiet)
                if at is not None:
                    self.released += 1
                    logger.info(
                        "endcall: LiveKit says the owner of %s is gone and it has been silent"
                        " for %.0f s: its crash draft is taken over now",
                        scope,
                        self.quiet,
                    )
                    when = at if when is None else min(when, at)
        except Exception as e:  # LiveKit or the database unreachable: the lease still holds
            if not self._failing:
                logger.warning(
                    "endcall: cannot tell whether silent drafts' owners are gone (%s); their"
                    " leases decide",
                    redact(f"{type(e).__name__}: {e}"),
                )
            self._failing = True
            return None
        self._recovered()
        return when

    def _recovered(self) -> None:
        if self._failing:
            logger.info("endcall: silent drafts' owners can be checked again")
        self._failing = False
