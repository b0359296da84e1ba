"""The agent-side report path: checkpoint drafts, commit the final report, deliver it.

``ReportPipeline`` deals only in ``end_id`` (the report's ``webhook-id``) and ``body`` (the
serialized ``session.ended`` document, sent byte-identical on every attempt).

Where delivery runs (livekit-agents 1.8, ``ipc/job_proc_lazy_main.py``): when a job ends, the
entrypoint gets 15 s, ``AgentSession.aclose()`` up to 60 s, then ``on_session_end`` runs with
up to ``session_end_timeout`` (default 300 s); only after that come ShuttingDown, the room
disconnect and the shutdown callbacks, and the supervisor (``ipc/supervised_proc.py``) kills
the process ``shutdown_process_timeout`` (default 10 s) after ShuttingDown. So the agent side
calls ``store()`` and ``deliver()`` from ``on_session_end``-time work: the in-process window
(``Webhook.in_process_window``, default 60 s, plus at most one request timeout) fits well
inside 300 s, whereas a shutdown callback would only have ~10 s. Whatever is not delivered in
the window stays in the outbox, unleased, for a relay: the next job process on this host
(``endcall.prewarm``), ``endcall outbox deliver`` or the fallback server.

Nothing here raises into the session (`check` raises, for start-up). If the outbox cannot be
used (read-only path, disk full, database down) the report is kept in memory, delivery is still
tried, and storing it is tried again after every attempt and at `aclose` (then relays deliver
it, and receivers prefer it to any crash draft already sent). Only a report that is neither
stored nor delivered — the in-process window ended, or the receiver refused it for good — is
logged whole, as one JSON line (logger ``endcall.report``, message starting with
``{"endcall_unsaved_report":``, bodies cut at 1 MiB) so it can be recovered from the logs:
reports hold private data (the transcript), and one that was stored or delivered is never
logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import httpx

from endcall.reports import metrics, secret_offers
from endcall.reports.delivery import Clock, DeadCallback, RetryPolicy, Sender, SystemClock
from endcall.reports.heartbeats import Heartbeats
from endcall.reports.memory import (
    MemoryReport,
    OwedWrites,
    log_unsaved,
    unsaved_report_line,
)
from endcall.reports.outbox.base import Outbox, OutboxRecord, default_outbox_path, make_owner
from endcall.reports.outbox.sql import SqlOutbox
from endcall.reports.storage import OutboxError, check_outbox, open_checked
from endcall.reports.webhook import Webhook

__all__ = ["DeliveryOutcome", "ReportPipeline", "lease_for", "unsaved_report_line"]

logger = logging.getLogger("endcall.report")

#: lease kept on a draft / a report being delivered; drafts are refreshed at least every 30 s
DEFAULT_LEASE = 90.0
#: a lease always covers one request timeout plus this much
LEASE_MARGIN = 60.0
#: a report the outbox refused is committed again after this long, doubling up to the max:
#: an outbox that did not open is tried again after this long, doubling up to the max
REOPEN_FIRST = 1.0
REOPEN_MAX = 30.0
#: `aclose` waits this long for an outbox that still owes a write (a report to commit, a
#: draft to discard) before it gives up and logs the report whole
SETTLE_AT_CLOSE = 10.0


def lease_for(timeout: float, lease: float = DEFAULT_LEASE, margin: float = LEASE_MARGIN) -> float:
    """The lease to hold for requests of ``timeout`` seconds: at least ``timeout`` plus
    ``margin`` (default `LEASE_MARGIN`, never below 1 s), so no relay can take a report over
    while an attempt is still in flight."""
    return max(lease, timeout + max(1.0, margin))


@dataclass(frozen=True)
class DeliveryOutcome:
    """Result of `ReportPipeline.deliver`."""

    delivered: bool
    dead: bool
    attempts: int
    last_status: int | None
    last_error: str | None


#: one queued write: a final report to store, or a delivery to mark
_Write = (
    tuple[Literal["store"], tuple[str, str, bytes]] | tuple[Literal["delivered"], tuple[str, int]]
)

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Batches concurrent writes into one transaction (one fsync): while a commit runs, new
    requests queue up and the next commit takes them all. No added latency when idle.

    The batch runs in a worker thread that hands the results straight back to the event loop,
    which wakes the waiters: two loop turns per commit (not four, as with a draining task
    awaiting ``to_thread``), which matters when the loop is busy sending other reports."""

    def __init__(self, fn: Callable[[list[T]], list[R] | None], max_batch: int = 256) -> None:
        self._fn = fn
        self._max = max_batch
        self._queue: list[tuple[T, asyncio.Future[R | None]]] = []
        self._busy = False

    async def submit(self, item: T) -> R | None:
        return (await self.submit_together([item]))[0]

    async def submit_together(self, items: list[T]) -> list[R | None]:
        """Queue ``items`` in one go: they share a commit (unless the batch is full)."""
        loop = asyncio.get_running_loop()
        futs: list[asyncio.Future[R | None]] = []
        for item in items:
            fut: asyncio.Future[R | None] = loop.create_future()
            self._queue.append((item, fut))
            futs.append(fut)
        if not self._busy:
            self._start(loop)
        return list(await asyncio.gather(*futs))

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._queue = self._queue[: self._max], self._queue[self._max :]
        self._busy = True
        items = [item for item, _ in batch]

        def job() -> None:
            results: list[R] | None = None
            error: BaseException | None = None
            try:
                results = self._fn(items)
            except BaseException as e:
                error = e
            try:
                loop.call_soon_threadsafe(self._done, loop, batch, results, error)
            except RuntimeError:  # the loop is gone (process shutting down): nobody waits
                pass

        try:
            loop.run_in_executor(None, job)
        except BaseException as e:
            self._done(loop, batch, None, e)

    def _done(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[T, asyncio.Future[R | None]]],
        results: list[R] | None,
        error: BaseException | None,
    ) -> None:
        for i, (_, fut) in enumerate(batch):
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(None if results is None else results[i])
        self._busy = False
        if self._queue:
            self._start(loop)


