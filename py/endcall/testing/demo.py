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
from typing import Any, Protocol, TextIO

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
    #: where the loopback double ends differently (it drops what a partitioned agent misses;
    #: a real stopped process reads it when it runs again)
    expect_reason_loopback: str | None = None

    def expected(self, *, loopback: bool) -> str:
        if loopback and self.expect_reason_loopback is not None:
            return self.expect_reason_loopback
        return self.expect_reason


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
        # counted from the start or the last answer: the greeting and the first question
        # (about 5 s) must fit, then the silence after the answer ends it
        silence_timeout=10.0,
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
        # the hung agent runs again after the server deleted the room, and reads the
        # candidate's request (the server channel) before the deletion: the customer ended it
        expect_reason="customer-ended-call",
        expect_reason_loopback="room-deleted",
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
    #: which LiveKit it ran on: "livekit-server 1.13.5", "external" (LIVEKIT_URL) or "loopback"
    server: str | None = None
    #: the candidate's last answer is in the report's transcript (None: no answer was given)
    last_words: bool | None = None
    seconds: float = 0.0
    error: str | None = None
    transcript: list[str] | None = field(default=None, repr=False)
    #: wall clock (``time.time()``) just before End was clicked, and when the receiver stored
    #: the report (for ``bench/end_to_report.py``; not in ``row()``)
    clicked_at: float | None = field(default=None, repr=False)
    report_at: float | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """Delivered, verified (when checked), with the expected reason and the candidate's
        last words, and no error in the run."""
        return (
            self.delivered
            and self.verified is not False
            and self.error is None
            and self.last_words is not False
            and (self.expected_reason is None or self.ended_reason == self.expected_reason)
        )

    def row(self) -> dict[str, Any]:
        """The documented ``--json`` fields first, then details."""
        keys = ("scenario", "channel", "ack_ms", "ended_reason", "delivered", "attempts")
        out = {k: getattr(self, k) for k in keys}
        out["verified"] = self.verified
        out["server"] = self.server
        out.update(
            {
                k: v
                for k, v in asdict(self).items()
                if k not in out
                and v is not None
                and k not in ("seconds", "transcript", "clicked_at", "report_at")
            }
        )
        out["seconds"] = round(self.seconds, 1)
        return out


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
            channel = (doc.get("end") or {}).get("channel")
            if isinstance(channel, str):
                result.report_channel = channel


# ----------------------------------------------------------------------------- output


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


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)


def format_table(results: list[ScenarioResult]) -> str:
    """The demo's table; its first line names the server the scenarios ran on."""
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
    servers = sorted({r.server for r in results if r.server})
    lines = [f"server: {', '.join(servers) or 'unknown'}", ""]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
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
    *,
    loopback: bool = False,
    **stack_options: Any,
) -> Any:
    from endcall.testing.stack import LocalStack

    stack: Any
    if loopback:
        stack = LocalStack(
            output_dir, webhook_url=webhook_url, webhook_secret=webhook_secret, **stack_options
        )
    else:
        from endcall.testing.realstack import RealStack

        stack = RealStack(
            output_dir, webhook_url=webhook_url, webhook_secret=webhook_secret, **stack_options
        )
    await stack.start()
    try:
        return await body(stack)
    finally:
        await stack.stop()


def server_name(stack: Any) -> str:
    return str(getattr(stack, "server_name", "loopback"))


def candidate_voice(output_dir: Path) -> Path | None:
    """A WAV for the browser's fake microphone (espeak-ng saying an answer), or None when
    espeak-ng is not installed (the microphone then plays Chromium's beep)."""
    import shutil
    import subprocess

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        return None
    path = output_dir / "candidate.wav"
    if not path.exists():
        output_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [espeak, "-w", str(path), CANDIDATE_ANSWERS[0]],
            check=True,
            capture_output=True,
            timeout=60,
        )
    return path


