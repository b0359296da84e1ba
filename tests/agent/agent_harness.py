"""Test harness: a real AgentSession + EndCall inside livekit-agents' own job shutdown sequence.

`Job` runs the agent with `endcall.testing.agentjob.LoopbackJob`: livekit-agents'
`_JobProc` on a `LoopbackRoom` (the entrypoint task; the shutdown future resolved by
`ctx.shutdown()`, the room's `disconnected` event or a worker ShutdownRequest,
`Job.worker_shutdown()`; the real `_shutdown_job` sequence: 15 s for the entrypoint,
`session.aclose()`, `on_session_end`, ShuttingDown, `room.disconnect()`, shutdown callbacks).

The report goes through the real `ReportPipeline` (SQLite outbox in a temp dir) to an
`httpx.MockTransport` receiver that records every POST.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from livekit import rtc
from livekit.agents import Agent, AgentSession, JobContext

from endcall import EndCall
from endcall.reports.outbox.sqlite import SqliteOutbox
from endcall.reports.pipeline import ReportPipeline
from endcall.reports.webhook import Webhook
from endcall.testing import LoopbackRoom, LoopbackServer, ScriptedLLM, ScriptedSTT, TimedTTS
from endcall.testing.agentjob import LoopbackJob

AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
ROOM = "interview-1"
AGENT_ID = "agent-1"
CUSTOMER = "cand-1"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TURN_HANDLING: Any = {
    "turn_detection": "stt",
    "endpointing": {"min_delay": 0.05, "max_delay": 0.5},
    "preemptive_generation": {"enabled": False},
}


class CountingPipeline(ReportPipeline):
    """The real pipeline, counting what EndCall hands over."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stored: list[tuple[str, bytes]] = []
        self.drafts: list[tuple[str, bytes]] = []

    async def save_draft(self, end_id: str, body: bytes) -> None:
        self.drafts.append((end_id, body))
        await super().save_draft(end_id, body)

    async def store(self, end_id: str, body: bytes) -> bool:
        self.stored.append((end_id, body))
        return await super().store(end_id, body)


