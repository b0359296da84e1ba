"""Every request vector (tests/vectors/request.json and $ENDCALL_EXTRA_VECTORS) sent to a real
agent over RPC and over the data channel: each gets its protocol error (as the documented
RpcError code over RPC, as an `end.error` on `<method>.ack` over data) or an ack.

Vectors with origin "server" arrive here from a participant, i.e. with origin "client": they
get the same answer, except that a reason not starting with `customer-` is `bad_request`
(protocol.md §2.1). Errors go first so the session is still active for them; the ok vectors
then end it (the first is `accepted`, the others `already_ending`/`already_ended`, or the
remembered ack of their id)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path
from typing import Any

from agent_harness import data_end, rpc_end, start_job
from livekit import rtc

from endcall.protocol import MAX_MESSAGE_BYTES, rpc_code

VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors"


def request_vectors() -> list[dict[str, Any]]:
    dirs = [VECTOR_DIR] + [
        Path(p) for p in os.environ.get("ENDCALL_EXTRA_VECTORS", "").split(":") if p
    ]
    cases = []
    for d in dirs:
        for path in sorted(d.glob("*.json")):
            cases += [c for c in json.loads(path.read_text("utf-8")) if c["kind"] == "request"]
    return cases


def as_client(case: dict[str, Any]) -> tuple[bool, str | None, str | None]:
    """(ok, error code, request id) when `case` arrives from a participant."""
    exp = case["expect"]
    if not exp["ok"]:
        return False, exp["code"], None
    value = exp["value"]
    if case["origin"] == "server" and not value["reason"].startswith("customer-"):
        return False, "bad_request", value["id"]
    return True, None, value["id"]


def raw_of(case: dict[str, Any]) -> bytes:
    if "input_b64" in case:
        return base64.b64decode(case["input_b64"])
    return str(case["input"]).encode("utf-8", "surrogatepass")


async def test_every_request_vector_over_rpc_and_data(tmp_path: Path) -> None:
    cases = request_vectors()
    assert len(cases) >= 60
    cases.sort(key=lambda c: as_client(c)[0])  # errors first, while the session is active
    slow_backend = asyncio.Event()
    job = await start_job(
        tmp_path, endcall_kwargs={"delete_room": False}, receiver_gate=slow_backend
    )
    checked_rpc = checked_data = 0
    try:
        for case in cases:
            ok, code, rid = as_client(case)
            raw = raw_of(case)
            name = case["name"]
            # ---- RPC: payloads are strings; invalid UTF-8 cannot be sent as one
            try:
                text: str | None = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if text is not None:
                try:
                    answer = await rpc_end(job, text)
                except rtc.RpcError as e:
                    if len(raw) > MAX_MESSAGE_BYTES:
                        # the transport refuses it before the agent sees it
                        assert e.code == rtc.RpcError.ErrorCode.REQUEST_PAYLOAD_TOO_LARGE, name
                    else:
                        assert not ok, (name, e.code, e.message)
                        assert e.code == rpc_code(code or ""), (name, e.code, code)
                        err = json.loads(e.data or "{}")
                        assert err["type"] == "end.error" and err["code"] == code, name
                else:
                    assert ok, (name, answer)
                    ack = json.loads(answer)
                    assert ack["type"] == "end.ack" and ack["id"] == rid, name
                    assert ack["status"] in ("accepted", "already_ending", "already_ended"), name
                checked_rpc += 1
            # ---- data: bytes as they are
            reply = await data_end(job, raw)
            if ok:
                assert reply["type"] == "end.ack" and reply["id"] == rid, (name, reply)
            else:
                assert reply["type"] == "end.error" and reply["code"] == code, (name, reply)
            checked_data += 1
    finally:
        slow_backend.set()
    assert checked_data == len(cases)
    assert checked_rpc >= len(cases) - sum(1 for c in cases if "input_b64" in c)
    assert job.end is not None
    await job.finished()
    assert job.end.record.reason == "customer-ended-call"
    assert len(job.pipeline.stored) == 1 and job.shutdown_calls == ["customer-ended-call"]
