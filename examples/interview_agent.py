"""A typical interview agent on endcall: a greeting, three questions, the `end_call` tool with a
goodbye, a 30-minute limit, and the signed session report sent to the backend's webhook.

Run it against a LiveKit server (`LIVEKIT_URL`, `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET`)::

    ENDCALL_WEBHOOK_URL=https://backend.example/session/end \\
    ENDCALL_WEBHOOK_SECRET=whsec_... \\
    python examples/interview_agent.py dev

Per-job configuration: `endcall.job_config(ctx.job.metadata, room=...)` reads the job's
dispatch metadata into the `Webhook` and the report's `annotations`. The metadata **names** a
secret, never carries one, and a per-job URL must be allowed or signed, because job metadata
may come from the candidate's own browser (a token's `RoomAgentDispatch(metadata=...)` is
readable by its holder, and settable by it through a token route that copies the client's
`room_config`). So the backend dispatches server-side, with a claim it signs::

    metadata = endcall.dispatch_metadata(           # HS256 with ENDCALL_DISPATCH_KEY
        webhook_url="https://customer-a.example/session/end", webhook_secret_id="customer-a",
        report_meta={"test_id": "t-42", "company_id": "c-7"}, room=room)
    await lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(
        agent_name="interview-agent", room=room, metadata=metadata))

and the worker runs with `ENDCALL_DISPATCH_KEY` and `ENDCALL_WEBHOOK_SECRETS=customer-a=whsec_...`
next to the default `ENDCALL_WEBHOOK_URL` / `ENDCALL_WEBHOOK_SECRET`. Plain metadata still works
for what is not private: `{"webhook_secret_id": "customer-a", "report_meta": {...}}`, and a
`webhook_url` the worker allows (`ENDCALL_WEBHOOK_URL_ALLOW`); its `report_meta` reaches the
report marked `annotations_source: "unsigned"`. A `webhook_secret` in the metadata, a URL not
allowed, an unknown secret id or a claim that does not verify is refused: an ERROR in the log,
and the report goes to `ENDCALL_WEBHOOK_URL` with the refusals in its `end.config_refused`.
In a claim only: `"webhook_schedule": [0, 5, 10, 20]` (seconds before each delivery attempt;
default `endcall.reports.webhook.DEFAULT_SCHEDULE`, ~46 h) — `bench/report_loss.py` signs one
to shorten the retries so a receiver outage of minutes is measured in minutes.

Models come from LiveKit Inference model strings (override with `INTERVIEW_STT`,
`INTERVIEW_LLM`, `INTERVIEW_TTS`). The backend receives one `session.ended` report per
interview, with `ended_reason` (`customer-ended-call`, `assistant-ended-call`,
`exceeded-max-duration`, …), the transcript and the usage — see `examples/receiver.py`.

The demo and the tests run this same file as a real worker with scripted models:
`INTERVIEW_MODELS=scripted python examples/interview_agent.py start` (see `run_scripted`: the
candidate's typed answers arrive as `demo.answer` data packets, and the job's dispatch metadata
carries the scenario's settings). In that mode the worker also suits a small test machine:
health server on 127.0.0.1 on a free port, never reported full, one idle process.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli

import endcall
from endcall import EndCall, Webhook
from endcall.protocol import DEFAULT_METHOD

GREETING = "Hello, and thank you for joining this interview."
QUESTIONS = (
    "First question: tell me about a system you built that you are proud of.",
    "Second question: how did you know it was working in production?",
    "Third question: what would you change if you built it again?",
)
#: text that appears in the transcript when each question is asked
QUESTION_MARKERS = ("First question", "Second question", "Third question")
CLOSING = "Thank you, that was my last question."
GOODBYE = "Thank you for your time. Goodbye!"
MAX_DURATION = 30 * 60.0
SILENCE_TIMEOUT = 120.0

INSTRUCTIONS = f"""You are a friendly, concise technical interviewer.
Ask these questions one at a time, in order, and wait for each answer:
{chr(10).join(f"- {q}" for q in QUESTIONS)}
Acknowledge each answer in one short sentence before the next question.
After the third answer say "{CLOSING}" and call the end_call tool. Call end_call earlier only
if the candidate clearly wants to stop. Never say goodbye yourself: it is said for you."""


class InterviewAgent(Agent):
    """The interviewer: greets, asks the first question, then the LLM runs the interview."""

    def __init__(self, *, tools: list[Any]) -> None:
        super().__init__(instructions=INSTRUCTIONS, tools=tools)

    async def on_enter(self) -> None:
        self.session.say(f"{GREETING} {QUESTIONS[0]}")


@dataclass
class Models:
    """The model plugins of one session (`AgentSession(stt=, llm=, tts=)` values)."""

    stt: Any
    llm: Any
    tts: Any
    scripted: bool = False


def inference_models() -> Models:
    """LiveKit Inference model strings (what `python examples/interview_agent.py dev` uses)."""
    return Models(
        stt=os.environ.get("INTERVIEW_STT", "deepgram/nova-3"),
        llm=os.environ.get("INTERVIEW_LLM", "openai/gpt-4.1-mini"),
        tts=os.environ.get("INTERVIEW_TTS", "cartesia/sonic-2"),
    )


def scripted_models(*, agent_ends: bool = False) -> Models:
    """Scripted models for the demo and tests: the LLM follows the interview script (and, with
    `agent_ends`, calls `end_call` after the third answer); `stt.say(text)` is the candidate
    speaking; the TTS produces timed audio (so the goodbye takes real time to play)."""
    from endcall.testing import ScriptedLLM, ScriptedSTT, TimedTTS, ToolCall, Turn

    last: str | Turn = (
        Turn(text=CLOSING, tool_calls=(ToolCall("end_call"),))
        if agent_ends
        else f"{CLOSING} Take your time if you want to add anything."
    )
    llm = ScriptedLLM(
        [f"Thanks. {QUESTIONS[1]}", f"I see. {QUESTIONS[2]}", last],
        default="Thank you.",
    )
    return Models(stt=ScriptedSTT(), llm=llm, tts=TimedTTS(seconds_per_char=0.03), scripted=True)


def webhook_from_env() -> Webhook:
    url = os.environ.get("ENDCALL_WEBHOOK_URL")
    secret = os.environ.get("ENDCALL_WEBHOOK_SECRET")
    if not url or not secret:
        raise SystemExit("set ENDCALL_WEBHOOK_URL and ENDCALL_WEBHOOK_SECRET (whsec_...)")
    return Webhook(url=url, secret=secret)


async def run_interview(
    ctx: JobContext,
    *,
    models: Models | None = None,
    webhook: Webhook | None = None,
    outbox: Any = None,
    max_duration: float | None = MAX_DURATION,
    silence_timeout: float | None = SILENCE_TIMEOUT,
    delete_room: bool = True,
    goodbye: str = GOODBYE,
    report_meta: Mapping[str, Any] | None = None,
) -> tuple[AgentSession[Any], EndCall]:
    """Start the interview on `ctx.room`; returns the session and its `EndCall`."""
    models = models or inference_models()
    # the session's own "away" state (nobody spoke for this long; the agent's speech counts).
    # endcall's silence_timeout does not use it: it counts seconds without the candidate's
    # speech by itself. Kept below silence_timeout, else endcall warns that the call ends
    # before the candidate is ever marked away.
    away = 15.0 if silence_timeout is None else min(15.0, silence_timeout / 2)
    session: AgentSession[Any] = AgentSession(
        stt=models.stt,
        llm=models.llm,
        tts=models.tts,
        vad=None,
        user_away_timeout=away,
        turn_handling={
            "turn_detection": "stt",
            "endpointing": {"min_delay": 0.3 if not models.scripted else 0.05, "max_delay": 3.0},
            "preemptive_generation": {"enabled": False},
        },
    )
    end = EndCall(
        ctx,
        session,
        webhook=webhook or webhook_from_env(),
        outbox=outbox,
        max_duration=max_duration,
        silence_timeout=silence_timeout,
        goodbye=goodbye,
        delete_room=delete_room,
        report_meta=report_meta,
    )
    await session.start(room=ctx.room, agent=InterviewAgent(tools=[end.tool]))
    await end.start()
    return session, end


@dataclass(frozen=True)
class ScriptedSettings:
    """What a demo/test scenario changes, from the job's dispatch metadata
    (`{"scenario": {"agent_ends": true, "max_duration": 12, ...}}`)."""

    agent_ends: bool = False
    max_duration: float | None = MAX_DURATION
    silence_timeout: float | None = SILENCE_TIMEOUT
    rpc_disabled: bool = False

    @classmethod
    def from_metadata(cls, metadata: str | None) -> ScriptedSettings:
        try:
            doc = json.loads(metadata or "{}")
        except ValueError:
            doc = {}
        raw = doc.get("scenario") if isinstance(doc, dict) else None
        if not isinstance(raw, dict):
            return cls()
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)


def listen_for_typed_answers(room: rtc.Room, stt: Any) -> None:
    """The demo page's answer box stands in for speech: `demo.answer` packets feed the
    scripted STT, as if the candidate had said them."""

    def on_data(packet: rtc.DataPacket) -> None:
        if packet.topic != "demo.answer":
            return
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            text = json.loads(packet.data)["text"]
            if isinstance(text, str) and text.strip():
                stt.say(text.strip())

    room.on("data_received", on_data)


async def run_scripted(
    ctx: JobContext,
    settings: ScriptedSettings,
    **options: Any,
) -> tuple[AgentSession[Any], EndCall]:
    """The interview with scripted models, as the demo and the tests run it."""
    models = scripted_models(agent_ends=settings.agent_ends)
    listen_for_typed_answers(ctx.room, models.stt)
    session, end = await run_interview(
        ctx,
        models=models,
        max_duration=settings.max_duration,
        silence_timeout=settings.silence_timeout,
        **options,
    )
    if settings.rpc_disabled:
        ctx.room.local_participant.unregister_rpc_method(DEFAULT_METHOD)
    # lets a test harness find this job's process (to stop or kill it)
    await ctx.room.local_participant.set_attributes({"demo.pid": str(os.getpid())})
    return session, end


def scripted_mode() -> bool:
    return os.environ.get("INTERVIEW_MODELS") == "scripted"


#: pass to `rtc_session(on_session_end=...)`: finishes the report's in-process delivery (the
#: webhook's `in_process_window`, 60 s by default, plus one request timeout; livekit-agents gives
#: this hook up to `session_end_timeout`, 300 s by default). The rest is left to a relay.
on_session_end = EndCall.on_session_end

server = (
    # a small test machine: health server on loopback, a free port, never "full", one idle
    # process kept warm. Never full takes load_threshold=inf too: with a finite threshold and
    # no job running yet, livekit-agents counts each job it is still starting as threshold /
    # num_idle_processes of load, so with one idle process it refuses a second job requested
    # at the same moment, and with a single worker LiveKit never dispatches that job again
    AgentServer(
        setup_fnc=endcall.prewarm,
        host="127.0.0.1",
        port=0,
        load_fnc=lambda: 0.0,
        load_threshold=math.inf,
        num_idle_processes=1,
    )
    if scripted_mode()
    # every job process relays the reports a killed process left in the outbox
    else AgentServer(setup_fnc=endcall.prewarm)
)


async def run_job(ctx: JobContext, *, models: Models | None = None) -> None:
    """The job: its report's destination and annotations from the job's metadata
    (`endcall.job_config`: refusals are logged and the report goes to `ENDCALL_WEBHOOK_URL`),
    then the interview (scripted when `INTERVIEW_MODELS=scripted` and no models are given)."""
    config = endcall.job_config(ctx.job.metadata, room=ctx.job.room.name or None)
    # report_meta as it is (a ReportMeta): the report says which fields nobody signed
    options: dict[str, Any] = {"webhook": config.webhook, "report_meta": config.report_meta}
    if models is None and scripted_mode():
        await run_scripted(ctx, ScriptedSettings.from_metadata(ctx.job.metadata), **options)
    else:
        await run_interview(ctx, models=models, **options)


@server.rtc_session(agent_name="interview-agent", on_session_end=on_session_end)
async def entrypoint(ctx: JobContext) -> None:
    await run_job(ctx)


if __name__ == "__main__":
    cli.run_app(server)
