"""examples/interview_agent.py with scripted models: three answers, the agent ends with its
goodbye, the report is committed with `assistant-ended-call`."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from livekit import rtc
from livekit.agents.testing import fake_job_context

from endcall import EndState
from endcall.outbox.sqlite import SqliteOutbox
from endcall.testing import LoopbackServer
from endcall.webhook import Webhook

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "interview_agent.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("interview_agent_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def test_scripted_interview_ends_with_the_agents_goodbye(tmp_path: Path) -> None:
    example = load()
    hub = LoopbackServer()
    agent_room = await hub.connect(
        "room-ex", "interviewer", kind=rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    )
    customer = await hub.connect("room-ex", "candidate")
    models = example.scripted_models(agent_ends=True)
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    # nothing listens there: the report must still be committed (and kept for a relay)
    webhook = Webhook(
        url="http://127.0.0.1:9/hook",
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        in_process_window=0.5,
    )
    with fake_job_context(room=agent_room) as ctx:
        session, end = await example.run_interview(
            ctx, models=models, webhook=webhook, outbox=outbox, delete_room=False
        )
        for answer in ("A ledger.", "Alerts and reconciliation.", "Fewer services."):
            await asyncio.sleep(0.3)
            while session.agent_state != "listening":  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            models.stt.say(answer)
        record = await asyncio.wait_for(end.wait(), 30)
        assert record.state is EndState.ENDED and record.reason == "assistant-ended-call"
        await asyncio.wait_for(example.on_session_end(ctx), 30)
        stored = outbox.get(end.end_id)
        assert stored is not None and not stored.is_draft
        doc = json.loads(stored.body)
        said = [
            i["content"][0]
            for i in doc["session"]["chat_history"]["items"]
            if i.get("type") == "message" and i.get("role") == "assistant"
        ]
        assert said[0].startswith(example.GREETING) and example.QUESTION_MARKERS[0] in said[0]
        assert said[-2:] == [example.CLOSING, example.GOODBYE]
        await session.aclose()
    await customer.disconnect()
    await agent_room.disconnect()


def test_example_is_a_livekit_agents_cli_app() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "dev" in out.stdout