def batch_writer(
    ob: Outbox,
    owner: str,
    lease: float,
    headers: Mapping[str, str],
    delivery: Mapping[str, Any],
) -> Callable[[list[_Write]], list[object]]:
    """What one group commit writes: the final reports to store and the deliveries to mark,
    in one transaction on a SQL outbox; a store's result (or its exception) per store."""

    def write(items: list[_Write]) -> list[object]:
        stores = [w[1] for w in items if w[0] == "store"]
        marks = [w[1] for w in items if w[0] == "delivered"]
        if isinstance(ob, SqlOutbox):
            res: list[object] = list(
                ob.write_many(
                    stores, marks, owner=owner, lease=lease, headers=headers, delivery=delivery
                )
            )
        else:  # any other Outbox: two transactions, failing separately
            try:
                res = list(
                    ob.store_many(
                        stores, owner=owner, lease=lease, headers=headers, delivery=delivery
                    )
                    if stores
                    else []
                )
            except Exception as e:
                res = [e] * len(stores)
            if marks:
                ob.mark_delivered_many(marks, owner)
        it = iter(res)
        return [next(it) if w[0] == "store" else None for w in items]

    return write


def attempt_timeout(timeout: float, left: float) -> float:
    """One attempt's timeout with ``left`` seconds of the in-process window left (≥ 1 s)."""
    return max(min(timeout, 1.0), min(timeout, left))


