"""The example receiver (examples/receiver.py): verification, dedupe, storage, fault modes."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks
from e2e_helpers import load_example, serve

from endcall.reports.webhook import signed_headers

receiver_mod = load_example("receiver")
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"o" * 32).decode()


def report(end_id: str, reason: str = "customer-ended-call") -> bytes:
    doc = {
        "type": "session.ended",
        "v": 1,
        "end_id": end_id,
        "ended_reason": reason,
        "room": {"name": "interview-1", "sid": "RM_1"},
        "complete": True,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Any]:
    r = receiver_mod.Receiver(SECRET, tmp_path / "reports.sqlite")
    yield r
    r.close()


async def post(base: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(base + receiver_mod.WEBHOOK_PATH, content=body, headers=headers)


async def test_stores_a_signed_report_once_and_dedupes_retries(receiver: Any) -> None:
    body = report("e_1")
    async with serve(receiver_mod.create_app(receiver)) as base:
        first = await post(base, body, signed_headers("e_1", body, [SECRET], int(time.time())))
        again = await post(base, body, signed_headers("e_1", body, [SECRET], int(time.time())))
        async with httpx.AsyncClient() as client:
            listed = (await client.get(base + "/reports")).json()
            one = (await client.get(base + "/reports/e_1")).json()
    assert (first.status_code, first.json()["status"]) == (200, "stored")
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    assert [r["webhook_id"] for r in listed] == ["e_1"]
    assert listed[0]["attempts"] == 2 and listed[0]["duplicates"] == 1
    assert listed[0]["body_mismatches"] == 0 and listed[0]["verified"] is True
    assert one["report"]["ended_reason"] == "customer-ended-call"
    stored = receiver.report("e_1")
    assert stored is not None and stored.body == body


async def test_reference_signer_and_rotation_are_accepted(receiver: Any, tmp_path: Path) -> None:
    body = report("e_2")
    ts = int(time.time())
    from datetime import datetime, timezone

    ref = standardwebhooks.Webhook(SECRET).sign(
        "e_2", datetime.fromtimestamp(ts, timezone.utc), body.decode()
    )
    rotated = receiver_mod.Receiver([OTHER, SECRET], tmp_path / "rot.sqlite")
    try:
        async with serve(receiver_mod.create_app(receiver)) as base:
            ok = await post(
                base,
                body,
                {"webhook-id": "e_2", "webhook-timestamp": str(ts), "webhook-signature": ref},
            )
        async with serve(receiver_mod.create_app(rotated)) as base:
            rot = await post(base, body, signed_headers("e_2", body, [SECRET], ts))
    finally:
        rotated.close()
    assert ok.status_code == 200
    assert rot.status_code == 200


@pytest.mark.parametrize(
    "mutate",
    ["wrong_secret", "tampered_body", "old_timestamp", "no_signature", "other_id"],
)
async def test_rejects_unverifiable_reports_and_stores_nothing(receiver: Any, mutate: str) -> None:
    body = report("e_3")
    ts = int(time.time())
    secret = OTHER if mutate == "wrong_secret" else SECRET
    if mutate == "old_timestamp":
        ts -= 6 * 60
    headers = signed_headers("e_3", body, [secret], ts)
    if mutate == "tampered_body":
        body = report("e_3", "assistant-ended-call")
    if mutate == "no_signature":
        del headers["webhook-signature"]
    if mutate == "other_id":
        headers["webhook-id"] = "e_4"
    async with serve(receiver_mod.create_app(receiver)) as base:
        resp = await post(base, body, headers)
    assert resp.status_code == 401
    assert receiver.reports() == []
    assert [a["outcome"] for a in receiver.attempts()] == ["bad_signature"]


async def test_down_mode_answers_503_with_retry_after_then_recovers(receiver: Any) -> None:
    body = report("e_5")
    receiver.down_for(30)
    async with serve(receiver_mod.create_app(receiver, admin=True)) as base:
        down = await post(base, body, signed_headers("e_5", body, [SECRET], int(time.time())))
        async with httpx.AsyncClient() as client:
            await client.post(base + "/_fault", json={"up": True})
        up = await post(base, body, signed_headers("e_5", body, [SECRET], int(time.time())))
    assert down.status_code == 503
    assert 1 <= int(down.headers["retry-after"]) <= 30
    assert up.status_code == 200
    stored = receiver.report("e_5")
    assert stored is not None and stored.attempts == 2


async def test_gone_answers_410_and_bad_json_400(receiver: Any) -> None:
    body = report("e_6")
    receiver.mark_gone("e_6")
    garbage = b"not json"
    async with serve(receiver_mod.create_app(receiver)) as base:
        gone = await post(base, body, signed_headers("e_6", body, [SECRET], int(time.time())))
        bad = await post(base, garbage, signed_headers("e_7", garbage, [SECRET], int(time.time())))
    assert gone.status_code == 410
    assert bad.status_code == 400
    assert receiver.reports() == []


async def test_a_changed_body_under_the_same_id_is_flagged(receiver: Any) -> None:
    a, b = report("e_8"), report("e_8", "silence-timed-out")
    async with serve(receiver_mod.create_app(receiver)) as base:
        await post(base, a, signed_headers("e_8", a, [SECRET], int(time.time())))
        await post(base, b, signed_headers("e_8", b, [SECRET], int(time.time())))
    stored = receiver.report("e_8")
    assert stored is not None
    assert stored.body == a and stored.body_mismatches == 1


async def test_the_fault_endpoint_is_off_unless_asked_for(receiver: Any) -> None:
    async with serve(receiver_mod.create_app(receiver)) as base:
        async with httpx.AsyncClient() as client:
            resp = await client.post(base + "/_fault", json={"down_for": 60})
    assert resp.status_code in (404, 405)
    assert not receiver.is_down
