"""examples/interview_agent.py with scripted models: three answers, the agent ends with its
goodbye, the report is committed with `assistant-ended-call`."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from livekit import rtc
from livekit.agents.testing import fake_job_context

import endcall
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


async def _run_example_job(example: ModuleType, room: str, metadata: Any) -> str:
    """The example's real job (`run_job`) on the loopback, ended by the candidate; returns
    the end id."""
    hub = LoopbackServer()
    customer = await hub.connect(room, "candidate")
    models = example.scripted_models()
    job = await LoopbackJob.start(
        hub,
        room,
        lambda ctx: example.run_job(ctx, models=models),
        on_session_end=example.on_session_end,
        agent_name="interview-agent",
        metadata=metadata,
    )
    await asyncio.sleep(0.5)
    ack = await request_end(customer)
    assert ack.status == "accepted"
    await job.finished(60)
    return ack.end_id


async def test_the_job_metadata_names_its_secret_and_an_allowed_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain job metadata: the secret is named (`ENDCALL_WEBHOOK_SECRETS`), the URL is on the
    worker's allow-list; `report_meta` lands in `annotations`, marked `unsigned`."""
    example = load()
    secret = new_secret()
    receiver = Receiver([secret]).start()
    monkeypatch.setenv("ENDCALL_OUTBOX", str(tmp_path / "outbox.db"))
    monkeypatch.setenv("ENDCALL_WEBHOOK_URL", "http://127.0.0.1:9/not-this-one")
    monkeypatch.setenv("ENDCALL_WEBHOOK_SECRET", new_secret())
    monkeypatch.setenv("ENDCALL_WEBHOOK_SECRETS", f"customer-a={secret}")
    monkeypatch.setenv("ENDCALL_WEBHOOK_URL_ALLOW", receiver.url)
    try:
        metadata = {
            "webhook_url": receiver.url,
            "webhook_secret_id": "customer-a",
            "report_meta": {"test_id": "t-42", "company_id": "c-7"},
        }
        end_id = await _run_example_job(example, "room-md", metadata)
        (got,) = receiver.requests
        assert got.verified and got.status == 200 and got.end_id == end_id
        doc = json.loads(got.body)
        assert doc["annotations"] == {"test_id": "t-42", "company_id": "c-7"}
        assert doc["annotations_source"] == "unsigned"
        assert "config_refused" not in doc["end"]
        assert doc["ended_reason"] == "customer-ended-call" and doc["room"]["name"] == "room-md"
    finally:
        receiver.stop()


async def test_a_signed_dispatch_claim_configures_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the backend sends with `CreateAgentDispatchRequest`: a claim signed with
    `ENDCALL_DISPATCH_KEY`, bound to the room; its URL needs no allow-list and its
    `report_meta` arrives `signed`."""
    example = load()
    secret = new_secret()
    receiver = Receiver([secret]).start()
    key = "dispatch-key-" + "x" * 32
    monkeypatch.setenv("ENDCALL_OUTBOX", str(tmp_path / "outbox.db"))
    monkeypatch.setenv("ENDCALL_WEBHOOK_URL", "http://127.0.0.1:9/not-this-one")
    monkeypatch.setenv("ENDCALL_WEBHOOK_SECRET", new_secret())
    monkeypatch.setenv("ENDCALL_WEBHOOK_SECRETS", f"customer-a={secret}")
    monkeypatch.setenv("ENDCALL_DISPATCH_KEY", key)
    try:
        metadata = endcall.dispatch_metadata(
            webhook_url=receiver.url,
            webhook_secret_id="customer-a",
            report_meta={"test_id": "t-42", "company_id": "c-7"},
            room="room-signed",
        )
        end_id = await _run_example_job(example, "room-signed", metadata)
        (got,) = receiver.requests
        assert got.verified and got.end_id == end_id
        doc = json.loads(got.body)
        assert doc["annotations"] == {"test_id": "t-42", "company_id": "c-7"}
        assert doc["annotations_source"] == "signed"
    finally:
        receiver.stop()


async def test_a_forged_destination_reaches_the_default_receiver_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """What a candidate can put in a token's dispatch: their own URL and a secret. The report
    goes to `ENDCALL_WEBHOOK_URL` signed with `ENDCALL_WEBHOOK_SECRET`, never to their URL;
    the job logs an ERROR and the report lists the refusals and says its ids are unsigned."""
    example = load()
    default_secret, leaked = new_secret(), new_secret()
    backend = Receiver([default_secret]).start()
    attacker = Receiver([leaked]).start()
    monkeypatch.setenv("ENDCALL_OUTBOX", str(tmp_path / "outbox.db"))
    monkeypatch.setenv("ENDCALL_WEBHOOK_URL", backend.url)
    monkeypatch.setenv("ENDCALL_WEBHOOK_SECRET", default_secret)
    try:
        metadata = {
            "webhook_url": attacker.url,
            "webhook_secret": leaked,
            "report_meta": {"company_id": "c-attacker"},
        }
        with caplog.at_level(logging.ERROR, "endcall"):
            end_id = await _run_example_job(example, "room-forged", metadata)
        assert attacker.requests == []
        (got,) = backend.requests
        assert got.verified and got.end_id == end_id
        doc = json.loads(got.body)
        assert doc["annotations"] == {"company_id": "c-attacker"}
        assert doc["annotations_source"] == "unsigned"
        refused = doc["end"]["config_refused"]
        assert len(refused) == 2 and attacker.url in refused[1]
        assert leaked not in got.body.decode() and leaked not in caplog.text
        assert attacker.url in caplog.text and "room-forged" in caplog.text
    finally:
        backend.stop()
        attacker.stop()


def test_example_is_a_livekit_agents_cli_app() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "dev" in out.stdout
