"""`EndPath`: from an accepted end to the report handed over (steps 2-7 of the end path).

One background task per call: drain (`endcall.agent.drain`, bounded by `drain_timeout`) and flush
the transcript (`endcall.agent.transcript`); `session.shutdown()` and a wait for its `close`
(`close_timeout`); then, whatever happened before (even a cancellation), the hand-over: the
crash drafts stop, the report is built and stored (durable before any send), the attributes
say `ended`, `ctx.shutdown(reason)` is requested (once), in-process delivery starts, and the
room is deleted once the delivery finished or `delete_room_after` passed (`delete_room`).
`finish` is what the job's hooks wait for.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any

from endcall.agent.annotations import Annotations
from endcall.agent.call import Call
from endcall.agent.checkpoints import Checkpoints
from endcall.agent.drain import drain
from endcall.agent.end_machine import EndRecord, EndState, Trigger
from endcall.agent.end_tool import GoodbyePlan
from endcall.agent.own_room import delete_own_room
from endcall.agent.report import PreparedReport, build_report, prepare_report
from endcall.agent.transcript import Transcript
from endcall.agent.waits import remaining, settle
from endcall.protocol import ATTR_REPORT, ATTR_STATE

__all__ = ["ATTRIBUTE_SETTLE", "DELETE_ROOM_TIMEOUT", "EndPath", "EndSteps", "promised_seconds"]

logger = logging.getLogger("endcall")

#: how long after a report's `endcall.report` update the writes may take before the room goes
ATTRIBUTE_SETTLE = 1.0
#: bound of the RoomService DeleteRoom call itself
DELETE_ROOM_TIMEOUT = 5.0


def promised_seconds(
    drain_timeout: float,
    flush_timeout: float,
    close_timeout: float,
    delete_room_after: float | None,
) -> float:
    """The ack's promise (its `drain_ms`): the agent is gone (session closed, report stored,
    room deleted when it deletes it: `delete_room_after` not None) at most this long after."""
    bound = drain_timeout + flush_timeout + close_timeout
    if delete_room_after is not None:
        bound += delete_room_after + ATTRIBUTE_SETTLE
    return bound


class EndSteps:
    """How long each step of one end path took: logged once, at INFO, when the in-process
    delivery is over — ``endcall: end e_… steps (ms): accept …, drain …, transcript …,
    close …, report …, store …, delivery …; total …`` (``total``: from the accepted end to
    the delivery; ``accept``: from the request reaching the agent to its acceptance). Steps
    not taken are left out. `bench/end_to_report.py` reads these lines for its breakdown."""

    ORDER = ("drain", "transcript", "close", "report", "store", "delivery")

    def __init__(self) -> None:
        self._t0: float | None = None
        self._at: dict[str, float] = {}

    def begin(self, t0: float) -> None:
        self._t0 = t0

    def mark(self, step: str) -> None:
        self._at.setdefault(step, time.monotonic())

    def durations(self) -> dict[str, float]:
        """Milliseconds per step taken, each from the step before it."""
        if self._t0 is None:
            return {}
        out: dict[str, float] = {}
        last = self._t0
        for step in self.ORDER:
            at = self._at.get(step)
            if at is not None:
                out[step] = (at - last) * 1000
                last = at
        if out:
            out["total"] = (last - self._t0) * 1000
        return out

    def log(self, end_id: str, ack_ms: float | None) -> None:
        steps = self.durations()
        if not steps:
            return
        total = steps.pop("total")
        parts = ([f"accept {ack_ms:.0f}"] if ack_ms is not None else []) + [
            f"{name} {ms:.0f}" for name, ms in steps.items()
        ]
        logger.info("endcall: end %s steps (ms): %s; total %.0f", end_id, ", ".join(parts), total)


class EndPath:
    """Runs the end of one call once `start` is called, and tells the job when it is done."""

    def __init__(
        self,
        call: Call,
        sink: Any,
        *,
        transcript: Transcript,
        checkpoints: Checkpoints,
        annotations: Annotations,
        webhook: Any,
        own_sink: bool,
        tool_name: str,
        drain_timeout: float,
        close_timeout: float,
        interrupt_on_customer_end: bool,
        delete_room: bool,
        delete_room_after: float,
    ) -> None:
        self._call = call
        self._sink = sink
        self._transcript = transcript
        self._checkpoints = checkpoints
        self._annotations = annotations
        self._webhook = webhook
        self._own_sink = own_sink
        self._tool_name = tool_name
        self.drain_timeout = drain_timeout
        self.close_timeout = close_timeout
        self._interrupt_on_customer_end = interrupt_on_customer_end
        self._delete_room = delete_room
        self._delete_room_after = delete_room_after
        #: resolved with the record once the report is stored and the job shutdown requested
        self.done: asyncio.Future[EndRecord] | None = None
        self.report: bytes | None = None
        self.stored: bool | None = None
        self.delivery: Any = None
        self._task: asyncio.Task[None] | None = None
        self._delivery_task: asyncio.Task[Any] | None = None
        self._room_task: asyncio.Task[None] | None = None
        self.steps = EndSteps()

    def begin(self) -> asyncio.Future[EndRecord]:
        """Make the `done` future (when the call starts, or late at job end)."""
        self.done = asyncio.get_running_loop().create_future()
        return self.done

    def start(self, trigger: Trigger, plan: GoodbyePlan | None) -> None:
        """The machine accepted `trigger`: run the end path in the background."""
        self._task = asyncio.get_running_loop().create_task(
            self._run(trigger, plan), name="endcall_end_path"
        )

    # ------------------------------------------------------------------ steps 2-4

    async def _run(self, trigger: Trigger, plan: GoodbyePlan | None) -> None:
        call = self._call
        t0 = time.monotonic()
        self.steps.begin(t0)
        drain_s = shutdown_s = 0.0
        try:
            if not call.session_closing():
                drained = drain(
                    call.session,
                    trigger,
                    plan,
                    interrupt_on_customer_end=self._interrupt_on_customer_end,
                    tool_name=self._tool_name,
                    closing=call.session_closing,
                )
                if not await settle(drained, self.drain_timeout):
                    logger.warning("endcall: drain did not finish in %.1fs", self.drain_timeout)
                    call.end_info["drain_timed_out"] = True
                self.steps.mark("drain")
                flush = self._transcript.flush_timeout
                await settle(self._transcript.flush(), flush + 1.0)
                self.steps.mark("transcript")
            drain_s = time.monotonic() - t0
            t1 = time.monotonic()
            if not call.closed.is_set():
                if not call.session_closing():
                    try:
                        call.session.shutdown(drain=False)
                    except Exception as e:
                        logger.warning("endcall: session.shutdown failed: %s", e)
                if not await settle(call.closed.wait(), self.close_timeout):
                    logger.warning(
                        "endcall: the session did not close within %.1fs; building the report"
                        " anyway",
                        self.close_timeout,
                    )
                    call.end_info["close_timed_out"] = True
            shutdown_s = time.monotonic() - t1
            self.steps.mark("close")
        except Exception:
            logger.exception("endcall: unexpected error while ending; building the report")
        finally:
            # whatever happened above (even a cancellation), the report is handed over once
            await asyncio.shield(self._hand_over(drain_s, shutdown_s))

    # ------------------------------------------------------------------ steps 5-7

    async def _hand_over(self, drain_s: float, shutdown_s: float) -> None:
        call = self._call
        try:
            await self._checkpoints.stop()
            # the long part (chat items, events) in slices, the loop running between them;
            # then, at once, what is known only now
            try:
                prepared = await prepare_report(call.ctx, call.session, self._checkpoints.cache)
            except asyncio.CancelledError:
                # torn down meanwhile: built whole, at once, as the hand-over always could be
                logger.warning("endcall: the report was interrupted; building it at once")
                prepared = PreparedReport(call.ctx, call.session)
            body = self._build_report(prepared, drain_s, shutdown_s)
            self.report = body
            self.steps.mark("report")
            self.stored = await self._sink.store(call.end_id, body)
            self.steps.mark("store")
            if self.stored:
                call.journal.stored(getattr(self._sink, "outbox", None))
            else:
                call.journal.not_stored()
        except Exception:
            logger.exception("endcall: the report could not be handed over")
        finally:
            call.set_attributes(
                {
                    ATTR_STATE: EndState.ENDED.value,
                    ATTR_REPORT: "stored" if self.stored else "pending",
                }
            )
            record = call.machine.finish()
            if self.report is not None:
                self._delivery_task = asyncio.get_running_loop().create_task(
                    self._deliver(), name="endcall_delivery"
                )
            self._request_job_shutdown(record.reason or "endcall")
            if self._delete_room:
                self._room_task = asyncio.get_running_loop().create_task(
                    self._delete_room_when_reported(), name="endcall_delete"
                )
            if self.done is not None and not self.done.done():
                self.done.set_result(record)

    def _end_section(self, drain_s: float, shutdown_s: float) -> dict[str, Any]:
        rec = self._call.machine.record
        section: dict[str, Any] = {
            "channel": rec.channel,
            "requested_at": rec.requested_at,
            "acked_at": rec.acked_at,
            "drain_s": round(drain_s, 3),
            "shutdown_s": round(shutdown_s, 3),
            "disconnect_reason": rec.disconnect_reason,
            "error": rec.error,
            "close_reason": self._call.close_reason,
            "drain_ms": rec.drain_ms,
        }
        section.update(self._call.end_info)
        return section

    def _build_report(self, prepared: PreparedReport, drain_s: float, shutdown_s: float) -> bytes:
        call = self._call
        rec = call.machine.record
        try:
            return prepared.finish(
                rec,
                room_name=call.room_name(),
                started_at=call.started_at,
                end_section=self._end_section(drain_s, shutdown_s),
                flushed_transcripts=self._transcript.uncommitted,
                annotations=self._annotations.snapshot(),
            )
        except Exception as e:
            logger.exception("endcall: could not build the full report; sending a minimal one")
            return build_report(
                rec,
                ctx=None,
                session=None,
                room_name=call.room_name(),
                started_at=call.started_at,
                end_section={
                    **self._end_section(drain_s, shutdown_s),
                    "report_error": f"{type(e).__name__}: {e}",
                },
                annotations=self._annotations.snapshot(),
            )

    def _request_job_shutdown(self, reason: str) -> None:
        call = self._call
        if call.shutdown_requested:
            return
        call.shutdown_requested = True
        try:
            call.ctx.shutdown(reason=reason)
        except Exception:
            logger.exception("endcall: ctx.shutdown failed")

    async def _delete_room_when_reported(self) -> None:
        """Delete the room once the delivery finished (or `delete_room_after` passed, or the
        agent already left the room) and `endcall.report` was written, so the page can show
        the report delivered first."""
        call = self._call
        deadline = time.monotonic() + self._delete_room_after
        task = self._delivery_task
        if task is not None and not task.done() and not call.room_gone.is_set():
            # the pipeline does not report single attempts: its `deliver` returns after the
            # first one when that succeeds (or is final); a retry waits for the bound
            gone = asyncio.ensure_future(call.room_gone.wait())
            try:
                await asyncio.wait(
                    {task, gone},
                    timeout=self._delete_room_after,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                gone.cancel()
        if call.attrs is not None and not call.room_gone.is_set():
            # let `endcall.state=ended` / `endcall.report` reach the others first
            await call.attrs.wait_idle(max(deadline - time.monotonic(), ATTRIBUTE_SETTLE))
        await delete_own_room(
            call.ctx,
            connected=not call.room_gone.is_set(),
            disconnect_reason=call.disconnect_reason,
            delete=self._delete_room_now,
        )

    async def _delete_room_now(self) -> None:
        try:
            fut = self._call.ctx.delete_room()
        except Exception as e:
            logger.warning("endcall: could not delete the room: %s", e)
            return
        if inspect.isawaitable(fut):
            # the job cancels its pending tasks (this call among them) when it exits: wait
            fut = asyncio.ensure_future(fut)
            if not await settle(fut, DELETE_ROOM_TIMEOUT, cancel=False):
                logger.warning(
                    "endcall: deleting the room takes longer than %.0fs", DELETE_ROOM_TIMEOUT
                )
            elif not fut.cancelled() and fut.exception() is not None:
                logger.warning("endcall: deleting the room failed: %s", fut.exception())

    async def _deliver(self) -> Any:
        call = self._call
        try:
            outcome = await self._sink.deliver(call.end_id)
        except Exception as e:  # the pipeline never raises; a custom sink might
            logger.exception("endcall: delivery failed")
            outcome = None
            call.end_info["delivery_error"] = str(e)
        self.delivery = outcome
        delivered = bool(getattr(outcome, "delivered", False))
        self.steps.mark("delivery")
        rec = call.machine.record
        ack_ms = None
        if rec.acked_at is not None and rec.requested_at is not None:
            ack_ms = (rec.acked_at - rec.requested_at) * 1000
        self.steps.log(call.end_id, ack_ms)
        await self._log_delivery(outcome, delivered)
        if call.attrs is not None:
            if delivered:
                if call.ctx.room.isconnected():
                    call.attrs.update({ATTR_REPORT: "delivered"})
            elif not self.stored:
                if call.ctx.room.isconnected():
                    call.attrs.update({ATTR_REPORT: "failed"})
        return outcome

    async def _log_delivery(self, outcome: Any, delivered: bool) -> None:
        journal = self._call.journal
        attempts = getattr(outcome, "attempts", 0)
        status = getattr(outcome, "last_status", None)
        error = getattr(outcome, "last_error", None)
        if delivered:
            journal.delivered(attempts, status)
        elif getattr(outcome, "dead", False):
            journal.dead(attempts, status, error)
        elif self.stored:
            outbox = getattr(self._sink, "outbox", None)
            next_at = None
            try:
                row = await asyncio.to_thread(outbox.get, self._call.end_id) if outbox else None
                next_at = getattr(row, "next_attempt_at", None)
            except Exception as e:
                logger.debug("endcall: could not read the outbox row: %s", e)
            journal.left_pending(outbox, next_at, error)

    # ------------------------------------------------------------------ the job's wait

    async def finish(self, done: asyncio.Future[EndRecord], deadline: float | None) -> None:
        """Wait for the end path, the room deletion and the in-process delivery, each
        bounded, and at most until `deadline` (a `time.monotonic()` value); then close the
        pipeline EndCall made itself."""

        def left(default: float) -> float:
            return remaining(deadline, default)

        flush = self._transcript.flush_timeout
        bound = self.drain_timeout + flush + self.close_timeout + 10.0
        if not await settle(done, left(bound), cancel=False):
            logger.error("endcall: the end path did not finish in time")
            return
        room_task = self._room_task
        if room_task is not None:
            room_bound = self._delete_room_after + ATTRIBUTE_SETTLE + DELETE_ROOM_TIMEOUT + 1.0
            if not await settle(room_task, left(room_bound), cancel=False):
                logger.warning("endcall: the room deletion did not finish in time")
        task = self._delivery_task
        if task is not None:
            window = float(getattr(self._webhook, "in_process_window", 60.0))
            timeout = float(getattr(self._webhook, "timeout", 15.0))
            if not await settle(task, left(window + timeout + 5.0), cancel=False):
                logger.warning(
                    "endcall: report %s not delivered in process; it stays in the "
                    "outbox for a relay",
                    self._call.end_id,
                )
            if self._call.attrs is not None:
                await self._call.attrs.wait_idle(left(2.0))
        if self._own_sink and (task is None or task.done()):
            try:
                await self._sink.aclose()
            except Exception:
                logger.exception("endcall: closing the report pipeline failed")
