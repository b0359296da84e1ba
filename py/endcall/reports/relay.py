"""Relay: deliver what agent processes left in the outbox.

A relay claims due rows — pending reports, reports whose sender's lease expired, and crash
drafts whose agent's lease expired (nothing else: no guess from process ids, which a sidecar in
another PID namespace cannot see) — makes one attempt each and records the outcome per the
row's retry schedule. A draft goes out as a ``complete: false`` report with ``webhook-id``
``<end_id>.draft`` (with the accepted end written in, if there was one); the final report, if
it comes, still goes out and receivers keep it (protocol.md §6).

Runs in: the next agent job process on the host (``endcall.prewarm``), the CLI
(``endcall outbox deliver [--forever]``, for cron or a sidecar), and the fallback server.

Each row stores its destination URL, extra headers and its ``delivery`` settings (the agent's
retry schedule, request timeout and the key ids of its secrets). The secrets themselves are
not stored: relays outside the agent read them from ``ENDCALL_WEBHOOK_SECRET`` (several secrets
comma or space separated, for rotation: each adds one ``v1`` signature) and the per-customer
``ENDCALL_WEBHOOK_SECRETS`` (``id=whsec_…``: the secrets jobs name by id) or take them as
arguments (CLI ``--secret``); they are validated when the relay is made, and a row whose key
ids the relay has no secret for is not sent but deferred, with an error naming the key. A
relay's lease covers the row's request timeout plus a margin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from endcall.reports import secret_offers
from endcall.reports.delivery import Clock, DeadCallback, RetryPolicy, Sender, SystemClock
from endcall.reports.heartbeats import TAKEOVER_QUIET
from endcall.reports.loop_health import LoopHealth
from endcall.reports.outbox.base import Outbox, OutboxRecord, default_outbox_path, make_owner
from endcall.reports.owner_watch import GoneCheck, OwnerWatch
from endcall.reports.redact import redact
from endcall.reports.webhook import (
    MAX_TIMEOUT,
    SECRET_ENV,
    SECRETS_ENV,
    Webhook,
    parse_named_secrets,
    parse_secrets,
    validate_secret,
)

__all__ = [
    "BackgroundRelay",
    "Relay",
    "RelayStats",
    "check_secrets",
    "prewarm",
    "secrets_from_env",
]

#: a relay's lease covers a request of the longest timeout a Webhook may have, plus a margin
RELAY_LEASE_MARGIN = 60.0

logger = logging.getLogger("endcall.relay")


def secrets_from_env(
    env: str = SECRET_ENV, environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The signing secrets in ``$ENDCALL_WEBHOOK_SECRET``, then every secret named in
    ``$ENDCALL_WEBHOOK_SECRETS`` (the ones jobs choose by ``webhook_secret_id``, so a relay can
    sign their reports too); an empty tuple if neither is set. A malformed
    ``$ENDCALL_WEBHOOK_SECRETS`` raises ``ValueError``. ``environ``: default ``os.environ``."""
    environ = os.environ if environ is None else environ
    own = parse_secrets(environ.get(env, ""))
    if env != SECRET_ENV:
        return own
    named = parse_named_secrets(environ.get(SECRETS_ENV, ""))
    extra = [s for group in named.values() for s in group]
    return own + tuple(dict.fromkeys(s for s in extra if s not in own))


def check_secrets(secrets: Sequence[str], source: str = SECRET_ENV) -> tuple[str, ...]:
    """``secrets`` as a tuple if every one is a valid ``whsec_`` secret; else ``ValueError``
    naming which one (by position, never its value) and where it came from."""
    out = tuple(secrets)
    for i, secret in enumerate(out):
        try:
            validate_secret(secret)
        except ValueError as e:
            raise ValueError(f"{source}: secret #{i + 1} is not usable: {e}") from None
    return out


@dataclass
class RelayStats:
    """Counts of one relay run."""

    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    drafts: int = 0

    def add(self, other: RelayStats) -> None:
        self.claimed += other.claimed
        self.delivered += other.delivered
        self.retrying += other.retrying
        self.dead += other.dead
        self.drafts += other.drafts


