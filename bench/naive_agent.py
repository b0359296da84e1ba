"""The naive interview agent `bench/report_loss.py` measures the kit against.

A faithful rendition of the agent the kit's first users ran in production, with scripted models
in place of the cloud ones (the same scripted STT/LLM/TTS, questions and typed answers as
`examples/interview_agent.py`, so both agents run the same interview):

- the end tool (`end_call`) says the goodbye (`session.say(goodbye)`), then
  `session.shutdown(drain=True)`;
- the maximum duration is a timer calling `session.shutdown()`;
- `RoomOptions(delete_room_on_close=True)`: a closed session deletes the room, which ends the
  job;
- `on_session_end` builds the report (`ctx.make_session_report().to_dict()` plus the room, the
  times and a reason) and POSTs it **once** as plain JSON with `httpx` and a 10 s timeout;
  errors are logged and swallowed;
- the page's End button is a bare `room.disconnect()` (done by the bench in the page).

Its report's `ended_reason` is what this agent can know, generously: `assistant-ended-call` when
its tool ran, `exceeded-max-duration` when its timer fired, `customer-ended-call` when the
customer left the room, else the session's close reason (`job_shutdown`, `error`, …), or
`unknown`.

Settings come from the job's dispatch metadata, like the example agent:
`{"webhook_url": "http://…", "scenario": {"agent_ends": true, "max_duration": 12}}`.

Run as a worker (the bench does): `INTERVIEW_MODELS=scripted python bench/naive_agent.py start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli, function_tool
from livekit.agents.voice import room_io

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from interview_agent import (
    GOODBYE,
    GREETING,
    INSTRUCTIONS,
    QUESTIONS,
    ScriptedSettings,
    listen_for_typed_answers,
    scripted_models,
)

AGENT_NAME = "naive-agent"
logger = logging.getLogger("naive-agent")


class NaiveInterviewAgent(Agent):
    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__(instructions=INSTRUCTIONS)
        self._state = state

    async def on_enter(self) -> None:
        self.session.say(f"{GREETING} {QUESTIONS[0]}")

    @function_tool
    async def end_call(self) -> None:
        """Call end_call when the candidate has answered every question."""
        self._state.setdefault("reason", "assistant-ended-call")
        self._state.setdefault("ended_at", time.time())
        self.session.say(GOODBYE)
        self.session.shutdown(drain=True)


# a small test machine, as the example agent's scripted mode: health server on loopback, never
# full (load_threshold=inf: see examples/interview_agent.py), one idle process
server = AgentServer(
    host="127.0.0.1",
    port=0,
    load_fnc=lambda: 0.0,
    load_threshold=math.inf,
    num_idle_processes=1,
)


async def on_session_end(ctx: JobContext) -> None:
    """POST the report once; log and swallow any error."""
    state: dict[str, Any] = getattr(ctx, "_naive_state", {}) or {}
    try:
        report = ctx.make_session_report().to_dict()
    except Exception as e:
        logger.warning("session report failed: %s", e)
        report = {}
    body = {
        "type": "session.ended",
        "ended_reason": state.get("reason") or state.get("close_reason") or "unknown",
        "room": {"name": ctx.room.name},
        "started_at": state.get("started_at"),
        "ended_at": state.get("ended_at") or time.time(),
        "session": report,
    }
    url = state.get("webhook_url")
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            resp = await client.post(url or "", json=body)
            resp.raise_for_status()
    except Exception as e:
        logger.error("could not send the session report: %s", e)


@server.rtc_session(agent_name=AGENT_NAME, on_session_end=on_session_end)
async def entrypoint(ctx: JobContext) -> None:
    doc: dict[str, Any] = {}
    with contextlib.suppress(ValueError):
        loaded = json.loads(ctx.job.metadata or "{}")
        if isinstance(loaded, dict):
            doc = loaded
    settings = ScriptedSettings.from_metadata(ctx.job.metadata)
    state: dict[str, Any] = {"webhook_url": doc.get("webhook_url"), "started_at": time.time()}
    ctx._naive_state = state  # type: ignore[attr-defined]  # read by on_session_end
    models = scripted_models(agent_ends=settings.agent_ends)
    listen_for_typed_answers(ctx.room, models.stt)
    session: AgentSession[Any] = AgentSession(
        stt=models.stt,
        llm=models.llm,
        tts=models.tts,
        vad=None,
        turn_handling={
            "turn_detection": "stt",
            "endpointing": {"min_delay": 0.05, "max_delay": 3.0},
            "preemptive_generation": {"enabled": False},
        },
    )

    def on_close(ev: Any) -> None:
        reason = getattr(ev, "reason", None)
        state.setdefault("close_reason", str(getattr(reason, "value", reason) or "unknown"))
        state.setdefault("ended_at", time.time())

    def on_left(participant: Any) -> None:
        if participant.kind != 4:  # not an agent: the customer left
            state.setdefault("reason", "customer-ended-call")
            state.setdefault("ended_at", time.time())

    session.on("close", on_close)
    ctx.room.on("participant_disconnected", on_left)
    await session.start(
        room=ctx.room,
        agent=NaiveInterviewAgent(state),
        room_options=room_io.RoomOptions(delete_room_on_close=True),
    )
    if settings.max_duration:

        async def time_limit() -> None:
            await asyncio.sleep(float(settings.max_duration or 0))
            state.setdefault("reason", "exceeded-max-duration")
            state.setdefault("ended_at", time.time())
            session.shutdown()

        task = asyncio.create_task(time_limit())
        ctx.add_shutdown_callback(lambda: _cancel(task))
    # lets the bench find this job's process (to kill it), as the example agent does
    await ctx.room.local_participant.set_attributes({"demo.pid": str(os.getpid())})


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()


if __name__ == "__main__":
    cli.run_app(server)
