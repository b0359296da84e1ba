"""`endcall demo`: every way an interview ends, run for real in a headless browser.

Starts on 127.0.0.1 (see :mod:`endcall.testing.stack`) the loopback LiveKit (hub, browser
bridge, RoomService Twirp double), the fallback server, the example receiver and the built
example page; for each scenario it starts the example interview agent (scripted models,
livekit-agents' real job runner on a loopback room, an embedded SQLite outbox), opens the page
in Debian's Chromium, plays the candidate, and reads the outcome from the page, the agent and
the receiver. Every row of the table comes from that run.

This is test tooling: it imports ``endcall.testing`` and needs a source checkout (the example
page, agent and receiver live in ``examples/``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import click

__all__ = [
    "SCENARIOS",
    "AgentRun",
    "Scenario",
    "ScenarioResult",
    "demo_command",
    "format_table",
    "run_demo",
    "serve_demo",
    "start_interview_agent",
]

logger = logging.getLogger("endcall.demo")

CANDIDATE_ANSWERS = (
    "I built the payments ledger at my last job: double-entry, idempotent writes, "
    "about two thousand requests a second.",
    "Alerts on error budgets, and a nightly reconciliation job that compared the ledger "
    "with the bank's files.",
    "Write it to a durable outbox before sending, sign it, and retry with the same id "
    "until the receiver says 2xx.",
)


@dataclass(frozen=True)
class Scenario:
    """One way an interview ends."""

    name: str
    title: str
    #: how many of the candidate's answers are given before the end
    answers: int = 1
    #: "click" (the candidate clicks End), "close" (the tab closes), "wait" (the agent or a
    #: timer ends it)
    action: str = "click"
    #: the LLM calls the end tool after the last answer
    agent_ends: bool = False
    max_duration: float | None = None
    silence_timeout: float | None = None
    rpc_disabled: bool = False
    agent_unreachable: bool = False
    receiver_down: float = 0.0
    expect_reason: str = ""


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "candidate-ends",
        "the candidate clicks End",
        answers=2,
        expect_reason="customer-ended-call",
    ),
    Scenario(
        "agent-ends",
        "the agent ends with a goodbye",
        answers=3,
        action="wait",
        agent_ends=True,
        expect_reason="assistant-ended-call",
    ),
    Scenario(
        "max-duration",
        "the interview reaches its maximum duration",
        answers=1,
        action="wait",
        max_duration=12.0,
        expect_reason="exceeded-max-duration",
    ),
    Scenario(
        "silence",
        "the candidate stays silent",
        answers=1,
        action="wait",
        silence_timeout=4.0,
        expect_reason="silence-timed-out",
    ),
    Scenario(
        "tab-closed",
        "the tab closes mid-interview",
        answers=1,
        action="close",
        expect_reason="customer-tab-closed",
    ),
    Scenario(
        "rpc-disabled",
        "RPC is disabled on the agent: data channel",
        answers=1,
        rpc_disabled=True,
        expect_reason="customer-ended-call",
    ),
    Scenario(
        "agent-unreachable",
        "the agent is unreachable: REST escalation",
        answers=1,
        agent_unreachable=True,
        expect_reason="room-deleted",
    ),
    Scenario(
        "receiver-down",
        "the receiver is down for 20 s, then up",
        answers=1,
        receiver_down=20.0,
        expect_reason="customer-ended-call",
    ),
)


@dataclass
class ScenarioResult:
    """One row of the demo's table (every field measured in the run)."""

    scenario: str
    channel: str | None = None
    ack_ms: float | None = None
    ended_reason: str | None = None
    delivered: bool = False
    attempts: int | None = None
    verified: bool | None = None
    end_id: str | None = None
    page: str | None = None
    screenshot: str | None = None
    expected_reason: str | None = None
    #: the channel the agent saw (the report's ``end.channel``)
    report_channel: str | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Delivered, verified (when checked), and no error in the run."""
        return self.delivered and self.verified is not False and self.error is None

    def row(self) -> dict[str, Any]:
        """The documented ``--json`` fields first, then details."""
        keys = ("scenario", "channel", "ack_ms", "ended_reason", "delivered", "attempts")
        out = {k: getattr(self, k) for k in keys}
        out["verified"] = self.verified
        out.update(
            {
                k: v
                for k, v in asdict(self).items()
                if k not in out and v is not None and k != "seconds"
            }
        )
        out["seconds"] = round(self.seconds, 1)
        return out


# ----------------------------------------------------------------------------- the agent


@dataclass
class AgentRun:
    """One interview agent job and the handles the scenario needs."""

    job: Any
    stt: Any
    end: Any = None
    session: Any = None
    started: asyncio.Event = field(default_factory=asyncio.Event)


async def start_interview_agent(stack: Any, room: str, scenario: Scenario) -> AgentRun:
    """Start the example interview agent on ``room`` with scripted models."""
    from endcall.outbox.sqlite import SqliteOutbox
    from endcall.testing.agentjob import LoopbackJob
    from endcall.testing.stack import load_example
    from endcall.webhook import Webhook

    example = load_example("interview_agent")
    webhook = Webhook(url=stack.webhook_url, secret=stack.webhook_secret, in_process_window=60.0)
    scripted = example.scripted_models(agent_ends=scenario.agent_ends)
    run = AgentRun(job=None, stt=scripted.stt)

    async def entrypoint(ctx: Any) -> None:
        options: dict[str, Any] = {
            "webhook": webhook,
            "outbox": SqliteOutbox(stack.outbox_path),
        }
        if scenario.max_duration is not None:
            options["max_duration"] = scenario.max_duration
        if scenario.silence_timeout is not None:
            options["silence_timeout"] = scenario.silence_timeout
        session, end = await example.run_interview(ctx, models=scripted, **options)
        run.session, run.end = session, end
        run.started.set()

    run.job = await LoopbackJob.start(
        stack.hub,
        room,
        entrypoint,
        on_session_end=example.on_session_end,
        agent_identity=f"interviewer-{secrets.token_hex(3)}",
        agent_name="interview-agent",
        delete_room=stack.delete_room,
    )

    def _answer(packet: Any) -> None:
        # the page's answer box stands in for the candidate's speech: feed the scripted STT
        if packet.topic != "demo.answer":
            return
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            text = json.loads(packet.data)["text"]
            if isinstance(text, str) and text.strip():
                run.stt.say(text.strip())

    run.job.room.on("data_received", _answer)

    await asyncio.wait_for(run.started.wait(), 20)
    if scenario.rpc_disabled:
        run.job.room.local_participant.unregister_rpc_method("end_interview")
    return run


# ----------------------------------------------------------------------------- scenarios


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
    result = ScenarioResult(scenario.name, expected_reason=scenario.expect_reason or None)
    room = f"demo-{scenario.name}-{secrets.token_hex(3)}"
    identity = f"candidate-{index}"
    page = f"p{index}"
    started = time.monotonic()
    if scenario.receiver_down and stack.receiver is not None:
        stack.receiver.down_for(scenario.receiver_down)
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
        if scenario.agent_unreachable:
            run.job.partition()
        if scenario.action == "click":
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
        await run.job.finished(150)
        await _collect_report(stack, room, result, run)
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
            run.job.worker_shutdown("demo scenario over")
            with contextlib.suppress(Exception):
                await run.job.finished(60)
        if stack.receiver is not None:
            stack.receiver.up()
        result.seconds = time.monotonic() - started
    return result


def _example() -> Any:
    from endcall.testing.stack import load_example

    return load_example("interview_agent")


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
            result.attempts = stored.attempts
            result.ended_reason = stored.ended_reason
            body = stored.body
            if len(mine) > 1:
                result.error = f"{len(mine)} reports for one interview"
    if body is None and end_id is not None:
        from endcall.outbox.sqlite import SqliteOutbox

        outbox = SqliteOutbox(stack.outbox_path)
        try:
            record = outbox.get(end_id)
        finally:
            outbox.close()
        if record is not None:
            result.attempts = record.attempts
            result.delivered = record.status == "delivered"
            body = record.body
    if body is not None:
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            doc = json.loads(body)
            result.ended_reason = result.ended_reason or doc.get("ended_reason")
            channel = (doc.get("end") or {}).get("channel")
            if isinstance(channel, str):
                result.report_channel = channel


# ----------------------------------------------------------------------------- output


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)


def format_table(results: list[ScenarioResult]) -> str:
    header = ("scenario", "channel", "ack ms", "ended_reason", "delivered", "attempts", "verified")
    rows = [
        (
            r.scenario,
            _fmt(r.channel),
            _fmt(r.ack_ms),
            _fmt(r.ended_reason),
            _fmt(r.delivered),
            _fmt(r.attempts),
            _fmt(r.verified),
        )
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry points


ProgressFn = Callable[[str], None]


async def _with_stack(
    output_dir: Path,
    webhook_url: str | None,
    webhook_secret: str | None,
    body: Callable[[Any], Awaitable[Any]],
    **stack_options: Any,
) -> Any:
    from endcall.testing.stack import LocalStack

    stack = LocalStack(
        output_dir, webhook_url=webhook_url, webhook_secret=webhook_secret, **stack_options
    )
    await stack.start()
    try:
        return await body(stack)
    finally:
        await stack.stop()


async def run_demo(
    scenarios: list[Scenario],
    *,
    output_dir: Path,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    progress: ProgressFn | None = None,
    on_result: Callable[[ScenarioResult], None] | None = None,
) -> list[ScenarioResult]:
    """Run ``scenarios`` one after the other; returns one result per scenario."""
    from endcall.testing.browser import BrowserDriver
    from endcall.testing.stack import examples_dir

    say = progress or (lambda _msg: None)
    shots = output_dir / "screenshots"

    async def body(stack: Any) -> list[ScenarioResult]:
        results: list[ScenarioResult] = []
        async with BrowserDriver(examples_dir() / "web") as browser:
            for i, scenario in enumerate(scenarios, 1):
                say(f"[{i}/{len(scenarios)}] {scenario.name}: {scenario.title} …")
                result = await _run_scenario(stack, browser, scenario, i, shots)
                results.append(result)
                status = "ok" if result.ok else "FAILED"
                detail = f" ({result.error})" if result.error else ""
                if result.ended_reason != scenario.expect_reason:
                    detail += (
                        f" [ended_reason {result.ended_reason}, expected {scenario.expect_reason}]"
                    )
                say(
                    f"[{i}/{len(scenarios)}] {scenario.name}: {status} in "
                    f"{result.seconds:.1f} s{detail}"
                )
                if on_result is not None:
                    on_result(result)
            console = output_dir / "browser-console.log"
            console.write_text("\n".join(browser.console) + "\n", encoding="utf-8")
        return results

    results: list[ScenarioResult] = await _with_stack(output_dir, webhook_url, webhook_secret, body)
    return results


async def serve_demo(
    *,
    output_dir: Path,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    out: TextIO = sys.stdout,
) -> None:
    """Keep the page up for a person: each page load starts a fresh interview agent."""
    from endcall.testing.stack import SessionRequest

    interactive = Scenario(
        "interactive", "a person", answers=0, max_duration=1800.0, silence_timeout=120.0
    )

    async def body(stack: Any) -> None:
        async def on_session(request: SessionRequest) -> None:
            run = await start_interview_agent(stack, request.room, interactive)
            logger.info("agent started in %s (%s)", request.room, run.job.agent_identity)

        stack.on_session = on_session
        print(f"open {stack.site_url}/ in a browser (Ctrl-C to stop)", file=out, flush=True)
        if stack.receiver_url:
            print(
                f"reports: {stack.receiver_url}/reports  (stored in {stack.reports_path})",
                file=out,
                flush=True,
            )
        await asyncio.Event().wait()

    await _with_stack(output_dir, webhook_url, webhook_secret, body, stay_for_report_ms=120_000)


# ----------------------------------------------------------------------------- the command


def _setup_logging(output_dir: Path) -> Path:
    """Library logs go to a file; the terminal gets the progress lines and the table."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "demo.log"
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for noisy in ("livekit", "livekit.agents", "httpx", "httpcore", "asyncio", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path


@click.command("demo")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per scenario on stdout.")
@click.option("--serve", "serve_page", is_flag=True, help="Keep the page up for a person.")
@click.option("--webhook-url", default=None, help="Send the reports to this receiver instead.")
@click.option("--webhook-secret", default=None, help="whsec_... secret for --webhook-url.")
@click.option(
    "--scenario",
    "names",
    multiple=True,
    type=click.Choice([s.name for s in SCENARIOS]),
    help="Run only this scenario (repeatable).",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("test-output/demo"),
    show_default=True,
    help="Reports, outbox, screenshots and the log go here.",
)
def demo_command(
    as_json: bool,
    serve_page: bool,
    webhook_url: str | None,
    webhook_secret: str | None,
    names: tuple[str, ...],
    output: Path,
) -> None:
    """Run every way an interview ends through a real browser, and show the reports.

    Starts on 127.0.0.1 the loopback LiveKit, the example interview agent (scripted models),
    the fallback server, the example receiver and the example page; each scenario is played
    in headless Chromium (/usr/bin/chromium). Needs a source checkout with the page built
    (make demo does it).
    """
    if webhook_url and not webhook_secret:
        raise click.UsageError("--webhook-url needs --webhook-secret (the reports are signed)")
    if webhook_secret:
        from ..webhook import validate_secret

        try:
            validate_secret(webhook_secret)
        except ValueError as e:
            raise click.UsageError(str(e)) from e
    problem = _preflight(need_browser=not serve_page)
    if problem:
        raise click.ClickException(problem)
    output = output.resolve()
    log_path = _setup_logging(output)
    # start from empty stores so the table and the listing are this run's
    for stale in ("reports.sqlite", "outbox.sqlite"):
        for suffix in ("", "-wal", "-shm"):
            (output / (stale + suffix)).unlink(missing_ok=True)
    if serve_page:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                serve_demo(
                    output_dir=output, webhook_url=webhook_url, webhook_secret=webhook_secret
                )
            )
        return
    chosen = [s for s in SCENARIOS if not names or s.name in names]
    err = sys.stderr

    def progress(line: str) -> None:
        print(line, file=err, flush=True)

    def emit(result: ScenarioResult) -> None:
        if as_json:
            click.echo(json.dumps(result.row()))

    results = asyncio.run(
        run_demo(
            chosen,
            output_dir=output,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            progress=progress,
            on_result=emit,
        )
    )
    if not as_json:
        click.echo()
        click.echo(format_table(results))
        click.echo()
        if webhook_url:
            click.echo(f"reports sent to {webhook_url}; outbox: {output / 'outbox.sqlite'}")
        else:
            click.echo(f"reports: {output / 'reports.sqlite'} (SQLite, table reports)")
            click.echo(f"outbox:  {output / 'outbox.sqlite'}  (endcall outbox --outbox ... list)")
        click.echo(f"screenshots: {output / 'screenshots'}   logs: {log_path}, browser-console.log")
    if not all(r.ok for r in results):
        raise SystemExit(1)


def _preflight(*, need_browser: bool) -> str | None:
    """A clear message when something the demo needs is missing, else None."""
    try:
        from endcall.testing.stack import examples_dir

        examples = examples_dir()
    except FileNotFoundError as e:
        return str(e)
    if not (examples / "interview_agent.py").is_file():
        return "examples/interview_agent.py is missing"
    if not (examples / "web" / "dist" / "index.html").is_file():
        return "the example page is not built: cd examples/web && npm ci && npm run build"
    if need_browser:
        from endcall.testing.browser import browser_unavailable

        return browser_unavailable(examples / "web")
    return None