class Relay:
    """Claims due outbox rows and delivers them (``concurrency`` attempts at once)."""

    def __init__(
        self,
        outbox: Outbox,
        secrets: Sequence[str] | None = None,
        *,
        owner: str | None = None,
        policy: RetryPolicy | None = None,
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
        batch: int = 32,
        concurrency: int = 64,
        lease: float | None = None,
        on_dead: DeadCallback | None = None,
    ) -> None:
        if secrets:
            secrets = check_secrets(secrets, "webhook secrets")
        else:
            secrets = check_secrets(secrets_from_env())
        if not secrets:
            raise ValueError(
                f"no webhook secret: set {SECRET_ENV} (comma/space separated) or pass secrets"
            )
        self.outbox = outbox
        self.owner = owner or make_owner("relay")
        self.clock: Clock = clock or SystemClock()
        self.batch = batch
        # the claim's lease covers our timeout; a row with a longer one extends it (`_one`)
        self.lease = max(lease if lease is not None else 2 * timeout + 30.0, timeout + 30.0)
        self.concurrency = concurrency
        self.sender = Sender(
            outbox,
            secrets,
            owner=self.owner,
            policy=policy,
            timeout=timeout,
            client=client,
            transport=transport,
            clock=self.clock,
            on_dead=on_dead,
        )

    async def _one(self, rec: OutboxRecord, stats: RelayStats) -> None:
        t = rec.delivery.get("timeout") if rec.delivery else None
        if isinstance(t, (int, float)) and 0 < t <= MAX_TIMEOUT:
            need = t + RELAY_LEASE_MARGIN
            if need > self.lease:  # the row's request may outlast the claim's lease
                renewed = await asyncio.to_thread(self.outbox.renew, rec.end_id, self.owner, need)
                if renewed is None:
                    return
                rec = renewed
        res, _ = await self.sender.send(rec)
        if rec.is_draft:
            stats.drafts += 1
        if res.outcome == "delivered":
            stats.delivered += 1
        elif res.outcome == "dead":
            stats.dead += 1
        else:
            stats.retrying += 1

    async def run_once(self) -> RelayStats:
        """Deliver every row due now (one attempt each), then return.

        Keeps up to ``concurrency`` attempts in flight and claims more rows as slots free up,
        so a slow receiver answer never holds up the other reports."""
        stats = RelayStats()
        seen: set[str] = set()
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                free = self.concurrency - len(in_flight)
                started = 0
                if free > 0:
                    recs = await asyncio.to_thread(
                        self.outbox.claim, self.owner, limit=min(self.batch, free), lease=self.lease
                    )
                    for r in recs:
                        if r.end_id in seen:  # due again already (zero delay): next pass
                            await asyncio.to_thread(self.outbox.release, r.end_id, self.owner)
                            continue
                        seen.add(r.end_id)
                        in_flight.add(asyncio.create_task(self._one(r, stats)))
                        started += 1
                    stats.claimed += started
                if not in_flight:
                    return stats
                if started and len(in_flight) < self.concurrency:
                    continue  # there may be more due rows: claim them before waiting
                done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    if t.exception() is not None:
                        logger.error("endcall relay: attempt failed: %r", t.exception())
        finally:
            for t in in_flight:
                t.cancel()

    async def run(
        self,
        *,
        forever: bool = False,
        poll: float = 5.0,
        stop: asyncio.Event | None = None,
        watch: OwnerWatch | None = None,
    ) -> RelayStats:
        """``run_once``; with ``forever`` keep polling every ``poll`` seconds until ``stop``.
        ``watch`` (forever only) asks about silent drafts between passes, and a pass follows as
        soon as a draft whose owner is confirmed gone may be claimed."""
        total = RelayStats()
        while True:
            try:
                total.add(await self.run_once())
            except Exception:
                if not forever:
                    raise
                logger.exception("endcall relay: pass failed; retrying in %ss", poll)
            if not forever or (stop is not None and stop.is_set()):
                return total
            if await self._wait_for_next_pass(poll, stop, watch):
                return total

    async def _wait_for_next_pass(
        self, poll: float, stop: asyncio.Event | None, watch: OwnerWatch | None
    ) -> bool:
        """Sleep until the next pass is due (``poll``, or earlier when ``watch`` released a
        draft); True when ``stop`` was set meanwhile."""
        if watch is None:
            return await self._pause(poll, stop)
        # the watch keeps real time (time.monotonic), so this loop does too
        next_pass = time.monotonic() + poll
        while time.monotonic() < next_pass:
            claimable = await watch.check()
            if claimable is not None:  # the outbox's clock is the wall clock
                next_pass = min(next_pass, time.monotonic() + max(0.0, claimable - time.time()))
            wait = min(next_pass - time.monotonic(), watch.due_in())
            if wait > 0 and await self._pause(wait, stop):
                return True
        return False

    async def _pause(self, seconds: float, stop: asyncio.Event | None) -> bool:
        if stop is None:
            await self.clock.sleep(seconds)
            return False
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass
        return stop.is_set()

    async def aclose(self) -> None:
        await self.sender.aclose()


