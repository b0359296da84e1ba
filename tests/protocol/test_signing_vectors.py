"""The shared signing vectors (tests/vectors/signing/signature.json, written from the Standard
Webhooks construction by tests/vectors/build_signing_vectors.py) against the sender's `sign`,
and each signature verified by the `standardwebhooks` package a receiver uses."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks

from endcall.reports.webhook import sign

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "signing" / "signature.json"
CASES: list[dict[str, Any]] = json.loads(VECTORS.read_text(encoding="utf-8"))


def body_of(case: dict[str, Any]) -> bytes:
    if "body_b64" in case:
        return base64.b64decode(case["body_b64"])
    return str(case["body"]).encode("utf-8")


def test_the_vectors_cover_rotation_drafts_and_raw_bytes() -> None:
    assert any(len(c["secrets"]) > 1 for c in CASES)
    assert any(c["webhook_id"].endswith(".draft") for c in CASES)
    assert any("body_b64" in c for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_sign_gives_the_vector(case: dict[str, Any]) -> None:
    got = sign(case["webhook_id"], case["timestamp"], body_of(case), case["secrets"])
    assert got == case["signature"]


@pytest.mark.parametrize("case", [c for c in CASES if "body" in c], ids=lambda c: c["name"])
def test_a_receiver_verifies_every_signature_of_the_vector(case: dict[str, Any]) -> None:
    for i, secret in enumerate(case["secrets"]):
        one = case["signature"].split(" ")[i]
        receiver = standardwebhooks.Webhook(secret)
        ts = datetime.fromtimestamp(case["timestamp"], tz=timezone.utc)
        assert receiver.sign(case["webhook_id"], ts, case["body"]) == one