class ReportPipeline:
    """Drafts, durable commit and bounded in-process delivery of one agent's reports.

    ``outbox=None`` opens `default_outbox_path` (``$ENDCALL_OUTBOX``: a SQLite path or a
    ``postgresql://`` DSN) on first use or at `check`. ``owner`` names this process for leases
    (default ``"<hostname>:<pid>:<random>"``). ``lease`` is raised to cover one request timeout
    plus ``lease_margin`` (`lease_for`). ``on_dead(record)`` is called when a report goes dead
    (also logged at ERROR). ``transport``/``client`` inject the HTTP layer, ``clock`` the time
    source. Constructing a pipeline offers its webhook's secrets to a relay `endcall.prewarm`
    was asked to start without any (`endcall.reports.secret_offers`).
    """

    def __init__(
        self,
        webhook: Webhook,
        outbox: Outbox | None = None,
        *,
        owner: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
        lease: float = DEFAULT_LEASE,
        policy: RetryPolicy | None = None,
        on_dead: DeadCallback | None = None,
        lease_margin: float = LEASE_MARGIN,
    ) -> None:
        self.webhook = webhook
        self.owner = owner or make_owner()
        self.lease = lease_for(webhook.timeout, lease, lease_margin)
        self.clock: Clock = clock or SystemClock()
        self._outbox = outbox
        self._own_outbox = outbox is None
        #: when (``time.monotonic()``) an outbox that failed to open may be tried again
        self._reopen_at: float | None = None
        self._reopen_delay = REOPEN_FIRST
        self._scopes: dict[str, str] = {}
        #: how long `aclose` waits for an outbox that still owes writes (seconds)
        self.settle_at_close = SETTLE_AT_CLOSE
        self._heartbeats = Heartbeats(self._ob, self.owner, self.lease)
        self._open_lock = asyncio.Lock()
        self._owed = OwedWrites(lambda m: self._store_again(m, quiet=True), self._record_delivered)
        self._memory = self._owed.reports
        self._fresh: dict[str, OutboxRecord] = {}
        #: until when (``time.monotonic()``) we surely hold a row's lease
        self._lease_until: dict[str, float] = {}
        self._headers = dict(webhook.headers)
        self._delivery = webhook.delivery()
        self._sender = Sender(
            outbox,
            webhook.secrets,
            owner=self.owner,
            policy=policy or RetryPolicy(webhook.schedule, webhook.jitter),
            timeout=webhook.timeout,
            client=client,
            transport=transport,
            clock=self.clock,
            on_delivered=self._mark_delivered,
            on_dead=on_dead,
        )
        self._writes: GroupCommit[_Write, object] | None = None
        secret_offers.offer_webhook(webhook, outbox)

    @property
    def outbox(self) -> Outbox | None:
        """The outbox reports are stored in (None until first opened, or if it failed)."""
        return self._outbox

    def _writer(self, ob: Outbox) -> GroupCommit[_Write, object]:
        """One group-commit queue for final reports and delivered marks: concurrent session
        ends and finished deliveries share one durable transaction (one fsync)."""
        if self._writes is None:
            self._writes = GroupCommit(
                batch_writer(ob, self.owner, self.lease, self._headers, self._delivery)
            )
        return self._writes

    async def _mark_delivered(self, end_id: str, status: int) -> None:
        ob = self._outbox
        if ob is not None:
            await self._writer(ob).submit(("delivered", (end_id, status)))

    async def check(self) -> None:
        """Open the outbox now and make sure it can be written; raises `OutboxError` (naming
        the outbox, the cause and what to do) when it cannot. Warns (once) when a SQLite
        outbox is on storage that will not survive the container."""
        if self._outbox is None:
            try:
                self._outbox = await asyncio.to_thread(open_checked, default_outbox_path())
            except OutboxError:
                self._reopen_at = time.monotonic() + self._reopen_delay
                self._reopen_delay = min(self._reopen_delay * 2, REOPEN_MAX)
                raise
            self._sender.outbox = self._outbox
            self._reopen_at = None
            self._reopen_delay = REOPEN_FIRST
            return
        await asyncio.to_thread(check_outbox, self._outbox)

    async def _ob(self) -> Outbox | None:
        if self._outbox is not None or not self._may_open():
            return self._outbox
        async with self._open_lock:
            if self._outbox is None and self._may_open():
                failed_before = self._reopen_at is not None
                try:
                    await self.check()
                except OutboxError as e:
                    if not failed_before:  # once per state change, not once per checkpoint
                        logger.error("endcall: %s (trying again in the background)", e)
                else:
                    if failed_before:
                        logger.info("endcall: the outbox opens now")
        return self._outbox

    def _may_open(self) -> bool:
        """An outbox that failed to open is tried again once its backoff is over (a database
        that starts after the worker, or is restarting)."""
        return self._reopen_at is None or time.monotonic() >= self._reopen_at

    def scope(self, end_id: str, scope: str | None) -> None:
        """Name what the session's draft belongs to (the agent: its room sid), so a relay may
        take it over early once LiveKit says the agent left (`Outbox.release_scope`)."""
        if scope:
            self._scopes[end_id] = scope

    async def save_draft(self, end_id: str, body: bytes) -> None:
        """Checkpoint the crash draft (a complete:false report) and renew its lease; from
        then on the draft is renewed every few seconds until the final report is stored
        (`endcall.reports.heartbeats`)."""
        try:
            ob = await self._ob()
            if ob is None:
                return
            saved = await asyncio.to_thread(
                ob.save_draft,
                end_id,
                self.webhook.url,
                body,
                owner=self.owner,
                lease=self.lease,
                headers=self._headers,
                delivery=self._delivery,
                scope=self._scopes.get(end_id),
            )
            if saved:
                self._heartbeats.start(end_id)
        except Exception as e:
            logger.warning("endcall: could not save the draft of %s: %s", end_id, e)

    async def mark_ending(self, end_id: str, ending: Mapping[str, Any], body: bytes) -> bool:
        """Make an accepted end durable at once: its reason, initiator, request id and meta go
        into the session's draft row (created with ``body``, a minimal draft, if none was
        saved yet), so a crash from now on delivers the right reason. True when written."""
        try:
            ob = await self._ob()
            if ob is None:
                return False
            marked = await asyncio.to_thread(
                ob.mark_ending,
                end_id,
                dict(ending),
                url=self.webhook.url,
                body=body,
                owner=self.owner,
                lease=self.lease,
                headers=self._headers,
                delivery=self._delivery,
                scope=self._scopes.get(end_id),
            )
            if marked:
                self._heartbeats.start(end_id)
            return marked
        except Exception as e:
            logger.error("endcall: could not record the accepted end of %s: %s", end_id, e)
            return False

    async def _store_now(self, end_id: str, body: bytes) -> bool:
        """One attempt at committing the final report; raises what the outbox raises."""
        ob = await self._ob()
        if ob is None:
            raise OutboxError("outbox unavailable")
        started = time.monotonic()
        res = await self._writer(ob).submit(("store", (end_id, self.webhook.url, body)))
        if isinstance(res, Exception):
            raise res
        if res == "stored":  # we hold its lease: the first attempt needs no re-read
            metrics.STORED.labels("final").inc()
            self._lease_until[end_id] = started + self.lease
            now = self.clock.time()
            self._fresh[end_id] = OutboxRecord(
                end_id=end_id,
                status="pending",
                is_draft=False,
                url=self.webhook.url,
                headers=self._headers,
                body=body,
                attempts=0,
                next_attempt_at=now,
                last_error=None,
                last_status=None,
                lease_owner=self.owner,
                lease_expires_at=now + self.lease,
                created_at=now,
                updated_at=now,
                delivered_at=None,
                delivery=self._delivery,
            )
        else:
            logger.info("endcall: report %s was already stored; kept as is", end_id)
        return True

    async def store(self, end_id: str, body: bytes) -> bool:
        """Commit the final report before any send; True when it is durable. On failure the
        report is kept in memory (and logged), delivery is tried from there, and storing it
        is tried again on every retry and at `aclose`."""
        try:
            stored = await self._store_now(end_id, body)
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
        else:
            self._heartbeats.stop(end_id)  # the final report replaced the draft
            return stored
        self._memory[end_id] = MemoryReport(end_id, self.webhook.url, body, self.clock.time())
        logger.error(
            "endcall: report %s could not be stored (%s); kept in memory, stored as soon as"
            " the outbox works again, and delivered from memory meanwhile (logged whole only if"
            " both fail)",
            end_id,
            error,
        )
        self._owed.kick()
        return False

    async def _store_again(self, mem: MemoryReport, *, quiet: bool = False) -> bool:
        """Retry committing a report kept in memory; True once it is in the outbox (it is
        then delivered from there, by us or by a relay)."""
        try:
            await self._store_now(mem.end_id, mem.body)
        except Exception as e:
            if not quiet:
                logger.warning("endcall: the outbox still fails for %s: %s", mem.end_id, e)
            return False
        self._memory.pop(mem.end_id, None)
        self._heartbeats.stop(mem.end_id)
        logger.info("endcall: report %s is stored after all", mem.end_id)
        return True

    async def _load(self, end_id: str) -> OutboxRecord | MemoryReport | None:
        mem = self._memory.get(end_id)
        if mem is not None:
            return mem
        ob = self._outbox
        if ob is None:
            return None
        return await asyncio.to_thread(ob.get, end_id)

    async def deliver(self, end_id: str, *, within: float | None = None) -> DeliveryOutcome:
        """Try to deliver per the schedule for at most ``within`` seconds (default
        ``webhook.in_process_window``). Never raises. What is left stays for relays."""
        window = self.webhook.in_process_window if within is None else within
        deadline = self.clock.time() + window
        attempts = 0
        last_status: int | None = None
        last_error: str | None = None
        known = self._fresh.pop(end_id, None)
        while True:
            try:
                rec = known if known is not None else await self._load(end_id)
                known = None
            except Exception as e:
                logger.error("endcall: outbox read failed for %s: %s", end_id, e)
                return DeliveryOutcome(False, False, attempts, last_status, f"outbox: {e}")
            if rec is None:
                return DeliveryOutcome(False, False, 0, None, "unknown end_id (not stored)")
            if isinstance(rec, MemoryReport) and rec.status == "pending" and attempts:
                if await self._store_again(rec):
                    continue
            total, status = rec.attempts, rec.status
            last_status, last_error = rec.last_status, rec.last_error
            if status == "delivered":
                return DeliveryOutcome(True, False, total, last_status, None)
            if status == "dead":
                log_unsaved(rec)
                return DeliveryOutcome(False, True, total, last_status, last_error)
            now = self.clock.time()
            if rec.next_attempt_at > deadline or now >= deadline:
                await self._release(end_id)
                log_unsaved(rec)
                return DeliveryOutcome(False, False, total, last_status, last_error)
            if rec.next_attempt_at > now:
                await self.clock.sleep(rec.next_attempt_at - now)
            timeout = attempt_timeout(self.webhook.timeout, deadline - self.clock.time())
            if isinstance(rec, MemoryReport):
                res, nxt = await self._sender.send(
                    rec.record(self._headers), timeout=timeout, record=False
                )
                rec.attempts += 1
                rec.last_status, rec.last_error = res.status, res.error
                if res.outcome == "delivered":
                    rec.status = "delivered"
                    if end_id not in self._memory:  # stored meanwhile (`_store_loop`)
                        try:
                            await self._mark_delivered(end_id, res.status or 200)
                        except Exception as e:  # a relay sends it again: same body, same id
                            logger.warning("endcall: could not mark %s delivered: %s", end_id, e)
                        return DeliveryOutcome(True, False, rec.attempts, res.status, None)
                    rec.settled = await self._record_delivered(rec)
                    if not rec.settled:  # the outbox owes it a delivered record (`OwedWrites`)
                        self._owed.kick()
                elif res.outcome == "dead":
                    rec.status = "dead"
                else:
                    rec.next_attempt_at = nxt if nxt is not None else now
                attempts += 1
                continue
            try:
                ob = self._outbox
                assert ob is not None
                lease_left = self._lease_until.get(end_id, 0.0) - time.monotonic()
                if rec.lease_owner == self.owner and lease_left > self.webhook.timeout + 10:
                    fresh: OutboxRecord | None = rec  # our lease, long enough for this attempt
                else:
                    started = time.monotonic()
                    fresh = await asyncio.to_thread(ob.renew, end_id, self.owner, self.lease)
                    if fresh is not None:
                        self._lease_until[end_id] = started + self.lease
                if fresh is None:
                    again = await asyncio.to_thread(ob.get, end_id)
                    if again is not None and again.status in ("delivered", "dead"):
                        continue
                    return DeliveryOutcome(
                        False, False, total, last_status, "another sender holds the lease"
                    )
            except Exception as e:
                logger.error("endcall: outbox failed for %s, keeping it in memory: %s", end_id, e)
                mem = MemoryReport(end_id, rec.url, rec.body, self.clock.time())
                mem.attempts = rec.attempts
                mem.stored = True  # the outbox has it: a relay delivers it if we do not
                self._memory[end_id] = mem
                continue
            res, _ = await self._sender.send(fresh, keep_lease=self.lease, timeout=timeout)
            attempts += 1
            if res.outcome == "delivered":
                return DeliveryOutcome(True, False, fresh.attempts + 1, res.status, None)
            if res.outcome == "dead":
                return DeliveryOutcome(False, True, fresh.attempts + 1, res.status, res.error)

    async def _record_delivered(self, mem: MemoryReport) -> bool:
        """After an in-memory delivery: write the report to the outbox as delivered — its
        crash draft goes in the same transaction, so no relay sends the draft later, and the
        reconciler finds the room's report (no false ``session.missing``). True once done;
        until then the draft's heartbeat goes on (no relay takes it over while we live)."""
        try:
            ob = await self._ob()
            if ob is None:
                raise OutboxError("outbox unavailable")
            # one transaction on a SQL outbox: the draft never gives way to a *pending* report
            # (which a relay would send again, and a reader would take for undelivered)
            stored, _ = await self._writer(ob).submit_together(
                [
                    ("store", (mem.end_id, self.webhook.url, mem.body)),
                    ("delivered", (mem.end_id, mem.last_status or 200)),
                ]
            )
            if isinstance(stored, Exception):
                raise stored
            if stored == "stored":
                metrics.STORED.labels("final").inc()
        except Exception as e:
            if not mem.settle_failed:
                logger.warning("endcall: could not record %s as delivered yet: %s", mem.end_id, e)
            mem.settle_failed = True
            return False
        self._heartbeats.stop(mem.end_id)
        return True

    async def _release(self, end_id: str) -> None:
        ob = self._outbox
        if ob is None or end_id in self._memory:
            return
        try:
            await asyncio.to_thread(ob.release, end_id, self.owner)
        except Exception as e:
            logger.warning("endcall: could not release %s: %s", end_id, e)

    async def aclose(self) -> None:
        """Close the HTTP client and the outbox the pipeline opened. Reports still only in
        memory get a last try at the outbox (then relays deliver them); what still fails is
        logged whole (`unsaved_report_line`)."""
        await self._sender.aclose()
        # the outbox still owes writes (a database restarting): wait for it a little, the
        # drafts still held by their heartbeats, rather than leave a stale draft to a relay
        await self._owed.close(self.settle_at_close)
        await self._heartbeats.aclose()
        for mem in list(self._memory.values()):
            if mem.status == "pending" and not mem.stored:
                log_unsaved(mem, f"undelivered at close ({mem.last_error})")
        if self._own_outbox and self._outbox is not None:
            await asyncio.to_thread(self._outbox.close)
