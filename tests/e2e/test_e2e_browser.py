"""End to end in a real browser: Debian's Chromium driven by playwright-core.

One stack for the module (loopback LiveKit + bridge + RoomService double, fallback server,
example receiver, built example page; ``endcall.testing.stack``) and one browser; each test
starts the example interview agent (scripted models, livekit-agents' job runner) in its own
room, plays the candidate in the page, and checks the page, the agent and the receiver.
A screenshot per test goes to ``test-output/e2e/``; the first scenario's becomes
``docs/screenshot.png`` for the README when that file is missing or
``ENDCALL_UPDATE_SCREENSHOT=1``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from endcall.testing.browser import BrowserDriver, browser_unavailable
from endcall.testing.demo import CANDIDATE_ANSWERS, SCENARIOS, Scenario, start_interview_agent
from endcall.testing.stack import LocalStack, examples_dir

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "test-output" / "e2e"
WEB = ROOT / "examples" / "web"

_missing = browser_unavailable(WEB) or (
    None if (WEB / "dist" / "index.html").is_file() else "examples/web is not built (npm run build)"
)
pytestmark = [
    pytest.mark.skipif(_missing is not None, reason=f"browser tests need: {_missing}"),
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(180),
]


def scenario(name: str) -> Scenario:
    return next(s for s in SCENARIOS if s.name == name)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with LocalStack(tmp_path_factory.mktemp("stack"), stay_for_report_ms=30_000) as s:
        yield s


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[BrowserDriver]:
    async with BrowserDriver(examples_dir() / "web") as b:
        yield b


class Page:
    """One tab in one fresh room with a fresh agent."""

    def __init__(self, stack: LocalStack, browser: BrowserDriver, name: str) -> None:
        self.stack, self.browser, self.name = stack, browser, name
        self.room = f"e2e-{name}-{secrets.token_hex(3)}"
        self.tab = f"tab-{name}-{secrets.token_hex(2)}"
        self.open = False

    async def start(self, sc: Scenario) -> Any:
        run = await start_interview_agent(self.stack, self.room, sc)
        await self.browser.open(self.tab, self.stack.page_url(self.room, "candidate"))
        self.open = True
        await self.browser.wait_text(self.tab, "connection", "^connected", 15)
        return run

    async def answer(self, index: int, marker: str) -> None:
        await self.browser.wait_text(self.tab, "transcript", marker, 30)
        await self.browser.wait_text(self.tab, "agent-state", "listening", 30)
        await self.browser.fill(self.tab, "answer-input", CANDIDATE_ANSWERS[index])
        await self.browser.click(self.tab, "answer-send")

    async def text(self, testid: str) -> str | None:
        return await self.browser.text(self.tab, testid)

    async def outcome(self) -> dict[str, Any]:
        raw = await self.browser.command(
            "eval",
            page=self.tab,
            expression="document.querySelector('[data-testid=ack]')?.dataset.outcome ?? null",
        )
        assert raw, "the page shows no outcome"
        value: dict[str, Any] = json.loads(raw)
        return value

    async def screenshot(self) -> Path:
        return await self.browser.screenshot(self.tab, OUT / f"{self.name}.png")

    async def close(self) -> None:
        if self.open:
            self.open = False
            await self.browser.close_page(self.tab)


def markers() -> list[str]:
    from endcall.testing.stack import load_example

    return list(load_example("interview_agent").QUESTION_MARKERS)


async def reports_for(stack: LocalStack, room: str, timeout: float = 60.0) -> list[Any]:
    reports = await stack.receiver.wait_for(lambda rs: any(r.room == room for r in rs), timeout)
    return [r for r in reports if r.room == room]


def user_lines(doc: dict[str, Any]) -> list[str]:
    items = doc["session"]["chat_history"]["items"]
    return [
        " ".join(item["content"])
        for item in items
        if item.get("type") == "message" and item.get("role") == "user"
    ]


async def test_click_end_acks_disconnects_and_delivers_one_verified_report(
    stack: LocalStack, browser: BrowserDriver
) -> None:
    page = Page(stack, browser, "click-end")
    run = await page.start(scenario("candidate-ends"))
    try:
        qs = markers()
        await page.answer(0, qs[0])
        await page.answer(1, qs[1])
        await browser.wait_text(page.tab, "transcript", qs[2], 30)
        await browser.wait_text(page.tab, "agent-state", "listening", 30)
        await browser.click(page.tab, "end-button")
        ack = await browser.wait_text(page.tab, "ack", "Acknowledged", 15)
        await browser.wait_text(page.tab, "connection", "disconnected", 60)
        submitted = await page.text("submitted")
        shot = await page.screenshot()
        outcome = await page.outcome()
        await run.job.finished(90)
        [report] = await reports_for(stack, page.room)
    finally:
        await page.close()
    assert "via RPC" in ack
    assert outcome["status"] == "accepted" and outcome["via"] == "rpc"
    assert submitted == "Interview submitted ✓"
    assert report.verified and report.duplicates == 0 and report.body_mismatches == 0
    doc = report.document
    assert doc["ended_reason"] == "customer-ended-call"
    assert doc["initiator"] == {"kind": "customer", "identity": "candidate"}
    assert doc["end_id"] == report.webhook_id == outcome["ack"]["end_id"]
    assert doc["request_id"] == outcome["ack"]["id"]
    assert user_lines(doc)[-1] == CANDIDATE_ANSWERS[1]
    # exactly one report for this interview, from the one agent job
    assert len([r for r in stack.receiver.reports() if r.room == page.room]) == 1
    # the README's screenshot: written when missing, refreshed on request (it changes each run)
    readme_shot = ROOT / "docs" / "screenshot.png"
    if not readme_shot.exists() or os.environ.get("ENDCALL_UPDATE_SCREENSHOT") == "1":
        readme_shot.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, readme_shot)


async def test_closing_the_tab_reports_the_beacons_reason(
    stack: LocalStack, browser: BrowserDriver
) -> None:
    page = Page(stack, browser, "tab-closed")
    run = await page.start(scenario("tab-closed"))
    qs = markers()
    await page.answer(0, qs[0])
    await browser.wait_text(page.tab, "transcript", qs[1], 30)
    await page.screenshot()
    await page.close()  # pagehide: the beacon goes to POST /v1/end
    await run.job.finished(90)
    [report] = await reports_for(stack, page.room)
    doc = report.document
    assert report.verified
    assert user_lines(doc)[-1] == CANDIDATE_ANSWERS[0]
    assert doc["ended_reason"] == "customer-tab-closed"


async def test_agent_initiated_end_is_shown_on_the_page(
    stack: LocalStack, browser: BrowserDriver
) -> None:
    page = Page(stack, browser, "agent-ends")
    run = await page.start(scenario("agent-ends"))
    try:
        qs = markers()
        for i, marker in enumerate(qs):
            await page.answer(i, marker)
        said = await browser.wait_text(page.tab, "agent-ended", "interviewer ended", 60)
        await browser.wait_text(page.tab, "connection", "disconnected", 60)
        customer_outcome = await page.text("ack")
        await page.screenshot()
        await run.job.finished(90)
        [report] = await reports_for(stack, page.room)
    finally:
        await page.close()
    assert said == "The interviewer ended the interview."
    assert customer_outcome is None  # the candidate never ended it
    doc = report.document
    assert report.verified
    assert doc["ended_reason"] == "assistant-ended-call"
    assert doc["initiator"]["kind"] == "agent"
    assert user_lines(doc)[-1] == CANDIDATE_ANSWERS[2]


async def test_unreachable_agent_escalates_over_rest_and_still_reports(
    stack: LocalStack, browser: BrowserDriver
) -> None:
    page = Page(stack, browser, "agent-unreachable")
    run = await page.start(scenario("agent-unreachable"))
    try:
        qs = markers()
        await page.answer(0, qs[0])
        await browser.wait_text(page.tab, "transcript", qs[1], 30)
        await run.job.partition()
        await browser.click(page.tab, "end-button")
        await browser.wait_text(page.tab, "ack", "Acknowledged via REST", 30)
        outcome = await page.outcome()
        await browser.wait_text(page.tab, "connection", "disconnected", 60)
        await page.screenshot()
        await run.job.finished(90)
        [report] = await reports_for(stack, page.room)
    finally:
        await page.close()
    assert outcome["via"] == "rest"
    assert outcome["ack"]["acked_by"] == "server"
    assert outcome["ack"]["escalated"] == "delete_room"
    assert {e["channel"] for e in outcome["errors"]} >= {"rpc"}
    assert stack.roomservice is not None
    assert page.room in {c.room for c in stack.roomservice.calls_to("DeleteRoom")}
    doc = report.document
    assert report.verified
    assert doc["ended_reason"] == "room-deleted"
    assert user_lines(doc)[-1] == CANDIDATE_ANSWERS[0]
