"""Ack latency of EndCall's RPC handler vs a bare echo handler, on the same LoopbackRoom.

One agent (a real AgentSession with scripted models, `EndCall` started, in a fake job) and one
customer on an in-process `LoopbackServer`. The agent also registers `echo`, a handler that
returns its payload. The customer sends N end requests (unique ids, so none is answered from
the idempotency cache) and N echo calls, interleaved one at a time, and the script prints the
round-trip p50/p99 of both and their ratio (goal: kit / echo <= 1.2).

What is measured: the first end request is accepted (the session then drains and closes in
the background); the measured ones are answered `already_ending`/`already_ended`, i.e. the
full handler path — parse, authorize, state machine, attribute update, encode — minus the
one-off start of the end path. Run: `python bench/ack_latency.py [N]` (default 2000).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from livekit import rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.testing import fake_job_context

from endcall import EndCall
from endcall.outbox.sqlite import SqliteOutbox
from endcall.pipeline import ReportPipeline
from endcall.testing import LoopbackServer, ScriptedLLM, ScriptedSTT, TimedTTS
from endcall.webhook import Webhook


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main(n: int) -> None:
    hub = LoopbackServer()
    agent_room = await hub.connect(
        "bench", "agent", kind=rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    )
    customer = await hub.connect("bench", "customer")
    tmp = Path(tempfile.mkdtemp())
    pipeline = ReportPipeline(
        Webhook(url="https://backend.test/end", secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        SqliteOutbox(tmp / "outbox.db"),
        transport=httpx.MockTransport(lambda r: httpx.Response(200)),
    )

    async def echo(data: rtc.RpcInvocationData) -> str:
        return data.payload

    agent_room.local_participant.register_rpc_method("echo", echo)
    with fake_job_context(room=agent_room) as ctx:
        session: AgentSession[None] = AgentSession(
            stt=ScriptedSTT(), llm=ScriptedLLM(), tts=TimedTTS(), vad=None
        )
        end = EndCall(ctx, session, pipeline=pipeline, delete_room=False)
        await session.start(agent=Agent(instructions="bench", tools=[end.tool]), room=agent_room)
        await end.start()
        await hub.settle()

        async def call(method: str, payload: str) -> float:
            t0 = time.perf_counter()
            await customer.local_participant.perform_rpc(
                destination_identity="agent", method=method, payload=payload
            )
            return time.perf_counter() - t0

        def req(i: int) -> str:
            return json.dumps({"type": "end.request", "v": 1, "id": f"bench-{i}"})

        first = await customer.local_participant.perform_rpc(
            destination_identity="agent", method="end_interview", payload=req(-1)
        )
        assert json.loads(first)["status"] == "accepted"
        for i in range(100):  # warm-up
            await call("end_interview", req(-100 - i))
            await call("echo", req(-100 - i))
        kit: list[float] = []
        bare: list[float] = []
        for i in range(n):
            payload = req(i)
            if i % 2:
                kit.append(await call("end_interview", payload))
                bare.append(await call("echo", payload))
            else:
                bare.append(await call("echo", payload))
                kit.append(await call("end_interview", payload))
        await end.wait()
        await EndCall.on_session_end(ctx)
        await session.aclose()
    await customer.disconnect()
    await agent_room.disconnect()

    def ms(x: float) -> str:
        return f"{x * 1000:.3f} ms"

    k50, k99, b50, b99 = pct(kit, 50), pct(kit, 99), pct(bare, 50), pct(bare, 99)
    print(f"end requests over LoopbackRoom RPC: {n} kit + {n} echo, interleaved")
    print(f"  kit  handler  p50 {ms(k50)}  p99 {ms(k99)}  mean {ms(statistics.mean(kit))}")
    print(f"  echo handler  p50 {ms(b50)}  p99 {ms(b99)}  mean {ms(statistics.mean(bare))}")
    print(f"  ratio kit/echo  p50 {k50 / b50:.3f}  p99 {k99 / b99:.3f}  (goal <= 1.2)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