class BackgroundRelay:
    """A relay running forever in a daemon thread with its own event loop."""

    def __init__(
        self,
        target: str | Path,
        secrets: Sequence[str],
        *,
        poll: float = 30.0,
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
        on_dead: DeadCallback | None = None,
        gone: GoneCheck | None = None,
        takeover_quiet: float = TAKEOVER_QUIET,
    ) -> None:
        self.on_dead = on_dead
        self.gone = gone
        self.takeover_quiet = takeover_quiet
        self.watch: OwnerWatch | None = None
        """Asks ``gone`` about silent drafts (`endcall.reports.owner_watch`), when given."""
        self.target = target
        self.secrets = tuple(secrets)
        self.poll = poll
        self.timeout = timeout
        self.transport = transport
        self.stats = RelayStats()
        self.error: BaseException | None = None
        self.health = LoopHealth("relay", poll)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name="endcall-relay", daemon=True)
        self.health.set_alive(self.thread.is_alive)

    def start(self) -> BackgroundRelay:
        self.thread.start()
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as e:  # never propagate out of the thread
            self.error = e
            logger.warning("endcall background relay stopped: %s", e)
        finally:
            self._ready.set()

    async def _run(self) -> None:
        from endcall.reports.outbox import open_outbox

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._ready.set()
        outbox = await self._open_until_reachable(open_outbox)
        if outbox is None:
            return
        relay = Relay(
            outbox,
            self.secrets,
            owner=make_owner("prewarm"),
            timeout=self.timeout,
            transport=self.transport,
            on_dead=self.on_dead,
        )
        if self.gone is not None:
            self.watch = OwnerWatch(outbox, self.gone, quiet=self.takeover_quiet)
        try:
            failing, next_pass = False, 0.0
            while not self._stop.is_set():
                if time.monotonic() >= next_pass:
                    next_pass = time.monotonic() + self.poll
                    self.health.begin()
                    try:
                        self.stats.add(await relay.run_once())
                    except Exception as e:
                        self.health.failed(redact(f"{type(e).__name__}: {e}"))
                        # once per state change: a database down for an hour is one line
                        if not failing:
                            logger.warning(
                                "endcall background relay: passes fail (%s); retrying", e
                            )
                        failing = True
                    else:
                        self.health.passed()
                        if failing:
                            logger.info("endcall background relay: passes work again")
                        failing = False
                if self.watch is not None:
                    claimable = await self.watch.check()
                    if claimable is not None:  # the outbox's clock is the wall clock
                        soon = time.monotonic() + max(0.0, claimable - time.time())
                        next_pass = min(next_pass, soon)
                wait = next_pass - time.monotonic()
                if self.watch is not None:
                    wait = min(wait, self.watch.due_in())
                if await self._pause(max(0.0, wait)):
                    next_pass = 0.0
        finally:
            await relay.aclose()
            await asyncio.to_thread(outbox.close)

    async def _open_until_reachable(self, open_outbox: Callable[[Any], Outbox]) -> Outbox | None:
        """The outbox, retried with backoff (1 s doubling up to ``poll``, ±20 % jitter) until
        it opens — a database that starts after its workers is ordinary pod ordering; None
        when stopped first. One WARNING when it fails, one INFO when it opens after that."""
        assert self._stop is not None
        delay, failed = 1.0, False
        while not self._stop.is_set():
            try:
                outbox = await asyncio.to_thread(open_outbox, self.target)
            except Exception as e:
                self.health.failed(redact(f"cannot open the outbox: {e}"))
                if not failed:
                    logger.warning(
                        "endcall background relay: cannot open the outbox yet (%s); retrying",
                        redact(str(e)),
                    )
                failed = True
            else:
                if failed:
                    logger.info("endcall background relay: the outbox is reachable now")
                return outbox
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, max(self.poll, 1.0))
        return None

    async def _pause(self, seconds: float) -> bool:
        """Up to ``seconds``, until a `wake` (True) or `stop`."""
        assert self._stop is not None and self._wake is not None
        waits = {
            asyncio.ensure_future(self._stop.wait()),
            asyncio.ensure_future(self._wake.wait()),
        }
        _, pending = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        woken = self._wake.is_set()
        self._wake.clear()
        return woken

    def wake(self, delay: float = 0.0) -> None:
        """Make a pass in ``delay`` seconds instead of at the next poll (from any thread):
        a draft became claimable early (`Outbox.release_scope`)."""
        self._ready.wait(5.0)
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(loop.call_later, max(0.0, delay), wake.set)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def stop(self, timeout: float | None = 5.0) -> None:
        """Ask the relay to stop and wait up to ``timeout`` seconds for the thread."""
        self._ready.wait(timeout)
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass
        self.thread.join(timeout)


