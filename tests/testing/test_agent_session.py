"""A real AgentSession (real RoomIO, real JobContext) on the loopback with scripted models."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import Agent, AgentSession, JobContext, function_tool
from livekit.agents.testing import fake_job_context

from endcall.testing import (
    LoopbackRoom,
    LoopbackServer,
    ScriptedLLM,
    ScriptedSTT,
    TimedTTS,
    ToolCall,
    Turn,
)

AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
TURN_HANDLING: Any = {
    "turn_detection": "stt",
    "endpointing": {"min_delay": 0.05, "max_delay": 0.5},
    # a speculative LLM call would consume a script item
    "preemptive_generation": {"enabled": False},
}


def is_message(ev: Any, role: str) -> bool:
    return bool(ev.item.type == "message" and ev.item.role == role)


class InterviewAgent(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are an interviewer.")
        self.tool_calls: list[dict[str, Any]] = []

    @function_tool
    async def end_call(self, reason: str = "") -> str:
        """End the interview."""
        self.tool_calls.append({"reason": reason})
        return "ending"


@dataclass
class Call:
    hub: LoopbackServer
    agent_room: LoopbackRoom
    customer: LoopbackRoom
    ctx: JobContext
    session: AgentSession
    agent: InterviewAgent
    stt: ScriptedSTT
    llm: ScriptedLLM
    tts: TimedTTS
    events: list[tuple[str, Any]] = field(default_factory=list)

    def named(self, name: str) -> list[Any]:
        return [ev for n, ev in self.events if n == name]

    async def wait_for(self, name: str, pred: Any = lambda ev: True, timeout: float = 5) -> Any:
        async def poll() -> Any:
            while True:
                for ev in self.named(name):
                    if pred(ev):
                        return ev
                await asyncio.sleep(0.01)

        return await asyncio.wait_for(poll(), timeout)


@pytest.fixture
async def call(request: pytest.FixtureRequest) -> AsyncIterator[Call]:
    script = list(getattr(request, "param", []))
    hub = LoopbackServer()
    agent_room = await hub.connect("interview-1", "agent-1", kind=AGENT)
    customer = await hub.connect("interview-1", "cand-1")
    stt, llm = ScriptedSTT(), ScriptedLLM(script)
    tts = TimedTTS(duration=lambda text: 10.0 if text.startswith("Long") else 0.3)
    with fake_job_context(room=agent_room) as ctx:
        session: AgentSession = AgentSession(
            stt=stt,
            llm=llm,
            tts=tts,
            vad=None,
            user_away_timeout=0.4,
            turn_handling=TURN_HANDLING,
        )
        agent = InterviewAgent()
        c = Call(hub, agent_room, customer, ctx, session, agent, stt, llm, tts)
        for name in (
            "user_input_transcribed",
            "conversation_item_added",
            "agent_state_changed",
            "user_state_changed",
            "function_tools_executed",
            "close",
            "error",
        ):
            session.on(name, lambda ev, name=name: c.events.append((name, ev)))
        await session.start(agent=agent, room=agent_room)
        try:
            yield c
        finally:
            await session.aclose()
            await customer.disconnect()
            await agent_room.disconnect()
    assert c.named("error") == []


async def test_rpc_turn_transcription_and_clean_close(call: Call) -> None:
    # an RPC from the customer to the agent
    async def status(data: rtc.RpcInvocationData) -> str:
        return json.dumps({"caller": data.caller_identity, "state": "active"})

    call.agent_room.local_participant.register_rpc_method("endcall.status", status)
    reply = await call.customer.local_participant.perform_rpc(
        destination_identity="agent-1", method="endcall.status", payload="{}"
    )
    assert json.loads(reply) == {"caller": "cand-1", "state": "active"}

    # the customer listens to the agent's transcription text streams
    transcripts: list[str] = []

    def on_transcription(reader: rtc.TextStreamReader, identity: str) -> None:
        async def read() -> None:
            transcripts.append(await reader.read_all())

        asyncio.get_running_loop().create_task(read())

    call.customer.register_text_stream_handler("lk.transcription", on_transcription)

    # a turn: the user's words -> the scripted LLM reply -> timed TTS audio played out
    call.llm.add("Thanks for your answer.")
    call.stt.say("my last answer")
    user_item = await call.wait_for("conversation_item_added", lambda ev: is_message(ev, "user"))
    assert user_item.item.text_content == "my last answer"
    assert any(
        ev.is_final and ev.transcript == "my last answer"
        for ev in call.named("user_input_transcribed")
    )
    reply_item = await call.wait_for(
        "conversation_item_added", lambda ev: is_message(ev, "assistant")
    )
    assert reply_item.item.text_content == "Thanks for your answer."
    assert not reply_item.item.interrupted
    assert call.tts.requests == ["Thanks for your answer."]
    # the chat context the LLM saw ends with the user's words
    assert call.llm.calls[-1].items[-1].text_content == "my last answer"

    # the agent's state attribute reached the customer; its transcription too
    await call.wait_for("agent_state_changed", lambda ev: ev.new_state == "listening")
    await asyncio.sleep(0.05)
    await call.hub.settle()
    agent_view = call.customer.remote_participants["agent-1"]
    assert agent_view.attributes["lk.agent.state"] == "listening"
    assert "Thanks for your answer." in transcripts
    # the customer's audio track was "subscribed": the agent published its audio
    assert [p.name for p in agent_view.track_publications.values()] == ["roomio_audio"]


async def test_speech_takes_real_time_and_can_be_interrupted(call: Call) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    handle = call.session.say("Thank you for your time. Goodbye!")
    await handle
    # two sentences, 0.3 s each, played in real time
    assert loop.time() - start >= 0.55
    assert not handle.interrupted

    # "Long..." lasts 10 s (see the fixture); the user speaking interrupts it
    start = loop.time()
    handle = call.session.say("Long monologue that nobody wants to hear.")
    await call.wait_for("agent_state_changed", lambda ev: ev.new_state == "speaking")
    await asyncio.sleep(1.5)  # the transcript follows the audio: let a few words play
    call.stt.say("sorry, stop")
    await asyncio.wait_for(handle, 3)
    assert handle.interrupted
    assert loop.time() - start < 7
    item = await call.wait_for(
        "conversation_item_added",
        lambda ev: is_message(ev, "assistant") and ev.item.interrupted,
    )
    # only what was heard before the interruption is in the history
    heard = item.item.text_content
    assert heard and "Long monologue that nobody wants to hear.".startswith(heard)
    assert heard != "Long monologue that nobody wants to hear."


@pytest.mark.parametrize(
    "call", [[ToolCall("end_call", {"reason": "done"}), "Goodbye!"]], indirect=True
)
async def test_scripted_tool_call(call: Call) -> None:
    call.stt.say("I am done, please end")
    await call.wait_for("function_tools_executed")
    assert call.agent.tool_calls == [{"reason": "done"}]
    reply = await call.wait_for(
        "conversation_item_added",
        lambda ev: is_message(ev, "assistant"),
    )
    assert reply.item.text_content == "Goodbye!"
    assert call.llm.remaining == 0


def _echo(chat_ctx: Any, tools: list[Any]) -> Turn:
    return Turn(text=f"You said {chat_ctx.items[-1].text_content}; I know {len(tools)} tool(s).")


@pytest.mark.parametrize("call", [[_echo]], indirect=True)
async def test_script_callable_sees_context_and_tools(call: Call) -> None:
    call.stt.say("hello")
    reply = await call.wait_for("conversation_item_added", lambda ev: is_message(ev, "assistant"))
    assert reply.item.text_content == "You said hello; I know 1 tool(s)."


async def test_silent_user_goes_away(call: Call) -> None:
    ev = await call.wait_for("user_state_changed", lambda ev: ev.new_state == "away")
    assert ev.old_state == "listening"
    call.stt.say("I'm back")
    await call.wait_for("user_state_changed", lambda ev: ev.new_state == "speaking")


async def test_unfinished_utterance_is_finalized_on_close(call: Call) -> None:
    call.stt.say("my final", final=False)
    await call.wait_for("user_input_transcribed", lambda ev: not ev.is_final)
    call.stt.say("words")
    await call.wait_for(
        "conversation_item_added",
        lambda ev: is_message(ev, "user") and ev.item.text_content == "my final words",
    )


async def test_customer_leaving_closes_the_session(call: Call) -> None:
    await call.customer.disconnect()
    close = await call.wait_for("close")
    assert close.reason.value == "participant_disconnected"
