"""`endcall.testing.request_end`: the documented way to send an end request from a test."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_harness import AGENT_ID, start_job

from endcall.protocol import ProtocolError
from endcall.testing import request_end


async def test_rpc_then_data_then_a_forbidden_caller(tmp_path: Path) -> None:
    job = await start_job(tmp_path, endcall_kwargs={"delete_room": False})
    stranger = await job.hub.connect("interview-1", "someone-else")
    ack = await request_end(job.customer, reason="customer-tab-closed", meta={"button": "x"})
    assert (ack.status, ack.reason) == ("accepted", "customer-tab-closed")
    again = await request_end(job.customer, via="data", agent_identity=AGENT_ID)
    assert again.status in ("already_ending", "already_ended") and again.end_id == ack.end_id
    with pytest.raises(ProtocolError) as err:
        await request_end(stranger)
    assert err.value.code == "forbidden"
    with pytest.raises(ProtocolError) as bad:
        await request_end(job.customer, reason="server-ended-call")
    assert bad.value.code == "bad_request"
    await job.finished()
    report = job.receiver.reports()[0]
    assert report["request_id"] == ack.id and report["meta"] == {"button": "x"}
    await stranger.disconnect()


async def test_no_agent_in_the_room(tmp_path: Path) -> None:
    job = await start_job(tmp_path)
    lonely = await job.hub.connect("elsewhere", "someone")
    with pytest.raises(LookupError, match="no agent"):
        await request_end(lonely)
    with pytest.raises(ValueError, match="via"):
        await request_end(job.customer, via="smoke")  # type: ignore[arg-type]
    await request_end(job.customer)
    await job.finished()
    await lonely.disconnect()