_prewarm_lock = threading.Lock()
_prewarmed: dict[int, BackgroundRelay] = {}


def _start(
    target: str | Path | None,
    secrets: Sequence[str],
    poll: float,
    on_dead: DeadCallback | None,
    gone: GoneCheck | None = None,
) -> BackgroundRelay:
    pid = os.getpid()
    with _prewarm_lock:
        relay = _prewarmed.get(pid)
        if relay is None or not relay.thread.is_alive():
            where = target if target is not None else default_outbox_path()
            relay = BackgroundRelay(where, secrets, poll=poll, on_dead=on_dead, gone=gone)
            relay.start()
            _prewarmed[pid] = relay
        return relay


def prewarm(
    proc: Any = None,
    *,
    secret: str | Sequence[str] | None = None,
    outbox: str | Path | None = None,
    poll: float = 30.0,
    on_dead: DeadCallback | None = None,
    gone: GoneCheck | None = None,
) -> BackgroundRelay | None:
    """Start a background relay for leftover reports; usable as livekit-agents ``setup_fnc``
    / ``prewarm_fnc`` (it receives the ``JobProcess``), or called from your own prewarm.

    Cheap and non-blocking: it checks that the outbox (default: `default_outbox_path`, the one
    the agent's `ReportPipeline` uses) can be written — raising
    `endcall.reports.storage.OutboxError` when a SQLite file cannot, so a misconfigured worker
    fails at start-up; a PostgreSQL outbox that cannot be reached is logged at ERROR and waited
    for (a restart or pod ordering must not refuse interviews) — and starts one daemon thread
    per process (later calls return the same relay) that
    every ``poll`` seconds delivers due reports and abandoned crash drafts. Secrets: ``secret=`` or
    ``$ENDCALL_WEBHOOK_SECRET`` (``ValueError`` if malformed); without either, the relay starts as
    soon as the first `Webhook` given in code is used in this process (`ReportPipeline` offers it
    through `endcall.reports.secret_offers`), and ``None`` is returned. The relay is put in
    ``proc.userdata["endcall.relay"]``. Use ``functools.partial(endcall.prewarm, secret=...)``
    to pass arguments as a ``setup_fnc``. ``gone`` lets the relay take over a dead agent's
    crash draft before its lease runs out (`endcall.reports.owner_watch`); ``endcall.prewarm``
    (`endcall.agent.prewarm`) passes LiveKit's RoomService.
    """
    from endcall.reports import pipeline  # noqa: F401 - imported here, not on the job's event loop
    from endcall.reports.storage import OutboxError, open_checked

    if secret is None:
        secrets = check_secrets(secrets_from_env())
    elif isinstance(secret, str):
        secrets = check_secrets(parse_secrets(secret), "secret")
    else:
        secrets = check_secrets(secret, "secret")
    where = str(outbox if outbox is not None else default_outbox_path())
    try:
        open_checked(outbox).close()
    except OutboxError as e:
        if "://" not in where:
            raise  # a local file that cannot be written: the worker's own misconfiguration
        # a database that is down or late (a restart, pod ordering): failing the worker would
        # refuse every interview meanwhile; jobs keep their reports in memory and store them
        # once it is back, and the relay below keeps trying to open it
        logger.error("endcall.prewarm: %s; starting anyway, retrying in the background", e)
    if not secrets:
        logger.info(
            "endcall.prewarm: no %s set; the relay starts with the first Webhook's secrets",
            SECRET_ENV,
        )
        secret_offers.wait_for_secrets(_start_on_offer(outbox, poll, on_dead, gone))
        return None
    relay = _start(outbox, secrets, poll, on_dead, gone)
    userdata = getattr(proc, "userdata", None)
    if isinstance(userdata, dict):
        userdata["endcall.relay"] = relay
    return relay


def _start_on_offer(
    target: str | Path | None,
    poll: float,
    on_dead: DeadCallback | None,
    gone: GoneCheck | None = None,
) -> secret_offers.Starter:
    """The relay `prewarm` was asked for without secrets, started by the first `Webhook`
    offered (`endcall.reports.secret_offers`). The outbox is the offering pipeline's when it is
    a SQLite or PostgreSQL outbox (its path / DSN), else the one prewarm named."""

    def start(webhook: Webhook, outbox: Any) -> BackgroundRelay:
        where = getattr(outbox, "path", None) or getattr(outbox, "dsn", None)
        chosen = where if isinstance(where, (str, Path)) and str(where) != ":memory:" else target
        logger.info("endcall: starting the background relay with the agent's webhook secrets")
        return _start(chosen, webhook.secrets, poll, on_dead, gone)

    return start
