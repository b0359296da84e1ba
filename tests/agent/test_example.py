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

import pytest
from livekit import rtc
from livekit.agents.testing import fake_job_context

from endcall import EndState
from endcall.reports.outbox.sqlite import SqliteOutbox
from endcall.reports.webhook import Webhook
from endcall.testing import LoopbackServer, request_end
from endcall.testing.agentjob import LoopbackJob

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "interview_agent.py"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "delivery"))
from support import Receiver, new_secret  # noqa: E402 (tests/delivery's webhook receiver)


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


async def test_the_job_metadata_configures_the_webhook_and_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example's real job (`run_job`): the webhook URL and secret come from the job's
    metadata (not the environment), `report_meta` lands in the report's `annotations`."""
    example = load()
    monkeypatch.setenv("ENDCALL_OUTBOX", str(tmp_path / "outbox.db"))
    monkeypatch.setenv("ENDCALL_WEBHOOK_URL", "http://127.0.0.1:9/not-this-one")
    monkeypatch.setenv("ENDCALL_WEBHOOK_SECRET", new_secret())
    secret = new_secret()
    receiver = Receiver([secret]).start()
    try:
        hub = LoopbackServer()
        customer = await hub.connect("room-md", "candidate")
        models = example.scripted_models()
        metadata = {
            "webhook_url": receiver.url,
            "webhook_secret": secret,
            "report_meta": {"test_id": "t-42", "company_id": "c-7"},
        }
        job = await LoopbackJob.start(
            hub,
            "room-md",
            lambda ctx: example.run_job(ctx, models=models),
            on_session_end=example.on_session_end,
            agent_name="interview-agent",
            metadata=metadata,
        )
        await asyncio.sleep(0.5)
        ack = await request_end(customer)
        assert ack.status == "accepted"
        await job.finished(60)
        (got,) = receiver.requests
        assert got.verified and got.status == 200 and got.end_id == ack.end_id
        doc = json.loads(got.body)
        assert doc["annotations"] == {"test_id": "t-42", "company_id": "c-7"}
        assert doc["ended_reason"] == "customer-ended-call" and doc["room"]["name"] == "room-md"
    finally:
        receiver.stop()


def test_job_settings_refuse_bad_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    example = load()
    monkeypatch.delenv("ENDCALL_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("ENDCALL_WEBHOOK_SECRET", raising=False)
    secret = new_secret()
    for metadata, message in (
        ("{", "not JSON"),
        ("[1]", "must be a JSON object"),
        ("", "no webhook"),
        (json.dumps({"webhook_url": "https://a.example/h"}), "no webhook"),
        (json.dumps({"webhook_url": "ftp://x", "webhook_secret": secret}), "http"),
        (json.dumps({"webhook_url": "https://a", "webhook_secret": "nope!"}), "whsec_"),
        (
            json.dumps({"webhook_url": "https://a", "webhook_secret": secret, "report_meta": 1}),
            "report_meta",
        ),
    ):
        with pytest.raises(ValueError, match=message):
            example.job_settings(metadata)
    monkeypatch.setenv("ENDCALL_WEBHOOK_URL", "https://env.example/h")
    monkeypatch.setenv("ENDCALL_WEBHOOK_SECRET", secret)
    settings = example.job_settings(json.dumps({"report_meta": {"test_id": "t-1"}}))
    assert settings.webhook.url == "https://env.example/h"
    assert settings.report_meta == {"test_id": "t-1"}


def test_example_is_a_livekit_agents_cli_app() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "dev" in out.stdout
