"""How `endcall demo` plays one scenario: start the agent, drive the page, collect the report.

:func:`start_interview_agent` makes the example interview agent take a room (a worker
dispatched by the real livekit-server, or a :class:`~endcall.testing.agentjob.LoopbackJob`
on the loopback); :func:`_run_scenario` plays the candidate in the browser page, ends the
interview the scenario's way and fills a :class:`ScenarioResult` from the page, the agent and
the receiver (or the outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from endcall.testing._demo_results import ScenarioResult
from endcall.testing._demo_scenarios import CANDIDATE_ANSWERS, Scenario

__all__ = ["AgentHandle", "AgentRun", "scenario_metadata", "start_interview_agent", "user_lines"]

logger = logging.getLogger("endcall.demo")


# ----------------------------------------------------------------------------- the agent


@dataclass
class AgentRun:
    """One interview agent job and the handles the scenario needs: ``job`` is an
    :class:`AgentHandle`; ``end``/``session`` are known only for an in-process (loopback) job."""

    job: AgentHandle
    end: Any = None
    session: Any = None


class _LoopbackHandle:
    """The loopback job behind the :class:`AgentHandle` calls the scenarios make."""

    def __init__(self, job: Any) -> None:
        self.job = job

    async def partition(self) -> None:
        self.job.partition()

    def heal(self) -> None:
        self.job.heal()

    @property
    def done(self) -> bool:
        return bool(self.job.done)

    async def finished(self, timeout: float) -> None:
        await self.job.finished(timeout)

    async def end_now(self) -> None:
        self.job.worker_shutdown("demo scenario over")
        await self.job.finished(60)


class AgentHandle(Protocol):
    """What a scenario does to its agent job (`_LoopbackHandle`, or `RealJob` on the real
    server)."""

    async def partition(self) -> None: ...

    def heal(self) -> None: ...

    @property
    def done(self) -> bool: ...

    async def finished(self, timeout: float) -> None: ...

    async def end_now(self) -> None: ...


def _on_real_server(stack: Any) -> bool:
    from endcall.testing.realstack import RealStack

    return isinstance(stack, RealStack)


def scenario_metadata(scenario: Scenario) -> dict[str, Any]:
    """The job metadata the example agent reads its settings from (`ScriptedSettings`)."""
    settings: dict[str, Any] = {
        "agent_ends": scenario.agent_ends,
        "rpc_disabled": scenario.rpc_disabled,
    }
    if scenario.max_duration is not None:
        settings["max_duration"] = scenario.max_duration
    if scenario.silence_timeout is not None:
        settings["silence_timeout"] = scenario.silence_timeout
    return {"scenario": settings}


async def start_interview_agent(stack: Any, room: str, scenario: Scenario) -> AgentRun:
    """Make the example interview agent (scripted models) take ``room``: on the real server,
    its worker is dispatched when the page joins; on the loopback it starts here."""
    if _on_real_server(stack):
        stack.prepare(room, scenario_metadata(scenario))
        return AgentRun(job=stack.job(room))

    from endcall.reports.outbox.sqlite import SqliteOutbox
    from endcall.reports.webhook import Webhook
    from endcall.testing.agentjob import LoopbackJob

    example = _example()
    webhook = Webhook(url=stack.webhook_url, secret=stack.webhook_secret, in_process_window=60.0)
    settings = example.ScriptedSettings.from_metadata(json.dumps(scenario_metadata(scenario)))
    started: dict[str, Any] = {}
    ready = asyncio.Event()

    async def entrypoint(ctx: Any) -> None:
        started["session"], started["end"] = await example.run_scripted(
            ctx, settings, webhook=webhook, outbox=SqliteOutbox(stack.outbox_path)
        )
        ready.set()

    job = await LoopbackJob.start(
        stack.hub,
        room,
        entrypoint,
        on_session_end=example.on_session_end,
        agent_identity=f"interviewer-{secrets.token_hex(3)}",
        agent_name="interview-agent",
        delete_room=stack.delete_room,
    )
    await asyncio.wait_for(ready.wait(), 20)
    return AgentRun(_LoopbackHandle(job), end=started["end"], session=started["session"])


# ----------------------------------------------------------------------------- the page


async def _page_outcome(browser: Any, page: str) -> dict[str, Any] | None:
    raw = await browser.command(
        "eval",
        page=page,
        expression="document.querySelector('[data-testid=ack]')?.dataset.outcome ?? null",
    )
    if not raw:
        return None
    value: dict[str, Any] = json.loads(raw)
    return value


async def _run_scenario(
    stack: Any, browser: Any, scenario: Scenario, index: int, shots: Path
) -> ScenarioResult:
    expected = scenario.expected(loopback=not _on_real_server(stack))
    result = ScenarioResult(scenario.name, expected_reason=expected or None)
    room = f"demo-{scenario.name}-{secrets.token_hex(3)}"
    identity = f"candidate-{index}"
    page = f"p{index}"
    started = time.monotonic()
    run = await start_interview_agent(stack, room, scenario)
    try:
        await browser.open(page, stack.page_url(room, identity))
        await browser.wait_text(page, "connection", "^connected", 15)
        markers = list(_example().QUESTION_MARKERS)
        for i in range(scenario.answers):
            # the question has been said in full and the interviewer listens: answer it
            await browser.wait_text(page, "transcript", markers[i], 30)
            await browser.wait_text(page, "agent-state", "listening", 30)
            await browser.fill(page, "answer-input", CANDIDATE_ANSWERS[i])
            await browser.click(page, "answer-send")
        if scenario.answers < len(markers) and not scenario.agent_ends:
            await browser.wait_text(page, "transcript", markers[scenario.answers], 30)
            await browser.wait_text(page, "agent-state", "listening", 30)
        if scenario.receiver_down and stack.receiver is not None:
            # down from just before the end, however long the interview took to get here
            stack.receiver.down_for(scenario.receiver_down)
        if scenario.agent_unreachable:
            await run.job.partition()
        if scenario.action == "click":
            result.clicked_at = time.time()
            await browser.click(page, "end-button")
            await browser.wait_text(page, "ack", "Acknowledged|Not acknowledged", 20)
            outcome = await _page_outcome(browser, page)
            if outcome:
                logger.info("page outcome: %s", outcome)
                result.channel = outcome.get("via")
                result.ack_ms = round(float(outcome.get("elapsedMs", 0.0)), 1)
            await browser.wait_text(page, "connection", "disconnected", 90)
            await browser.screenshot(page, shots / f"{scenario.name}.png")
        elif scenario.action == "close":
            await browser.screenshot(page, shots / f"{scenario.name}.png")
            await browser.close_page(page)
            page = ""
            result.channel = "beacon"
        else:
            await browser.wait_text(page, "agent-ended", ".", 60)
            result.page = await browser.text(page, "agent-ended")
            await browser.wait_text(page, "connection", "disconnected", 90)
            await browser.screenshot(page, shots / f"{scenario.name}.png")
        result.screenshot = str(shots / f"{scenario.name}.png")
        if scenario.agent_unreachable:
            # the page has given up on the agent: let it run again, to find its room gone
            run.job.heal()
        await run.job.finished(150)
        await _collect_report(stack, room, result, run)
        if scenario.answers and result.transcript is not None:
            last = CANDIDATE_ANSWERS[scenario.answers - 1]
            result.last_words = any(last in line for line in result.transcript)
        if result.channel is None:
            result.channel = result.report_channel
        elif result.report_channel and result.report_channel != result.channel:
            # the page's first ack came over one channel, the agent took the end on another
            result.channel = f"{result.channel} (agent: {result.report_channel})"
    except Exception as e:
        result.error = f"{type(e).__name__}: {e}"
        with contextlib.suppress(Exception):
            if page:
                await browser.screenshot(page, shots / f"{scenario.name}-failed.png")
                result.screenshot = str(shots / f"{scenario.name}-failed.png")
    finally:
        if page:
            with contextlib.suppress(Exception):
                await browser.close_page(page)
        run.job.heal()
        if not run.job.done:
            with contextlib.suppress(Exception):
                await run.job.end_now()
        if stack.receiver is not None:
            stack.receiver.up()
        result.seconds = time.monotonic() - started
    return result


def _example() -> Any:
    from endcall.testing.stack import load_example

    return load_example("interview_agent")


# ----------------------------------------------------------------------------- the report


async def _collect_report(stack: Any, room: str, result: ScenarioResult, run: AgentRun) -> None:
    """Fill the report columns from the receiver (or the outbox for an external one)."""
    end_id = run.end.end_id if run.end is not None else None
    result.end_id = end_id
    body: bytes | None = None
    if stack.receiver is not None:
        try:
            reports = await stack.receiver.wait_for(
                lambda rs: any(r.room == room for r in rs), timeout=90.0
            )
        except TimeoutError:
            reports = stack.receiver.reports()
        mine = [r for r in reports if r.room == room]
        if mine:
            stored = mine[0]
            result.end_id = stored.webhook_id
            result.delivered = True
            result.verified = stored.verified
            result.report_at = stored.received_at
            result.attempts = stored.attempts
            result.ended_reason = stored.ended_reason
            body = stored.body
            if len(mine) > 1:
                result.error = f"{len(mine)} reports for one interview"
    if body is None:
        record = await _outbox_record(stack, room, end_id)
        if record is not None:
            result.end_id = record.end_id
            result.attempts = record.attempts
            result.delivered = record.status == "delivered"
            body = record.body
    if body is not None:
        with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
            doc = json.loads(body)
            result.ended_reason = result.ended_reason or doc.get("ended_reason")
            result.transcript = user_lines(doc)
            end = doc.get("end") or {}
            channel = end.get("channel")
            if isinstance(channel, str):
                result.report_channel = channel
            requested = end.get("requested_at")
            if isinstance(requested, int | float) and not isinstance(requested, bool):
                result.requested_at = float(requested)


async def _outbox_record(stack: Any, room: str, end_id: str | None) -> Any:
    """The outbox row of ``room``'s report (by ``end_id`` when known, else by room name),
    waiting up to 90 s for it to be delivered."""
    from endcall.reports.outbox.sqlite import SqliteOutbox

    def find() -> Any:
        outbox = SqliteOutbox(stack.outbox_path)
        try:
            if end_id is not None:
                return outbox.get(end_id)
            for record in outbox.records(limit=1000):
                with contextlib.suppress(ValueError, AttributeError, TypeError):
                    if json.loads(record.body)["room"]["name"] == room:
                        return record
            return None
        finally:
            outbox.close()

    record = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        record = await asyncio.to_thread(find)
        if record is not None and record.status in ("delivered", "dead"):
            break
        await asyncio.sleep(0.5)
    return record


def user_lines(doc: dict[str, Any]) -> list[str]:
    """What the candidate said, from a report's chat history."""
    items = doc["session"]["chat_history"]["items"]
    return [
        " ".join(str(c) for c in item["content"])
        for item in items
        if item.get("type") == "message" and item.get("role") == "user"
    ]
