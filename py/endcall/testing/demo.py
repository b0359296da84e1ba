"""`endcall demo`: every way an interview ends, run for real in a headless browser.

Starts on 127.0.0.1 (see :mod:`endcall.testing.stack`) the loopback LiveKit (hub, browser
bridge, RoomService Twirp double), the fallback server, the example receiver and the built
example page; for each scenario it starts the example interview agent (scripted models,
livekit-agents' real job runner on a loopback room, an embedded SQLite outbox), opens the page
in Debian's Chromium, plays the candidate, and reads the outcome from the page, the agent and
the receiver. Every row of the table comes from that run.

This is test tooling: it imports ``endcall.testing`` and needs a source checkout (the example
page, agent and receiver live in ``examples/``).

The parts: the scenarios (``_demo_scenarios``), playing one of them (``_demo_runner``), the
result rows and the table (``_demo_results``); here, the entry points (:func:`run_demo`,
:func:`serve_demo`) and the ``endcall demo`` command. Every name the parts define for other
code is importable from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

import click

from endcall.testing._demo_results import ScenarioResult, format_table
from endcall.testing._demo_runner import AgentHandle as AgentHandle
from endcall.testing._demo_runner import AgentRun, _run_scenario, start_interview_agent
from endcall.testing._demo_runner import scenario_metadata as scenario_metadata
from endcall.testing._demo_runner import user_lines as user_lines
from endcall.testing._demo_scenarios import CANDIDATE_ANSWERS, SCENARIOS, Scenario

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


# ----------------------------------------------------------------------------- entry points


ProgressFn = Callable[[str], None]


async def _with_stack(
    output_dir: Path,
    webhook_url: str | None,
    webhook_secret: str | None,
    body: Callable[[Any], Awaitable[Any]],
    *,
    loopback: bool = False,
    agent: str = "python",
    **stack_options: Any,
) -> Any:
    from endcall.testing.stack import LocalStack

    stack: Any
    if loopback:
        if agent != "python":
            raise ValueError("the loopback runs the Python example agent only")
        stack = LocalStack(
            output_dir, webhook_url=webhook_url, webhook_secret=webhook_secret, **stack_options
        )
    else:
        from endcall.testing.node_agent import real_stack

        # the Python example's worker, or the Node one (endcall.testing.node_agent)
        stack = real_stack(
            agent,
            output_dir,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            **stack_options,
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
    agent: str = "python",
) -> list[ScenarioResult]:
    """Run ``scenarios`` one after the other; returns one result per scenario.

    On a real livekit-server (started here inside ``scripts/in-netns``, or the one
    ``LIVEKIT_URL`` names) unless ``loopback``; ``agent``: the example agent the worker runs,
    ``python`` (examples/interview_agent.py) or ``node`` (examples/node, real server only)."""
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
        output_dir, webhook_url, webhook_secret, body, loopback=loopback, agent=agent
    )
    return results


async def serve_demo(
    *,
    output_dir: Path,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    out: TextIO = sys.stdout,
    loopback: bool = False,
    agent: str = "python",
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
        agent=agent,
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
@click.option(
    "--agent",
    type=click.Choice(["python", "node"]),
    default="python",
    show_default=True,
    help="The example agent the worker runs: examples/interview_agent.py, or examples/node "
    "(@livekit/agents for Node with endcall-agent; real livekit-server only).",
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
    agent: str,
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
    the page built (make demo does it). --agent node runs the Node example (examples/node,
    built with `cd examples/node && npm ci && npm run build`) as the worker instead.
    """
    if loopback and agent != "python":
        raise click.UsageError("--agent node runs on a real livekit-server only (not --loopback)")
    if webhook_url and not webhook_secret:
        raise click.UsageError("--webhook-url needs --webhook-secret (the reports are signed)")
    if webhook_secret:
        from endcall.reports.webhook import validate_secret

        try:
            validate_secret(webhook_secret)
        except ValueError as e:
            raise click.UsageError(str(e)) from e
    problem = _preflight(need_browser=not serve_page, loopback=loopback, agent=agent)
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
                    agent=agent,
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
            agent=agent,
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


def _preflight(*, need_browser: bool, loopback: bool = True, agent: str = "python") -> str | None:
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
    if agent == "node":
        from endcall.testing.node_agent import node_agent_unavailable

        problem = node_agent_unavailable()
        if problem:
            return problem
    if not (examples / "web" / "dist" / "index.html").is_file():
        return "the example page is not built: cd examples/web && npm ci && npm run build"
    if need_browser:
        from endcall.testing.browser import browser_unavailable

        return browser_unavailable(examples / "web")
    return None