async def run_demo(
    scenarios: list[Scenario],
    *,
    output_dir: Path,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    progress: ProgressFn | None = None,
    on_result: Callable[[ScenarioResult], None] | None = None,
    loopback: bool = False,
) -> list[ScenarioResult]:
    """Run ``scenarios`` one after the other; returns one result per scenario.

    On a real livekit-server (started here inside ``scripts/in-netns``, or the one
    ``LIVEKIT_URL`` names) unless ``loopback``."""
    from endcall.testing.browser import BrowserDriver
    from endcall.testing.stack import examples_dir

    say = progress or (lambda _msg: None)
    shots = output_dir / "screenshots"

    async def body(stack: Any) -> list[ScenarioResult]:
        results: list[ScenarioResult] = []
        voice = None if loopback else candidate_voice(output_dir)
        say(f"server: {server_name(stack)}")
        async with BrowserDriver(examples_dir() / "web", fake_audio=voice) as browser:
            for i, scenario in enumerate(scenarios, 1):
                say(f"[{i}/{len(scenarios)}] {scenario.name}: {scenario.title} …")
                result = await _run_scenario(stack, browser, scenario, i, shots)
                result.server = server_name(stack)
                results.append(result)
                status = "ok" if result.ok else "FAILED"
                detail = f" ({result.error})" if result.error else ""
                if result.ended_reason != result.expected_reason:
                    detail += (
                        f" [ended_reason {result.ended_reason}, expected {result.expected_reason}]"
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

    results: list[ScenarioResult] = await _with_stack(
        output_dir, webhook_url, webhook_secret, body, loopback=loopback
    )
    return results


async def serve_demo(
    *,
    output_dir: Path,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    out: TextIO = sys.stdout,
    loopback: bool = False,
) -> None:
    """Keep the page up for a person: each page load starts a fresh interview agent."""
    from endcall.testing.stack import SessionRequest

    interactive = Scenario(
        "interactive", "a person", answers=0, max_duration=1800.0, silence_timeout=120.0
    )

    async def body(stack: Any) -> None:
        async def on_session(request: SessionRequest) -> None:
            await start_interview_agent(stack, request.room, interactive)
            logger.info("agent started for %s", request.room)

        stack.on_session = on_session
        print(f"open {stack.site_url}/ in a browser (Ctrl-C to stop)", file=out, flush=True)
        if stack.receiver_url:
            print(
                f"reports: {stack.receiver_url}/reports  (stored in {stack.reports_path})",
                file=out,
                flush=True,
            )
        await asyncio.Event().wait()

    await _with_stack(
        output_dir,
        webhook_url,
        webhook_secret,
        body,
        loopback=loopback,
        stay_for_report_ms=120_000,
    )


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
@click.option(
    "--loopback",
    is_flag=True,
    help="Use endcall.testing's loopback double instead of a real livekit-server.",
)
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
    loopback: bool,
    webhook_url: str | None,
    webhook_secret: str | None,
    names: tuple[str, ...],
    output: Path,
) -> None:
    """Run every way an interview ends through a real browser, and show the reports.

    Starts a real livekit-server (built by `make livekit-server`; run inside scripts/in-netns,
    as `make demo` does) — or uses the one LIVEKIT_URL/LIVEKIT_API_KEY/LIVEKIT_API_SECRET name,
    or with --loopback endcall.testing's double — the example interview agent as a real worker
    (scripted models), the fallback server, the example receiver and the example page; each
    scenario is played in headless Chromium (/usr/bin/chromium). Needs a source checkout with
    the page built (make demo does it).
    """
    if webhook_url and not webhook_secret:
        raise click.UsageError("--webhook-url needs --webhook-secret (the reports are signed)")
    if webhook_secret:
        from endcall.reports.webhook import validate_secret

        try:
            validate_secret(webhook_secret)
        except ValueError as e:
            raise click.UsageError(str(e)) from e
    problem = _preflight(need_browser=not serve_page, loopback=loopback)
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
                    output_dir=output,
                    webhook_url=webhook_url,
                    webhook_secret=webhook_secret,
                    loopback=loopback,
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
            loopback=loopback,
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


def _preflight(*, need_browser: bool, loopback: bool = True) -> str | None:
    """A clear message when something the demo needs is missing, else None."""
    if not loopback:
        from endcall.testing.livekit_server import (
            ServerUnavailable,
            external_server,
            find_binary,
            node_ip,
        )

        if external_server() is None:
            try:
                find_binary()
            except ServerUnavailable as e:
                return str(e)
            if node_ip() is None:
                return (
                    "run the demo inside a test network namespace: scripts/in-netns endcall demo "
                    "(make demo does it), set LIVEKIT_URL/LIVEKIT_API_KEY/LIVEKIT_API_SECRET, "
                    "or use --loopback"
                )
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
