"""Every pair of end triggers racing, in both orders and with small delays between them.

Whatever the interleaving: one reason (one of the two), one `ctx.shutdown()`, one report stored
and delivered, the state machine `ended`, and every ack of the session naming that reason and
`end_id`. The deterministic test runs every unordered pair back to back; the hypothesis test
explores orders and delays (examples kept modest: each one is a whole agent job).

The customer leaving ("leave") is only tentative for the disconnect grace (longer than every
delay here): whichever order, a trigger that can still happen after the leave wins over it —
above all the tab-close beacon arriving through the fallback server after the leave."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from agent_harness import AGENT_ID, ROOM, Job, request, rpc_end, start_job
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit import rtc
from livekit.agents import APIConnectionError, llm

from endcall import EndState
from endcall.testing import ToolCall

Fire = Callable[[Job], Awaitable[None]]
acks: dict[int, list[dict[str, Any]]] = {}


async def _rpc(job: Job) -> None:
    with contextlib.suppress(rtc.RpcError):
        acks.setdefault(id(job), []).append(json.loads(await rpc_end(job, request("race-rpc"))))


async def _data(job: Job) -> None:
    with contextlib.suppress(Exception):
        await job.customer.local_participant.publish_data(
            request("race-data"), destination_identities=[AGENT_ID], topic="end_interview"
        )


async def _server(job: Job) -> None:
    # a backend ending the call through the server channel (the agent's attribute)
    body = request("race-srv", "server-ended-call")
    with contextlib.suppress(LookupError):
        await job.hub.update_participant(ROOM, AGENT_ID, attributes={"endcall.request": body})


async def _beacon(job: Job) -> None:
    # what the fallback server does with a tab-close beacon: the agent's attribute
    body = request("race-beacon", "customer-tab-closed", initiator="cand-1")
    with contextlib.suppress(LookupError):
        await job.hub.update_participant(ROOM, AGENT_ID, attributes={"endcall.request": body})


async def _tool(job: Job) -> None:
    job.llm.add(ToolCall("end_call"))
    job.stt.say("That's all, thanks.")


async def _api(job: Job) -> None:
    assert job.end is not None
    acks.setdefault(id(job), []).append((await job.end.end("server-ended-call")).to_dict())


async def _max_duration(job: Job) -> None:
    assert job.end is not None
    job.end._agent_ends.on_max_duration()  # what the max_duration timer calls when it fires


async def _silence(job: Job) -> None:
    assert job.end is not None
    job.end._agent_ends.on_silence()  # what the silence watcher calls when it fires


async def _leave(job: Job) -> None:
    await job.customer.disconnect()


async def _delete(job: Job) -> None:
    with contextlib.suppress(LookupError):
        await job.hub.delete_room(ROOM)


async def _worker(job: Job) -> None:
    job.worker_shutdown("worker draining")


async def _error(job: Job) -> None:
    # what an LLM plugin does when it gives up: an unrecoverable error event
    job.llm.emit(
        "error",
        llm.LLMError(
            timestamp=time.time(),
            label="scripted",
            error=APIConnectionError("model down"),
            recoverable=False,
        ),
    )


async def _close(job: Job) -> None:
    assert job.session is not None
    job.session.shutdown()


TRIGGERS: dict[str, tuple[Fire, set[str]]] = {
    "rpc": (_rpc, {"customer-ended-call"}),
    "data": (_data, {"customer-ended-call"}),
    "server": (_server, {"server-ended-call"}),
    "beacon": (_beacon, {"customer-tab-closed"}),
    "tool": (_tool, {"assistant-ended-call"}),
    "api": (_api, {"server-ended-call"}),
    "max_duration": (_max_duration, {"exceeded-max-duration"}),
    "silence": (_silence, {"silence-timed-out"}),
    "leave": (_leave, {"customer-disconnected"}),
    "room_deleted": (_delete, {"room-deleted"}),
    "worker": (_worker, {"worker-shutdown"}),
    "error": (_error, {"agent-error"}),
    "close": (_close, {"server-ended-call"}),
}


async def race(tmp: Path, first: str, second: str, delay: float) -> None:
    from livekit.agents import APIConnectOptions
    from livekit.agents.voice.agent_session import SessionConnectOptions

    job = await start_job(
        tmp,
        endcall_kwargs={
            "goodbye": "Goodbye!",
            "drain_timeout": 2.0,
            "disconnect_grace": GRACE,
            "delete_room_after": 1.0,
        },
        session_kwargs={
            "conn_options": SessionConnectOptions(
                llm_conn_options=APIConnectOptions(max_retry=0), max_unrecoverable_errors=0
            )
        },
    )
    fire_a, reasons_a = TRIGGERS[first]
    fire_b, reasons_b = TRIGGERS[second]
    task_a = asyncio.create_task(fire_a(job))
    if delay:
        await asyncio.sleep(delay)
    task_b = asyncio.create_task(fire_b(job))
    await asyncio.gather(task_a, task_b, return_exceptions=False)
    await job.finished(timeout=30)
    assert job.end is not None
    rec = job.end.record
    assert rec.state is EndState.ENDED
    assert rec.reason in reasons_a | reasons_b, (first, second, rec.reason)
    other = {first, second} - {"leave"}
    if "leave" in (first, second) and other <= BEATS_LEAVE:
        assert delay < GRACE
        assert rec.reason in TRIGGERS[other.pop()][1], (first, second, rec.reason)
    assert job.shutdown_calls == [rec.reason], (first, second, job.shutdown_calls)
    assert len(job.pipeline.stored) == 1
    assert [r.headers["webhook-id"] for r in job.receiver.requests] == [rec.end_id]
    assert json.loads(job.receiver.requests[0].content)["ended_reason"] == rec.reason
    for ack in acks.pop(id(job), []):
        assert ack["end_id"] == rec.end_id and ack["reason"] == rec.reason


#: triggers that still happen after the customer left, so they always beat the tentative leave
BEATS_LEAVE = {"server", "beacon", "api", "max_duration", "silence", "room_deleted", "worker"}
GRACE = 0.6


PAIRS = list(itertools.combinations(TRIGGERS, 2))


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
async def test_pair_races_back_to_back(tmp_path: Path, first: str, second: str) -> None:
    await race(tmp_path, first, second, 0.0)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    pair=st.sampled_from(list(itertools.permutations(TRIGGERS, 2))),
    delay=st.sampled_from([0.0, 0.001, 0.01, 0.05, 0.2]),
)
def test_pair_races_in_any_order_with_delays(pair: tuple[str, str], delay: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(race(Path(tmp), pair[0], pair[1], delay))
