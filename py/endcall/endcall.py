"""`EndCall`: one end state machine for every way a session ends, then drain and shut down.

```python
end = EndCall(ctx, session, webhook=Webhook(url, secret), max_duration=1800,
              silence_timeout=60, goodbye="Thank you for your time. Goodbye!")
await session.start(room=ctx.room, agent=InterviewAgent(tools=[end.tool]))
await end.start()
```
and `@server.rtc_session(..., on_session_end=EndCall.on_session_end)`.

The end path (one background task, started by the first accepted trigger; the ack is returned
before it starts, so ack latency never includes the drain):

1. attributes `endcall.state=ending`, `reason`, `end_id`, `request_id`, `report=pending`;
2. drain, bounded by `drain_timeout`: a customer end interrupts the agent's speech
   (`interrupt_on_customer_end`) and says no goodbye; the tool, `max_duration` and
   `silence_timeout` let the goodbye play out in full; running tool calls get to finish;
3. user transcripts: an interim transcript still pending gets `transcript_flush_timeout` to
   become final; final transcripts not yet committed as a user turn are added to the report;
4. `session.shutdown()` and a wait for its `close` event (bounded by `close_timeout`);
5. the report is built (`ctx.make_session_report()`), stored (`pipeline.store`: durable before
   any send), attributes `ended` + `report=stored`;
6. `ctx.shutdown(reason)` (exactly once) and delivery starts (`pipeline.deliver`, bounded by
   the webhook's `in_process_window`);
7. with `delete_room=True` (default) the room is deleted once the in-process delivery has
   finished (delivered, or given up) or `delete_room_after` seconds (default 5) have passed
   since step 5, whichever comes first, and `endcall.report` (`delivered`, or `stored`) has
   been written — so the customer's page can show the report as delivered, and is then
   disconnected too. A backend that fails the first attempt is retried 5 s later (the
   default schedule): the bound is then, in effect, "after the first attempt".

The customer leaving without a request (`customer-disconnected`) is tentative for
`disconnect_grace` seconds (default 3): a tab being closed sends LiveKit's leave *before* its
`sendBeacon` end request reaches the agent through the fallback server. An end request arriving
within the grace (any channel) is accepted with its own reason, initiator, request id and meta;
any other trigger (room deleted, worker shutdown, a timer, an error…) ends at once as usual;
when the grace runs out, `customer-disconnected` is accepted with LiveKit's DisconnectReason;
a customer who dropped without leaving (so the session is still running) and rejoins within
the grace simply goes on.
The room being deleted and the worker shutting the job down are tentative for
`shutdown_grace` seconds (default 1) in the same way, when nothing else is held: the fallback
server deletes the room *because* the agent did not acknowledge a customer's request in time
(a blocked event loop, a stopped process), and that request, already on its way, explains the
end better than the deletion it caused.
Meanwhile the state stays `active`, and RoomIO may already have closed the session
(`close_on_disconnect`): that close does not decide the reason; the report is built after it
is decided.

Where the work runs (see `endcall.lifecycle` for the job's own sequence and its bounds):

- an end EndCall starts (a request, the tool, a timer, `end()`) runs steps 1-6 before the job
  starts shutting down: the job shutdown is step 6 itself; step 7 then runs while the job
  runs `on_session_end`;
- an end that starts outside (worker shutdown, room deleted, the session closed by an error or
  by user code) runs them while the job runs `session.aclose()` (bounded at 60 s);
- `EndCall.on_session_end` (pass it to `rtc_session(on_session_end=...)`; the job gives it up
  to `session_end_timeout`, 300 s by default) waits for the end path, the room deletion and
  the in-process delivery, and sets `endcall.report=delivered` while the participant is still
  connected;
- without it, a job shutdown callback waits for them with what is left of the ~10 s before
  the supervisor kills the process; the job has already disconnected the agent from the room
  by then, so the deletion does not wait for the delivery.

What is not delivered in process stays in the outbox for a relay.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from livekit import rtc

from . import misuse
from .annotations import Annotations
from .attributes import AttributeWriter
from .channels import Channels
from .ending import DurableEnd
from .journal import Journal
from .lifecycle import JobShutdown, watch_job_shutdown
from .machine import (
    Channel,
    EndMachine,
    EndRecord,
    EndState,
    Trigger,
    Verdict,
    initiator_kind_for,
)
from .protocol import (
    ATTR_END_ID,
    ATTR_REASON,
    ATTR_REPORT,
    ATTR_REQUEST_ID,
    ATTR_STATE,
    DEFAULT_METHOD,
    EndAck,
    EndReason,
    EndRequest,
    Initiator,
    InitiatorKind,
    Origin,
    ProtocolError,
    is_valid_id,
    is_valid_reason,
)
from .report import build_draft, build_draft_async, build_report
from .silence import SilenceWatcher, silence_conflicts, user_away_timeout
from .timers import MaxDurationTimer
from .tool import (
    END_CALL_DESCRIPTION,
    END_CALL_NAME,
    GoodbyePlan,
    Goodbyes,
    capture_turn,
    make_end_tool,
    wait_speech,
    wait_turn,
)

__all__ = ["Allow", "EndCall", "ReportSink"]

logger = logging.getLogger("endcall")

Allow = Callable[[str, EndRequest], bool]
"""Custom authorization: `allow(caller_identity, request) -> bool` for RPC and data requests."""

#: the job's shutdown callbacks get ~10 s before the process is killed; keep a margin
SHUTDOWN_CALLBACK_BUDGET = 8.0
CHECKPOINT_INTERVAL = 30.0
#: drafts are rebuilt at most this often (seconds)
DRAFT_MIN_INTERVAL = 2.0
#: how long after a report's `endcall.report` update the writes may take before the room goes
ATTRIBUTE_SETTLE = 1.0
#: bound of the RoomService DeleteRoom call itself
DELETE_ROOM_TIMEOUT = 5.0
#: repeated requests update `endcall.request_id` at most this often (seconds)
REQUEST_ID_COALESCE = 0.02


class ReportSink(Protocol):
    """What EndCall needs from `endcall.pipeline.ReportPipeline`."""

    async def save_draft(self, end_id: str, body: bytes) -> None: ...

    async def store(self, end_id: str, body: bytes) -> bool: ...

    async def deliver(self, end_id: str, *, within: float | None = None) -> Any: ...

    async def aclose(self) -> None: ...


_INSTANCES: weakref.WeakKeyDictionary[Any, EndCall] = weakref.WeakKeyDictionary()


class EndCall:
    """Ends one AgentSession correctly, whatever ends it, and hands its report over once.

    Args:
        ctx: the job's `JobContext`.
        session: the `AgentSession` (start it before `end.start()`).
        webhook: where the report goes (`endcall.Webhook`); or pass `pipeline`.
        outbox: the durable outbox (default: SQLite at `ENDCALL_OUTBOX` / the user data dir).
        pipeline: a ready `ReportPipeline` (or anything with its methods), instead of
            `webhook` + `outbox`.
        max_duration: seconds after `start()` before the call ends (`exceeded-max-duration`).
        silence_timeout: seconds without customer speech, from `start()` or the end of the
            customer's last speech, before the call ends (`silence-timed-out`); independent
            of the session's `user_away_timeout` (see `endcall.silence`).
        goodbye: the words said before an agent or timer end; None lets the LLM phrase it
            (tool) or says nothing (timers). A mapping gives one per reason
            (`{"exceeded-max-duration": "Our time is up…", "*": "Goodbye!"}`; `"*"`: the
            reasons it does not name).
        tool_name, tool_description: the end tool's name (`end_call`) and description, as
            the agent's prompt refers to it.
        method: RPC method and data topic (`end_interview`).
        drain_timeout: bound of the drain (goodbye playout, running tool calls).
        transcript_flush_timeout: how long a pending user transcript may take to be final.
        close_timeout: bound of the wait for the session's `close` after `shutdown()`.
        interrupt_on_customer_end: interrupt the agent's speech when the customer ends.
        delete_room: delete the room at the end, after the report's delivery (bounded by
            `delete_room_after`), so every page disconnects.
        delete_room_after: the longest the room deletion waits, after the report is stored,
            for the in-process delivery and the `endcall.report` attribute (0: at once).
        disconnect_grace: seconds a customer leaving without a request stays tentative,
            waiting for an end request that explains it (a tab-close beacon through the
            fallback server); 0 ends with `customer-disconnected` at once.
        shutdown_grace: likewise for the room being deleted and the worker shutting the job
            down (`room-deleted`, `worker-shutdown`); 0 ends at once.
        allow: custom authorization for RPC/data requests (default: only the customer).
        checkpoint_interval: seconds between crash-draft checkpoints (at most 30).
        report_meta: the job's own fields for the report's `annotations` (e.g. a test id
            from the job metadata); JSON values, at most 4,096 bytes (`ValueError`). Add
            more later with `annotate()`.
    """

    def __init__(
        self,
        ctx: Any,
        session: Any,
        *,
        webhook: Any = None,
        outbox: Any = None,
        pipeline: ReportSink | None = None,
        max_duration: float | None = None,
        silence_timeout: float | None = None,
        goodbye: str | Mapping[str, str] | None = None,
        tool_name: str = END_CALL_NAME,
        tool_description: str = END_CALL_DESCRIPTION,
        method: str = DEFAULT_METHOD,
        drain_timeout: float = 10.0,
        transcript_flush_timeout: float = 2.0,
        close_timeout: float = 5.0,
        interrupt_on_customer_end: bool = True,
        delete_room: bool = True,
        delete_room_after: float = 5.0,
        disconnect_grace: float = 3.0,
        shutdown_grace: float = 1.0,
        allow: Allow | None = None,
        checkpoint_interval: float = CHECKPOINT_INTERVAL,
        report_meta: Mapping[str, Any] | None = None,
    ) -> None:
        if pipeline is None and webhook is None:
            raise ValueError("EndCall needs a webhook (or a pipeline) for the session report")
        for name, value in (
            ("drain_timeout", drain_timeout),
            ("transcript_flush_timeout", transcript_flush_timeout),
            ("close_timeout", close_timeout),
            ("delete_room_after", delete_room_after),
            ("disconnect_grace", disconnect_grace),
            ("shutdown_grace", shutdown_grace),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0")
        if not method or len(method) > 64:
            raise ValueError("method must be 1-64 characters")
        goodbyes = Goodbyes(goodbye)
        annotations = Annotations(report_meta)
        # (after the arguments are checked: a wrong argument says so, whatever else is wrong)
        if _INSTANCES.get(ctx) is not None:
            raise misuse.second_instance()
        self._ctx = ctx
        self._session = session
        self._own_pipeline = pipeline is None
        if pipeline is None:
            from .pipeline import ReportPipeline

            pipeline = ReportPipeline(webhook, outbox)
        self._pipe: ReportSink = pipeline
        self._webhook = webhook if webhook is not None else getattr(pipeline, "webhook", None)
        self._goodbye = goodbyes
        self._annotations = annotations
        self._tool_name = tool_name
        self._method = method
        self._drain_timeout = drain_timeout
        self._flush_timeout = transcript_flush_timeout
        self._close_timeout = close_timeout
        self._interrupt_on_customer_end = interrupt_on_customer_end
        self._delete_room = delete_room
        self._delete_room_after = delete_room_after
        self._grace = disconnect_grace
        self._shutdown_grace = shutdown_grace
        self._grace_handle: asyncio.TimerHandle | None = None
        self._grace_settled = asyncio.Event()
        self._room_gone = asyncio.Event()
        self._allow = allow
        self._checkpoint_interval = max(1.0, min(checkpoint_interval, CHECKPOINT_INTERVAL))
        # the ack's promise: the agent is gone (session closed, report stored, room deleted
        # when it deletes it) at most this long after the ack
        bound = drain_timeout + transcript_flush_timeout + close_timeout
        if delete_room:
            bound += delete_room_after + ATTRIBUTE_SETTLE
        drain_ms = round(bound * 1000)
        self._machine = EndMachine(drain_ms=drain_ms)
        self._journal = Journal(self._machine.end_id, self._room_name)
        self._max_duration = (
            MaxDurationTimer(max_duration, self._on_max_duration) if max_duration else None
        )
        self._silence = (
            SilenceWatcher(session, silence_timeout, self._on_silence) if silence_timeout else None
        )
        self._tool: Any = make_end_tool(self._on_tool, name=tool_name, description=tool_description)
        self._attrs: AttributeWriter | None = None
        self._channels: Channels | None = None
        self._started = False
        self._started_at = time.time()
        self._customer: str | None = None
        self._job_shutdown: JobShutdown | None = None
        self._room_disconnect: str | None = None
        self._close_reason: str | None = None
        self._closed = asyncio.Event()
        self._end_task: asyncio.Task[None] | None = None
        self._done: asyncio.Future[EndRecord] | None = None
        self._delivery_task: asyncio.Task[Any] | None = None
        self._room_task: asyncio.Task[None] | None = None
        self._delivery: Any = None
        self._stored: bool | None = None
        self._report: bytes | None = None
        self._shutdown_requested = False
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._draft_task: asyncio.Task[None] | None = None
        self._draft_dirty = False
        self._drafts_stopped = False
        self._interim = ""
        self._uncommitted: list[str] = []
        self._final_evt = asyncio.Event()
        self._end_info: dict[str, Any] = {}
        self._durable = DurableEnd()
        self._session_end_called = False
        _INSTANCES[ctx] = self
        try:  # here, not in start(): a job whose start() never ran still gets its report
            self._ctx.add_shutdown_callback(self._on_job_shutdown_callback)
        except Exception as e:
            logger.warning("endcall: could not add a job shutdown callback: %s", e)

    # ------------------------------------------------------------------ public API

    @property
    def tool(self) -> Any:
        """The end function tool for the LLM (`end_call`, or `tool_name`); add it to the
        agent's tools."""
        return self._tool

    @property
    def state(self) -> EndState:
        return self._machine.state

    @property
    def record(self) -> EndRecord:
        return self._machine.record

    @property
    def end_id(self) -> str:
        return self._machine.end_id

    @property
    def report(self) -> bytes | None:
        """The serialized `session.ended` report, once built."""
        return self._report

    @property
    def delivery(self) -> Any:
        """The `DeliveryOutcome` of the in-process delivery, once it finished."""
        return self._delivery

    async def start(self) -> None:
        """Register the channels, timers and listeners; set `endcall.state=active`."""
        if self._started:
            return
        self._started = True
        self._started_at = getattr(self._session, "_started_at", None) or time.time()
        self._done = asyncio.get_running_loop().create_future()
        room: rtc.Room = self._ctx.room
        self._attrs = AttributeWriter(room.local_participant)
        self._attrs.update({ATTR_STATE: EndState.ACTIVE.value})
        self._refresh_customer()
        self._channels = Channels(
            room, method=self._method, decide=self._decide, before_ack=self._durable.wait
        )
        self._channels.attach()
        room.on("participant_connected", self._on_participant_connected)
        room.on("participant_disconnected", self._on_participant_disconnected)
        room.on("disconnected", self._on_room_disconnected)
        self._session.on("close", self._on_session_close)
        self._session.on("conversation_item_added", self._on_item_added)
        self._session.on("user_input_transcribed", self._on_transcribed)
        if not watch_job_shutdown(self._ctx, self._on_job_shutdown):
            logger.debug("endcall: job shutdown future not found; using the session close event")
        await self._check_outbox()
        if self._max_duration is not None:
            self._max_duration.start()
        if self._silence is not None:
            for conflict in silence_conflicts(
                self._silence.seconds,
                max_duration=self._max_duration.seconds if self._max_duration else None,
                away_after=user_away_timeout(self._session),
            ):
                logger.warning("endcall: %s", conflict)
            self._silence.start()
        self._checkpoint_task = asyncio.create_task(self._checkpoints(), name="endcall_drafts")
        if getattr(self._session, "_started", True) is False:
            logger.warning("endcall: start() called on a session that is not running")

    async def end(
        self,
        reason: str | EndReason = EndReason.SERVER_ENDED_CALL,
        *,
        initiator: Initiator | InitiatorKind | None = None,
        meta: dict[str, Any] | None = None,
        request_id: str | None = None,
        goodbye: bool | str = False,
    ) -> EndAck:
        """End the session from code; the same path as every channel. Returns the ack.

        `initiator` is an `Initiator` or just its kind (default: the reason's usual kind).
        `goodbye=True` says the configured goodbye (for this reason) first, a string says
        that string.
        """
        reason = str(reason)
        if not is_valid_reason(reason):
            raise ValueError(f"invalid reason {reason!r}")
        if request_id is not None and not is_valid_id(request_id):
            raise ValueError("request_id must be 1-64 characters of [A-Za-z0-9_-]")
        if initiator is None:
            who = Initiator(kind=initiator_kind_for(reason))
        elif isinstance(initiator, Initiator):
            who = initiator
        else:
            who = Initiator(kind=initiator)
        say = goodbye if isinstance(goodbye, str) else (self._goodbye(reason) if goodbye else None)
        trigger = Trigger(
            reason=reason, initiator=who, channel="api", request_id=request_id, meta=meta
        )
        ack = self._submit(trigger, GoodbyePlan(say=say) if say else None).ack
        await self._durable.wait()
        return ack

    def annotate(self, **fields: Any) -> bool:
        """Add the job's own fields to the report's `annotations` (a later value for a key
        wins). Raises `ValueError` for non-JSON values or over 4,096 bytes in all. Returns
        False (and changes nothing) once the report is built: too late for it."""
        if self._report is not None:
            logger.warning("endcall: annotate(%s) after the report was built; ignored", fields)
            return False
        self._annotations.update(fields)
        self._schedule_draft()
        return True

    async def wait(self) -> EndRecord:
        """Wait until the report is stored and the job shutdown is requested."""
        if self._done is None:
            raise RuntimeError("EndCall.start() was not called")
        return await asyncio.shield(self._done)

    @staticmethod
    async def on_session_end(ctx: Any) -> None:
        """For `@server.rtc_session(on_session_end=EndCall.on_session_end)`: finish the end
        path and the in-process delivery (the job gives this hook up to
        `session_end_timeout`, 300 s by default)."""
        end = _INSTANCES.get(ctx)
        if end is None:
            logger.warning("endcall: on_session_end: no EndCall for this job")
            return
        end._session_end_called = True
        await end._finish_for_job(deadline=None)

    @staticmethod
    def wrap_session_end(
        fn: Callable[[Any], Awaitable[None]],
    ) -> Callable[[Any], Awaitable[None]]:
        """An `on_session_end` that runs EndCall's first, then yours; read the report with
        `EndCall.of(ctx).report` instead of building it again."""

        async def _on_session_end(ctx: Any) -> None:
            await EndCall.on_session_end(ctx)
            await fn(ctx)

        return _on_session_end

    @staticmethod
    def of(ctx: Any) -> EndCall | None:
        """The EndCall created for a job context, if any."""
        return _INSTANCES.get(ctx)

    # ------------------------------------------------------------------ decisions

    def _decide(
        self, request: EndRequest, *, origin: Origin, channel: Channel, caller: str | None
    ) -> EndAck:
        if origin == "client":
            if caller is None or not self._authorized(caller, request):
                # the channel logs it with the caller's identity (rate-limited)
                raise ProtocolError(
                    "forbidden", "only the customer may end this call", request_id=request.id
                )
            who = Initiator(kind="customer", identity=caller)
        else:
            kind = initiator_kind_for(request.reason)
            who = Initiator(
                kind="customer" if kind == "customer" else "server", identity=request.initiator
            )
        trigger = Trigger(
            reason=request.reason,
            initiator=who,
            channel=channel,
            request_id=request.id,
            meta=request.meta,
        )
        return self._submit(trigger, None).ack

    def _authorized(self, caller: str, request: EndRequest) -> bool:
        if self._allow is not None:
            try:
                return bool(self._allow(caller, request))
            except Exception:
                logger.exception("endcall: the allow() policy raised; request refused")
                return False
        customer = self._refresh_customer()
        if customer is not None:
            return caller == customer
        p = self._ctx.room.remote_participants.get(caller)
        return p is not None and p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD

    def _submit(self, trigger: Trigger, plan: GoodbyePlan | None) -> Verdict:
        verdict = self._machine.submit(trigger)
        ack = verdict.ack
        if verdict.accepted:
            rec = self._machine.record
            self._journal.ending(
                rec.reason, trigger.initiator.kind, trigger.channel, trigger.request_id
            )
            self._make_durable()
            if self._attrs is not None:
                self._attrs.update(
                    {
                        ATTR_STATE: EndState.ENDING.value,
                        ATTR_REASON: ack.reason,
                        ATTR_END_ID: ack.end_id,
                        ATTR_REQUEST_ID: ack.id,
                        ATTR_REPORT: "pending",
                    }
                )
            self._stop_timers()
            self._cancel_grace()
            self._end_task = asyncio.get_running_loop().create_task(
                self._end_path(trigger, plan), name="endcall_end_path"
            )
        else:
            if trigger.disconnect_reason:
                self._machine.note(disconnect_reason=trigger.disconnect_reason)
            if self._attrs is not None and trigger.request_id is not None:
                self._attrs.update({ATTR_REQUEST_ID: ack.id}, coalesce=REQUEST_ID_COALESCE)
        return verdict

    def _trigger(
        self,
        reason: str,
        kind: InitiatorKind,
        channel: Channel,
        *,
        identity: str | None = None,
        error: str | None = None,
        disconnect_reason: str | None = None,
        plan: GoodbyePlan | None = None,
    ) -> None:
        try:
            self._submit(
                Trigger(
                    reason=reason,
                    initiator=Initiator(kind=kind, identity=identity),
                    channel=channel,
                    error=error,
                    disconnect_reason=disconnect_reason,
                ),
                plan,
            )
        except Exception:
            logger.exception("endcall: failed to submit %s", reason)

    def _customer_left(
        self, identity: str | None, channel: Channel, disconnect_reason: str | None
    ) -> None:
        """The customer left without a request: tentative for `disconnect_grace` seconds."""
        trigger = Trigger(
            reason=EndReason.CUSTOMER_DISCONNECTED.value,
            initiator=Initiator(kind="customer", identity=identity),
            channel=channel,
            disconnect_reason=disconnect_reason,
        )
        if self._tentative(trigger, self._grace):
            logger.info(
                "endcall: the customer left (%s); waiting %.1fs for an end request explaining it",
                disconnect_reason or channel,
                self._grace,
            )

    def _tentative(self, trigger: Trigger, grace: float) -> bool:
        """Hold ``trigger`` for ``grace`` seconds (an end request arriving meanwhile wins);
        True when it is now held. With no grace it is submitted at once."""
        if grace <= 0:
            self._submit_safely(trigger)
            return False
        if not self._machine.hold(trigger):
            return False  # already holding one (its details were completed) or not active
        self._grace_settled.clear()
        self._grace_handle = asyncio.get_running_loop().call_later(grace, self._grace_over)
        return True

    def _system_end(
        self, reason: str, kind: InitiatorKind, channel: Channel, disconnect_reason: str | None
    ) -> None:
        """The room was deleted or the worker shuts the job down: tentative for
        `shutdown_grace` when nothing else is held, else at once (as any other trigger)."""
        trigger = Trigger(
            reason=reason,
            initiator=Initiator(kind=kind, identity=None),
            channel=channel,
            disconnect_reason=disconnect_reason,
        )
        if self._machine.held is not None:
            self._submit_safely(trigger)
        elif self._tentative(trigger, self._shutdown_grace):
            logger.info(
                "endcall: %s; waiting %.1fs for an end request already on its way",
                reason,
                self._shutdown_grace,
            )

    def _grace_over(self) -> None:
        self._grace_handle = None
        held = self._machine.take_held()
        if held is not None and self._machine.state is EndState.ACTIVE:
            self._submit_safely(held)
        self._grace_settled.set()

    def _cancel_grace(self) -> None:
        if self._grace_handle is not None:
            self._grace_handle.cancel()
            self._grace_handle = None
        self._grace_settled.set()

    def _submit_safely(self, trigger: Trigger) -> None:
        try:
            self._submit(trigger, None)
        except Exception:
            logger.exception("endcall: failed to submit %s", trigger.reason)

    # ------------------------------------------------------------------ triggers

    def _on_tool(self, ctx: Any) -> str | None:
        turn = capture_turn(ctx)
        if self._machine.state is not EndState.ACTIVE:
            if turn.reply_fut is not None:
                turn.reply_fut.cancel()
            return None
        goodbye = self._goodbye(EndReason.ASSISTANT_ENDED_CALL.value)
        say = None if turn.auto_reply else goodbye
        identity = None
        try:
            identity = self._ctx.room.local_participant.identity or None
        except Exception:
            pass
        self._trigger(
            EndReason.ASSISTANT_ENDED_CALL.value,
            "agent",
            "tool",
            identity=identity,
            plan=GoodbyePlan(turn=turn, say=say),
        )
        if turn.auto_reply:
            if goodbye:
                return f'Say exactly this goodbye to the user, nothing else: "{goodbye}"'
            return "say goodbye to the user"
        if goodbye:
            return None
        return "say goodbye to the user"

    def _on_max_duration(self) -> None:
        self._on_timer(EndReason.EXCEEDED_MAX_DURATION.value)

    def _on_silence(self) -> None:
        self._on_timer(EndReason.SILENCE_TIMED_OUT.value)

    def _on_timer(self, reason: str) -> None:
        say = self._goodbye(reason)
        self._trigger(reason, "system", "timer", plan=GoodbyePlan(say=say) if say else None)

    def _refresh_customer(self) -> str | None:
        try:
            linked = self._session.room_io.linked_participant
        except Exception:
            linked = None
        if linked is not None:
            self._customer = linked.identity
        return self._customer

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        held = self._machine.held
        if (
            held is not None
            and held.initiator.identity == participant.identity
            and not self._session_closing()
        ):
            # the customer dropped (no leave: RoomIO kept the session) and is back in time
            self._machine.take_held()
            self._cancel_grace()
            logger.info("endcall: the customer %s is back; the call goes on", participant.identity)
        # RoomIO links the customer in its own handler/task; look again a moment later
        loop = asyncio.get_running_loop()
        loop.call_soon(self._refresh_customer)
        loop.call_later(0.05, self._refresh_customer)

    def _close_on_disconnect(self) -> bool:
        try:
            return bool(self._session.room_io._options.close_on_disconnect)
        except Exception:
            return True

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        customer = self._customer
        if customer is None or participant.identity != customer:
            self._refresh_customer()
            return
        code = participant.disconnect_reason or rtc.DisconnectReason.UNKNOWN_REASON
        name = rtc.DisconnectReason.Name(code)
        if self._machine.state is not EndState.ACTIVE:
            self._machine.note(disconnect_reason=name)
            return
        if not self._close_on_disconnect():
            logger.info("endcall: the customer left (%s); close_on_disconnect=False", name)
            return
        if code == rtc.DisconnectReason.ROOM_DELETED:
            self._system_end(EndReason.ROOM_DELETED.value, "server", "room", name)
        else:
            self._customer_left(customer, "disconnect", name)

    def _on_room_disconnected(self, reason: Any = None) -> None:
        try:
            name = rtc.DisconnectReason.Name(reason or rtc.DisconnectReason.UNKNOWN_REASON)
        except Exception:
            name = str(reason)
        self._room_disconnect = name
        self._room_gone.set()
        if self._machine.state is not EndState.ACTIVE:
            return
        if reason == rtc.DisconnectReason.ROOM_DELETED:
            self._system_end(EndReason.ROOM_DELETED.value, "server", "room", name)
        else:
            self._trigger(
                EndReason.AGENT_ERROR.value,
                "system",
                "room",
                error=f"the agent was disconnected from the room ({name})",
                disconnect_reason=name,
            )

    def _on_job_shutdown(self, info: JobShutdown) -> None:
        self._job_shutdown = info
        self._end_info.setdefault("job_shutdown_reason", info.reason)
        if self._machine.state is not EndState.ACTIVE:
            return
        if info.user_initiated:
            if not self._shutdown_requested:
                self._trigger(EndReason.SERVER_ENDED_CALL.value, "server", "job")
        elif info.room_disconnected:
            if self._machine.held is None:
                # (when one is held, the room's own event already said why; its grace decides)
                self._on_room_disconnected(None)
        elif info.crashed:
            self._trigger(EndReason.AGENT_ERROR.value, "system", "job", error="job crashed")
        else:
            self._system_end(EndReason.WORKER_SHUTDOWN.value, "system", "job", None)

    def _on_session_close(self, ev: Any) -> None:
        reason = getattr(ev, "reason", None)
        self._close_reason = str(getattr(reason, "value", reason))
        self._closed.set()
        if self._machine.state is not EndState.ACTIVE:
            error = getattr(ev, "error", None)
            if error is not None:
                self._machine.note(error=_describe_error(error))
            return
        error = getattr(ev, "error", None)
        value = self._close_reason
        if value == "error" or error is not None:
            self._trigger(
                EndReason.AGENT_ERROR.value, "system", "session", error=_describe_error(error)
            )
        elif self._machine.held is not None and value != "participant_disconnected":
            # a tentative end (the room deleted, the worker shutting down, the customer gone)
            # is waiting out its grace; this close is its consequence and decides nothing
            return
        elif value == "participant_disconnected":
            # RoomIO closed the session because the customer left: that is no end request,
            # and it may still come (the grace); the close itself decides nothing more
            self._customer_left(self._customer, "session", None)
        elif value == "job_shutdown" or (
            self._job_shutdown is not None and self._job_shutdown.from_worker
        ):
            self._system_end(EndReason.WORKER_SHUTDOWN.value, "system", "session", None)
        else:
            # user code closed the session (session.shutdown()/aclose(), ctx.shutdown())
            self._trigger(EndReason.SERVER_ENDED_CALL.value, "server", "session")

    # ------------------------------------------------------------------ transcripts

    def _on_transcribed(self, ev: Any) -> None:
        text = (getattr(ev, "transcript", "") or "").strip()
        if getattr(ev, "is_final", False):
            self._interim = ""
            if text:
                self._uncommitted.append(text)
            self._final_evt.set()
        else:
            self._interim = text

    def _on_item_added(self, ev: Any) -> None:
        item = getattr(ev, "item", None)
        if getattr(item, "role", None) == "user":
            self._uncommitted.clear()
        self._refresh_customer()
        self._schedule_draft()

    async def _flush_transcripts(self) -> None:
        speaking = getattr(self._session, "user_state", None) == "speaking"
        if not (self._interim or speaking) or self._flush_timeout <= 0:
            return
        self._final_evt.clear()
        deadline = time.monotonic() + self._flush_timeout
        try:
            # ask the STT for its final transcript now (a flush, or trailing silence) and
            # commit the turn without a reply
            fut = self._session.commit_user_turn(
                transcript_timeout=self._flush_timeout,
                stt_flush_duration=min(2.0, self._flush_timeout),
                skip_reply=True,
            )
            await settle(fut, self._flush_timeout, cancel=False)
        except Exception as e:  # not running: wait for a final transcript below
            logger.debug("endcall: commit_user_turn: %r", e)
        while self._interim or getattr(self._session, "user_state", None) == "speaking":
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(self._final_evt.wait(), left)
            except asyncio.TimeoutError:
                break
            self._final_evt.clear()
            if not self._interim:
                break

    # ------------------------------------------------------------------ drafts

    def _schedule_draft(self) -> None:
        if self._drafts_stopped or not self._started:
            return
        if self._draft_task is not None and not self._draft_task.done():
            self._draft_dirty = True
            return
        self._draft_task = asyncio.get_running_loop().create_task(self._save_drafts())

    async def _save_drafts(self) -> None:
        while not self._drafts_stopped:
            self._draft_dirty = False
            try:
                body = await build_draft_async(
                    self.end_id,
                    ctx=self._ctx,
                    session=self._session,
                    room_name=self._room_name(),
                    started_at=self._started_at,
                    annotations=self._annotations.snapshot(),
                )
                await self._pipe.save_draft(self.end_id, body)
            except Exception:
                logger.exception("endcall: could not checkpoint the draft")
            if not self._draft_dirty:
                return
            await asyncio.sleep(DRAFT_MIN_INTERVAL)  # a burst of turns: one draft per interval

    async def _checkpoints(self) -> None:
        while not self._drafts_stopped:
            self._schedule_draft()
            await asyncio.sleep(self._checkpoint_interval)

    async def _stop_drafts(self) -> None:
        self._drafts_stopped = True
        if self._checkpoint_task is not None:
            self._checkpoint_task.cancel()
        if self._draft_task is not None and not self._draft_task.done():
            if not await settle(self._draft_task, 5.0, cancel=False):
                logger.warning("endcall: a draft checkpoint was still running at the end")

    # ------------------------------------------------------------------ misuse, durability

    async def _check_outbox(self) -> None:
        """An outbox that cannot be written is an error at start-up, not drafts silently
        skipped later (the call goes on: the report is then kept in memory and logged)."""
        check = getattr(self._pipe, "check", None)
        if check is None:
            return
        try:
            await check()
        except Exception as e:
            logger.error("endcall: %s", e)

    def _make_durable(self) -> None:
        """Write the accepted end to the outbox now; its acks wait for it (`endcall.ending`)."""
        self._durable.begin(self._pipe, self._machine.record, self._minimal_draft)
        if self._attrs is not None and self._durable.task is not None:
            self._attrs.hold_until(self._durable.task, self._durable.timeout)

    def _minimal_draft(self) -> bytes:
        return build_draft(
            self.end_id,
            ctx=self._ctx,
            session=None,
            room_name=self._room_name(),
            started_at=self._started_at,
        )

    def _start_late(self) -> asyncio.Future[EndRecord]:
        """The job ends and `start()` never ran: build and hand over the report anyway."""
        logger.error("endcall: %s", misuse.NOT_STARTED)
        self._started = True
        self._started_at = getattr(self._session, "_started_at", None) or self._started_at
        done: asyncio.Future[EndRecord] = asyncio.get_running_loop().create_future()
        self._done = done
        if not getattr(self._session, "_started", False):
            self._closed.set()  # not running (any more): nothing to drain or close
        else:
            self._session.on("close", self._on_session_close)
        self._trigger(EndReason.AGENT_ERROR.value, "system", "job", error=misuse.NOT_STARTED)
        return done

    # ------------------------------------------------------------------ the end path

    def _stop_timers(self) -> None:
        if self._max_duration is not None:
            self._max_duration.cancel()
        if self._silence is not None:
            self._silence.cancel()

    def _session_closing(self) -> bool:
        if self._closed.is_set():
            return True
        s = self._session
        return bool(getattr(s, "_closing", False) or getattr(s, "_closing_task", None))

    async def _drain(self, trigger: Trigger, plan: GoodbyePlan | None) -> None:
        session = self._session
        if trigger.initiator.kind == "customer" and self._interrupt_on_customer_end:
            try:
                await settle(session.interrupt(force=True), None, cancel=False)
            except Exception as e:  # not running, or uninterruptible speech
                logger.debug("endcall: interrupt failed: %s", e)
        if plan is not None:
            if plan.turn is not None:
                await wait_turn(plan.turn)
            if plan.say and not self._session_closing():
                handle = None
                try:
                    handle = session.say(plan.say, allow_interruptions=False)
                except Exception as e:
                    # e.g. a realtime model without a TTS: have the model say it
                    logger.debug("endcall: say() failed (%s); asking the model instead", e)
                    try:
                        handle = session.generate_reply(
                            instructions=f'Say exactly this to the user: "{plan.say}"',
                            allow_interruptions=False,
                        )
                    except Exception as e2:
                        logger.warning("endcall: could not say the goodbye: %s", e2)
                if handle is not None:
                    await wait_speech(handle)
        await self._wait_tools()

    async def _wait_tools(self) -> None:
        try:
            from livekit.agents.voice.tool_executor import _RunningTasks
        except ImportError:  # pragma: no cover - other livekit-agents versions
            return
        me = asyncio.current_task()
        tasks = [
            t.exe_task
            for t in list(_RunningTasks.get(self._session, {}).values())
            if not t.exe_task.done()
            and t.exe_task is not me
            and getattr(t.ctx.function_call, "name", "") != self._tool_name
        ]
        if tasks:
            await asyncio.wait(tasks)

    async def _end_path(self, trigger: Trigger, plan: GoodbyePlan | None) -> None:
        t0 = time.monotonic()
        drain_s = shutdown_s = 0.0
        try:
            if not self._session_closing():
                if not await settle(self._drain(trigger, plan), self._drain_timeout):
                    logger.warning("endcall: drain did not finish in %.1fs", self._drain_timeout)
                    self._end_info["drain_timed_out"] = True
                await settle(self._flush_transcripts(), self._flush_timeout + 1.0)
            drain_s = time.monotonic() - t0
            t1 = time.monotonic()
            if not self._closed.is_set():
                if not self._session_closing():
                    try:
                        self._session.shutdown(drain=False)
                    except Exception as e:
                        logger.warning("endcall: session.shutdown failed: %s", e)
                if not await settle(self._closed.wait(), self._close_timeout):
                    logger.warning(
                        "endcall: the session did not close within %.1fs; building the report"
                        " anyway",
                        self._close_timeout,
                    )
                    self._end_info["close_timed_out"] = True
            shutdown_s = time.monotonic() - t1
        except Exception:
            logger.exception("endcall: unexpected error while ending; building the report")
        finally:
            # whatever happened above (even a cancellation), the report is handed over once
            await asyncio.shield(self._hand_over(drain_s, shutdown_s))

    def _room_name(self) -> str:
        try:
            name = self._ctx.room.name or self._ctx.job.room.name
        except Exception:
            name = ""
        return name or "unknown"

    def _end_section(self, drain_s: float, shutdown_s: float) -> dict[str, Any]:
        rec = self._machine.record
        section: dict[str, Any] = {
            "channel": rec.channel,
            "requested_at": rec.requested_at,
            "acked_at": rec.acked_at,
            "drain_s": round(drain_s, 3),
            "shutdown_s": round(shutdown_s, 3),
            "disconnect_reason": rec.disconnect_reason,
            "error": rec.error,
            "close_reason": self._close_reason,
            "drain_ms": rec.drain_ms,
        }
        section.update(self._end_info)
        return section

    async def _hand_over(self, drain_s: float, shutdown_s: float) -> None:
        try:
            await self._stop_drafts()
            body = self._build_report(drain_s, shutdown_s)
            self._report = body
            self._stored = await self._pipe.store(self.end_id, body)
            if self._stored:
                self._journal.stored(getattr(self._pipe, "outbox", None))
            else:
                self._journal.not_stored()
        except Exception:
            logger.exception("endcall: the report could not be handed over")
        finally:
            if self._attrs is not None:
                self._attrs.update(
                    {
                        ATTR_STATE: EndState.ENDED.value,
                        ATTR_REPORT: "stored" if self._stored else "pending",
                    }
                )
            record = self._machine.finish()
            if self._report is not None:
                self._delivery_task = asyncio.get_running_loop().create_task(
                    self._deliver(), name="endcall_delivery"
                )
            self._request_job_shutdown(record.reason or "endcall")
            if self._delete_room:
                self._request_room_deletion()
            if self._done is not None and not self._done.done():
                self._done.set_result(record)

    def _build_report(self, drain_s: float, shutdown_s: float) -> bytes:
        rec = self._machine.record
        try:
            return build_report(
                rec,
                ctx=self._ctx,
                session=self._session,
                room_name=self._room_name(),
                started_at=self._started_at,
                end_section=self._end_section(drain_s, shutdown_s),
                flushed_transcripts=list(self._uncommitted),
                annotations=self._annotations.snapshot(),
            )
        except Exception as e:
            logger.exception("endcall: could not build the full report; sending a minimal one")
            return build_report(
                rec,
                ctx=None,
                session=None,
                room_name=self._room_name(),
                started_at=self._started_at,
                end_section={
                    **self._end_section(drain_s, shutdown_s),
                    "report_error": f"{type(e).__name__}: {e}",
                },
                annotations=self._annotations.snapshot(),
            )

    def _request_job_shutdown(self, reason: str) -> None:
        if self._shutdown_requested:
            return
        self._shutdown_requested = True
        try:
            self._ctx.shutdown(reason=reason)
        except Exception:
            logger.exception("endcall: ctx.shutdown failed")

    def _request_room_deletion(self) -> None:
        self._room_task = asyncio.get_running_loop().create_task(
            self._delete_room_when_reported(), name="endcall_delete"
        )

    async def _delete_room_when_reported(self) -> None:
        """Delete the room once the delivery finished (or `delete_room_after` passed, or the
        agent already left the room) and `endcall.report` was written, so the page can show
        the report delivered first."""
        deadline = time.monotonic() + self._delete_room_after
        task = self._delivery_task
        if task is not None and not task.done() and not self._room_gone.is_set():
            # the pipeline does not report single attempts: its `deliver` returns after the
            # first one when that succeeds (or is final); a retry waits for the bound
            gone = asyncio.ensure_future(self._room_gone.wait())
            try:
                await asyncio.wait(
                    {task, gone},
                    timeout=self._delete_room_after,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                gone.cancel()
        if self._attrs is not None and not self._room_gone.is_set():
            # let `endcall.state=ended` / `endcall.report` reach the others first
            await self._attrs.wait_idle(max(deadline - time.monotonic(), ATTRIBUTE_SETTLE))
        try:
            fut = self._ctx.delete_room()
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
        try:
            outcome = await self._pipe.deliver(self.end_id)
        except Exception as e:  # the pipeline never raises; a custom sink might
            logger.exception("endcall: delivery failed")
            outcome = None
            self._end_info["delivery_error"] = str(e)
        self._delivery = outcome
        delivered = bool(getattr(outcome, "delivered", False))
        await self._log_delivery(outcome, delivered)
        if self._attrs is not None:
            if delivered:
                if self._ctx.room.isconnected():
                    self._attrs.update({ATTR_REPORT: "delivered"})
            elif not self._stored:
                if self._ctx.room.isconnected():
                    self._attrs.update({ATTR_REPORT: "failed"})
        return outcome

    async def _log_delivery(self, outcome: Any, delivered: bool) -> None:
        attempts = getattr(outcome, "attempts", 0)
        status = getattr(outcome, "last_status", None)
        error = getattr(outcome, "last_error", None)
        if delivered:
            self._journal.delivered(attempts, status)
        elif getattr(outcome, "dead", False):
            self._journal.dead(attempts, status, error)
        elif self._stored:
            outbox = getattr(self._pipe, "outbox", None)
            next_at = None
            try:
                row = await asyncio.to_thread(outbox.get, self.end_id) if outbox else None
                next_at = getattr(row, "next_attempt_at", None)
            except Exception as e:
                logger.debug("endcall: could not read the outbox row: %s", e)
            self._journal.left_pending(outbox, next_at, error)

    async def _finish_for_job(self, *, deadline: float | None) -> None:
        """Wait for the end path and delivery; `deadline` is a `time.monotonic()` bound."""

        def left(default: float) -> float:
            if deadline is None:
                return default
            return max(0.0, deadline - time.monotonic())

        done = self._done if self._done is not None else self._start_late()
        if self._machine.held is not None and self._machine.state is EndState.ACTIVE:
            # a tentative end (a grace) is still waiting for a request: let it run out
            bound = max(self._grace, self._shutdown_grace) + 0.5
            await settle(self._grace_settled.wait(), left(bound))
        if self._machine.state is EndState.ACTIVE:
            info = self._job_shutdown
            if info is not None and info.from_worker:
                self._trigger(EndReason.WORKER_SHUTDOWN.value, "system", "job")
            else:
                self._trigger(EndReason.SERVER_ENDED_CALL.value, "server", "job")
        bound = self._drain_timeout + self._flush_timeout + self._close_timeout + 10.0
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
                    self.end_id,
                )
            if self._attrs is not None:
                await self._attrs.wait_idle(left(2.0))
        if self._own_pipeline and (task is None or task.done()):
            try:
                await self._pipe.aclose()
            except Exception:
                logger.exception("endcall: closing the report pipeline failed")

    async def _on_job_shutdown_callback(self, reason: str) -> None:
        deadline = time.monotonic() + SHUTDOWN_CALLBACK_BUDGET
        if not self._session_end_called:
            logger.error("endcall: %s", misuse.NO_SESSION_END)
        if self._job_shutdown is None:
            self._job_shutdown = JobShutdown(user_initiated=self._shutdown_requested, reason=reason)
        await self._finish_for_job(deadline=deadline)
        if self._channels is not None:
            self._channels.detach()
        if self._attrs is not None:
            self._attrs.close()


async def settle(aw: Awaitable[Any], timeout: float | None, *, cancel: bool = True) -> bool:
    """Wait for `aw` at most `timeout` seconds; True if it finished. Never raises what `aw`
    raises (not even its cancellation): a future of the session being cancelled under us must
    not take the end path down. With `cancel`, an unfinished `aw` is cancelled."""
    fut = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({fut}, timeout=timeout)
    if fut not in done:
        if cancel:
            fut.cancel()
        return False
    if not fut.cancelled() and fut.exception() is not None:
        logger.debug("endcall: %r failed: %r", aw, fut.exception())
    return True


def _describe_error(error: Any) -> str | None:
    if error is None:
        return None
    inner = getattr(error, "error", None)
    kind = getattr(error, "type", None) or type(error).__name__
    detail = inner if inner is not None else error
    return f"{kind}: {detail}"[:1000]
