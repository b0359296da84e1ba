"""`EndCall`: one end state machine for every way a session ends, then drain and shut down.

```python
end = EndCall(ctx, session, webhook=Webhook(url, secret), max_duration=1800,
              silence_timeout=60, goodbye="Thank you for your time. Goodbye!")
await session.start(room=ctx.room, agent=InterviewAgent(tools=[end.tool]))
await end.start()
```
and `@server.rtc_session(..., on_session_end=EndCall.on_session_end)`.

`EndCall` is the facade: it wires the machine (`endcall.agent.end_machine`), the channels
(`endcall.agent.channels`), the timers (`endcall.agent.timers`, `endcall.agent.silence`), the end
tool (`endcall.agent.end_tool`) and the parts below, which share one `endcall.agent.call.Call`.
Every trigger goes through `endcall.agent.decisions` to the machine; room, job and session events
become triggers in `endcall.agent.room_signals`; the customer's presence and the graces are
`endcall.agent.customer`; crash drafts are `endcall.agent.checkpoints`.

The end path (one background task, started by the first accepted trigger; the ack is returned
before it starts, so ack latency never includes the drain):

1. attributes `endcall.state=ending`, `reason`, `end_id`, `request_id`, `report=pending`, and
   the accepted end written to the outbox (`endcall.agent.decisions`, `endcall.agent.durable_end`);
2. drain, bounded by `drain_timeout` (`endcall.agent.drain`): a customer end interrupts the agent's
   speech (`interrupt_on_customer_end`) and says no goodbye; the tool, `max_duration` and
   `silence_timeout` let the goodbye play out in full; running tool calls get to finish;
3. user transcripts (`endcall.agent.transcript`): an interim transcript still pending gets
   `transcript_flush_timeout` to become final; final transcripts not yet committed as a user
   turn are added to the report;
4. `session.shutdown()` and a wait for its `close` event (bounded by `close_timeout`;
   `endcall.agent.end_path` from here on);
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
`disconnect_grace` seconds (default 3; `endcall.agent.customer`): a tab being closed sends LiveKit's
leave *before* its `sendBeacon` end request reaches the agent through the fallback server. An
end request arriving within the grace (any channel) is accepted with its own reason,
initiator, request id and meta; any other trigger (room deleted, worker shutdown, a timer, an
error…) ends at once as usual; when the grace runs out, `customer-disconnected` is accepted
with LiveKit's DisconnectReason; a customer who dropped without leaving (so the session is
still running) and rejoins within the grace simply goes on.
The room being deleted and the worker shutting the job down are tentative for
`shutdown_grace` seconds (default 1) in the same way, when nothing else is held: the fallback
server deletes the room *because* the agent did not acknowledge a customer's request in time
(a blocked event loop, a stopped process), and that request, already on its way, explains the
end better than the deletion it caused.
Meanwhile the state stays `active`, and RoomIO may already have closed the session
(`close_on_disconnect`): that close does not decide the reason; the report is built after it
is decided.

Where the work runs (see `endcall.agent.job_lifecycle` for the job's own sequence and its bounds,
and `endcall.agent.job_hooks` for what the job's hooks wait for):

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
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from endcall.agent import misuse
from endcall.agent.agent_ends import AgentEnds
from endcall.agent.annotations import Annotations
from endcall.agent.attributes import AttributeWriter
from endcall.agent.call import Call
from endcall.agent.channels import Channels
from endcall.agent.checkpoints import CHECKPOINT_INTERVAL, Checkpoints
from endcall.agent.customer import Presence
from endcall.agent.decisions import Allow, Decisions, trigger_from_code
from endcall.agent.durable_end import DurableEnd
from endcall.agent.end_machine import EndMachine, EndRecord, EndState, Trigger
from endcall.agent.end_path import EndPath, promised_seconds
from endcall.agent.end_tool import (
    END_CALL_DESCRIPTION,
    END_CALL_NAME,
    GoodbyePlan,
    Goodbyes,
    make_end_tool,
)
from endcall.agent.job_hooks import JobHooks
from endcall.agent.job_lifecycle import watch_job_shutdown
from endcall.agent.prewarm import draft_scope
from endcall.agent.room_signals import Signals
from endcall.agent.timers import CallTimers
from endcall.agent.transcript import Transcript
from endcall.protocol import (
    ATTR_ERROR,
    ATTR_STATE,
    DEFAULT_METHOD,
    EndAck,
    EndReason,
    Initiator,
    InitiatorKind,
)

__all__ = ["Allow", "EndCall", "ReportSink"]

logger = logging.getLogger("endcall")


def _room_sid(ctx: Any) -> str | None:
    try:
        return str(ctx.job.room.sid) or None
    except Exception:
        return None


def _agent_identity(ctx: Any) -> str | None:
    """The agent participant's identity: the connected room's, else the job token's (known
    before it connects)."""
    try:
        if identity := str(ctx.room.local_participant.identity):
            return identity
    except Exception:
        pass
    try:
        return str(ctx.token_claims().identity) or None
    except Exception:
        return None


class ReportSink(Protocol):
    """What EndCall needs from `endcall.reports.pipeline.ReportPipeline`."""

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
            of the session's `user_away_timeout` (see `endcall.agent.silence`).
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
            more later with `annotate()`. A plain mapping counts as the agent's code
            (`annotations_source: "code"`); pass `endcall.job_config(...).report_meta` (a
            `ReportMeta`) as it is, so the report says which fields nobody signed.
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

        misuse.check_arguments(
            has_sink=pipeline is not None or webhook is not None,
            method=method,
            drain_timeout=drain_timeout,
            transcript_flush_timeout=transcript_flush_timeout,
            close_timeout=close_timeout,
            delete_room_after=delete_room_after,
            disconnect_grace=disconnect_grace,
            shutdown_grace=shutdown_grace,
        )
        goodbyes = Goodbyes(goodbye)
        annotations = Annotations(report_meta)
        # (after the arguments are checked: a wrong argument says so, whatever else is wrong)
        if _INSTANCES.get(ctx) is not None:
            raise misuse.second_instance()
        own_pipeline = pipeline is None
        if pipeline is None:
            from endcall.reports.pipeline import ReportPipeline

            pipeline = ReportPipeline(webhook, outbox)
        self._pipe: ReportSink = pipeline
        self._goodbye = goodbyes
        self._annotations = annotations
        self._method = method
        promise = promised_seconds(
            drain_timeout,
            transcript_flush_timeout,
            close_timeout,
            delete_room_after if delete_room else None,
        )
        self._machine = EndMachine(drain_ms=round(promise * 1000))
        scope = getattr(pipeline, "scope", None)
        if callable(scope):  # the draft belongs to this room: relays may take it over early
            # once LiveKit says the agent left
            scope(self._machine.end_id, draft_scope(_room_sid(ctx), _agent_identity(ctx)))
        self._call = call = Call(ctx, session, self._machine)
        if annotations.config_refused:  # what `endcall.job_config` refused, for the backend
            call.end_info["config_refused"] = list(annotations.config_refused)
        self._durable = DurableEnd()
        self._transcript = Transcript(session, transcript_flush_timeout)
        self._checkpoints = Checkpoints(call, pipeline, annotations, checkpoint_interval)
        self._path = EndPath(
            call,
            pipeline,
            transcript=self._transcript,
            checkpoints=self._checkpoints,
            annotations=annotations,
            webhook=webhook if webhook is not None else getattr(pipeline, "webhook", None),
            own_sink=own_pipeline,
            tool_name=tool_name,
            drain_timeout=drain_timeout,
            close_timeout=close_timeout,
            interrupt_on_customer_end=interrupt_on_customer_end,
            delete_room=delete_room,
            delete_room_after=delete_room_after,
        )
        self._decisions = Decisions(
            call,
            sink=pipeline,
            durable=self._durable,
            allow=allow,
            customer=lambda: self._presence.refresh(),
            minimal_draft=self._checkpoints.minimal_draft,
            on_accepted=self._accepted,
        )
        self._presence = Presence(
            call,
            self._decisions.submit_safely,
            disconnect_grace=disconnect_grace,
            shutdown_grace=shutdown_grace,
        )
        self._signals = Signals(call, self._decisions, self._presence)
        self._agent_ends = AgentEnds(call, self._decisions, goodbyes)
        self._hooks = JobHooks(
            call,
            self._path,
            presence=self._presence,
            signals=self._signals,
            decisions=self._decisions,
            channels=lambda: self._channels,
        )
        ends = self._agent_ends
        self._timers = CallTimers(
            session,
            max_duration=max_duration,
            silence_timeout=silence_timeout,
            on_max_duration=ends.on_max_duration,
            on_silence=ends.on_silence,
        )
        self._tool: Any = make_end_tool(ends.on_tool, name=tool_name, description=tool_description)
        self._channels: Channels | None = None
        _INSTANCES[ctx] = self
        try:  # here, not in start(): a job whose start() never ran still gets its report
            ctx.add_shutdown_callback(self._hooks.on_shutdown_callback)
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
        return self._path.report

    @property
    def delivery(self) -> Any:
        """The `DeliveryOutcome` of the in-process delivery, once it finished."""
        return self._path.delivery

    async def start(self) -> None:
        """Register the channels, timers and listeners; set `endcall.state=active`."""
        call = self._call
        if call.started:
            return
        call.started = True
        call.started_at = getattr(call.session, "_started_at", None) or time.time()
        self._path.begin()
        room = call.ctx.room
        call.attrs = AttributeWriter(room.local_participant)
        call.attrs.update({ATTR_STATE: EndState.ACTIVE.value})
        self._presence.watch_link()
        self._channels = Channels(
            room,
            method=self._method,
            decide=self._decisions.decide,
            before_ack=self._durable.wait,
            refuse=lambda error: call.set_attributes({ATTR_ERROR: error}),
        )
        self._channels.attach()
        room.on("participant_connected", self._presence.on_participant_connected)
        room.on("participant_disconnected", self._presence.on_participant_disconnected)
        room.on("disconnected", self._signals.on_room_disconnected)
        call.session.on("close", self._signals.on_session_close)
        call.session.on("conversation_item_added", self._on_item_added)
        call.session.on("user_input_transcribed", self._transcript.on_transcribed)
        if not watch_job_shutdown(call.ctx, self._signals.on_job_shutdown):
            logger.debug("endcall: job shutdown future not found; using the session close event")
        await misuse.check_outbox(self._pipe)
        self._timers.start()
        self._checkpoints.start()
        if getattr(call.session, "_started", True) is False:
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
        trigger = trigger_from_code(reason, initiator=initiator, request_id=request_id, meta=meta)
        say = goodbye if isinstance(goodbye, str) else (self._goodbye(reason) if goodbye else None)
        ack = self._decisions.submit(trigger, GoodbyePlan(say=say) if say else None).ack
        await self._durable.wait()
        return ack

    def annotate(self, **fields: Any) -> bool:
        """Add the job's own fields to the report's `annotations` (a later value for a key
        wins). Raises `ValueError` for non-JSON values or over 4,096 bytes in all. Returns
        False (and changes nothing) once the report is built: too late for it."""
        if self._path.report is not None:
            logger.warning("endcall: annotate(%s) after the report was built; ignored", fields)
            return False
        self._annotations.update(fields)
        self._checkpoints.schedule()
        return True

    async def wait(self) -> EndRecord:
        """Wait until the report is stored and the job shutdown is requested."""
        if self._path.done is None:
            raise RuntimeError("EndCall.start() was not called")
        return await asyncio.shield(self._path.done)

    @staticmethod
    async def on_session_end(ctx: Any) -> None:
        """For `@server.rtc_session(on_session_end=EndCall.on_session_end)`: finish the end
        path and the in-process delivery (the job gives this hook up to
        `session_end_timeout`, 300 s by default)."""
        end = _INSTANCES.get(ctx)
        if end is None:
            logger.warning("endcall: on_session_end: no EndCall for this job")
            return
        await end._hooks.on_session_end()

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

    # ------------------------------------------------------------------ wiring

    def _accepted(self, trigger: Trigger, plan: GoodbyePlan | None) -> None:
        self._timers.cancel()
        self._presence.cancel_grace()
        self._path.start(trigger, plan)

    def _on_item_added(self, ev: Any) -> None:
        self._transcript.on_item_added(ev)
        self._presence.refresh()
        self._checkpoints.schedule()