@dataclass
class Receiver:
    """The backend's webhook endpoint (an httpx.MockTransport handler)."""

    status: int = 200
    requests: list[httpx.Request] = field(default_factory=list)
    gate: asyncio.Event | None = None
    """When set, requests wait for it (a slow backend)."""

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if self.gate is not None:
            await self.gate.wait()
        self.requests.append(request)
        return httpx.Response(self.status)

    def reports(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


@dataclass
class Job:
    """One agent job on a loopback room, run by livekit-agents' `_JobProc` (`LoopbackJob`)."""

    hub: LoopbackServer
    agent_room: LoopbackRoom
    customer: LoopbackRoom
    stt: ScriptedSTT
    llm: ScriptedLLM
    tts: TimedTTS
    receiver: Receiver
    pipeline: CountingPipeline
    outbox: SqliteOutbox
    runner: LoopbackJob = field(init=False)
    session: AgentSession | None = None
    end: EndCall | None = None
    agent: Agent | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    events: list[tuple[str, Any]] = field(default_factory=list)
    attr_history: list[dict[str, str]] = field(default_factory=list)
    attrs_seen: dict[str, str] = field(default_factory=dict)

    @property
    def ctx(self) -> JobContext:
        return self.runner.ctx

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self.runner.task

    @property
    def shutdown_calls(self) -> list[str]:
        """The reasons `ctx.shutdown()` was called with, in order."""
        return self.runner.shutdown_reasons

    @property
    def deleted_rooms(self) -> list[str]:
        return self.runner.deleted_rooms

    def worker_shutdown(self, reason: str = "worker draining") -> None:
        """What `_read_ipc_task` does on a ShutdownRequest from the worker."""
        self.runner.worker_shutdown(reason)

    async def finished(self, timeout: float = 30.0) -> None:
        await self.runner.finished(timeout)

    def agent_attrs(self) -> dict[str, str]:
        """The agent's attributes as the server (and every other participant) sees them."""
        try:
            info = self.hub.get_participant(ROOM, AGENT_ID)
        except LookupError:
            return dict(self._last_attrs)
        self._last_attrs = dict(info.attributes)
        return dict(info.attributes)

    _last_attrs: dict[str, str] = field(default_factory=dict)


async def start_job(
    tmp_path: Path,
    *,
    endcall_kwargs: dict[str, Any] | None = None,
    llm_script: list[Any] | None = None,
    tts_duration: Callable[[str], float] | float | None = None,
    user_away_timeout: float | None = 15.0,
    with_session_end: bool = True,
    receiver_status: int = 200,
    receiver_gate: asyncio.Event | None = None,
    delivery_window: float = 5.0,
    extra_customers: tuple[str, ...] = (),
    agent_tools: list[Any] | None = None,
    session_kwargs: dict[str, Any] | None = None,
    on_started: Callable[[Job], Awaitable[None]] | None = None,
    entry: str = "normal",
    pipeline_cls: type[CountingPipeline] | None = None,
    outbox_setup: Callable[[SqliteOutbox], None] | None = None,
) -> Job:
    """``entry``: ``"normal"``; ``"no_start"`` (the entrypoint forgets ``end.start()``);
    ``"raise"`` (it raises right after ``session.start``, before ``end.start()``)."""
    hub = LoopbackServer()
    agent_room = await hub.connect(ROOM, AGENT_ID, kind=AGENT)
    customer = await hub.connect(ROOM, CUSTOMER)
    for identity in extra_customers:
        await hub.connect(ROOM, identity)
    stt = ScriptedSTT()
    llm = ScriptedLLM(list(llm_script or []))
    tts = TimedTTS(duration=tts_duration if tts_duration is not None else 0.2)
    receiver = Receiver(status=receiver_status, gate=receiver_gate)
    webhook = Webhook(
        url="https://backend.test/session/end", secret=SECRET, in_process_window=delivery_window
    )
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    if outbox_setup is not None:
        outbox_setup(outbox)
    pipeline = (pipeline_cls or CountingPipeline)(
        webhook, outbox, transport=httpx.MockTransport(receiver.handler)
    )

    async def entrypoint(ctx: JobContext) -> None:
        session: AgentSession = AgentSession(
            stt=stt,
            llm=llm,
            tts=tts,
            vad=None,
            user_away_timeout=user_away_timeout,
            turn_handling=TURN_HANDLING,
            **(session_kwargs or {}),
        )
        for name in ("close", "conversation_item_added", "speech_created", "error"):
            session.on(name, lambda ev, name=name: job.events.append((name, ev)))
        end = EndCall(ctx, session, pipeline=pipeline, **(endcall_kwargs or {}))
        agent = Agent(
            instructions="You are an interviewer.", tools=[end.tool, *(agent_tools or [])]
        )
        job.session, job.end, job.agent = session, end, agent
        await session.start(agent=agent, room=ctx.room)
        if entry == "raise":
            job.started.set()
            raise RuntimeError("the entrypoint failed after session.start")
        if entry == "normal":
            await end.start()
        job.started.set()

    job = Job(hub, agent_room, customer, stt, llm, tts, receiver, pipeline, outbox)

    def _on_attrs(changed: dict[str, str], participant: rtc.Participant) -> None:
        if participant.identity == AGENT_ID:
            job.attr_history.append(dict(changed))
            job.attrs_seen.update(changed)

    customer.on("participant_attributes_changed", _on_attrs)
    job.runner = await LoopbackJob.start(
        hub,
        ROOM,
        entrypoint,
        room=agent_room,
        agent_name="interview-agent",
        on_session_end=EndCall.on_session_end if with_session_end else None,
    )
    await asyncio.wait_for(job.started.wait(), 10)
    await hub.settle()
    if on_started is not None:
        await on_started(job)
    return job


async def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not pred():  # noqa: ASYNC110 - polling a plain predicate
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def rpc_end(
    job: Job, payload: str, *, caller: LoopbackRoom | None = None, method: str = "end_interview"
) -> str:
    room = caller or job.customer
    return await room.local_participant.perform_rpc(
        destination_identity=AGENT_ID, method=method, payload=payload, response_timeout=5.0
    )


def request(rid: str, reason: str = "customer-ended-call", **extra: Any) -> str:
    return json.dumps({"type": "end.request", "v": 1, "id": rid, "reason": reason, **extra})


async def data_end(
    job: Job,
    payload: str | bytes,
    *,
    caller: LoopbackRoom | None = None,
    timeout: float = 5.0,
    method: str = "end_interview",
) -> dict[str, Any]:
    """Send a data-channel request and wait for the answer on `<method>.ack`."""
    room = caller or job.customer
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[dict[str, Any]] = loop.create_future()

    def on_data(packet: rtc.DataPacket) -> None:
        if packet.topic == f"{method}.ack" and not fut.done():
            fut.set_result(json.loads(packet.data))

    room.on("data_received", on_data)
    try:
        await room.local_participant.publish_data(
            payload, reliable=True, destination_identities=[AGENT_ID], topic=method
        )
        return await asyncio.wait_for(fut, timeout)
    finally:
        room.off("data_received", on_data)
