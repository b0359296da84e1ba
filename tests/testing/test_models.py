"""The scripted model plugins on their own (outside a session)."""

from __future__ import annotations

import asyncio
import json

from livekit.agents import llm, stt

from endcall.testing import ScriptedLLM, ScriptedSTT, TimedTTS, ToolCall, Turn


async def collect(model: ScriptedLLM, text: str = "hi") -> llm.CollectedResponse:
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content=text)
    async with model.chat(chat_ctx=ctx) as stream:
        return await stream.collect()


async def test_llm_follows_the_script_then_the_default() -> None:
    async def decide(chat_ctx: llm.ChatContext, tools: list[llm.Tool]) -> Turn:
        await asyncio.sleep(0)
        return Turn(text=f"echo {chat_ctx.items[-1].text_content}")

    model = ScriptedLLM(
        [
            "Hello there",
            ToolCall("end_call", {"reason": "done"}),
            Turn(text="Goodbye!", tool_calls=[ToolCall("end_call")], chunk_delay=0.01),
            decide,
        ],
        default="(nothing scripted)",
    )
    first = await collect(model)
    assert first.text == "Hello there" and first.tool_calls == []
    second = await collect(model)
    assert second.text == ""
    [call] = second.tool_calls
    assert call.name == "end_call" and json.loads(call.arguments) == {"reason": "done"}
    assert call.call_id
    third = await collect(model)
    assert third.text == "Goodbye!" and [c.name for c in third.tool_calls] == ["end_call"]
    assert (await collect(model, "ping")).text == "echo ping"
    assert model.remaining == 0
    assert (await collect(model)).text == "(nothing scripted)"
    assert len(model.calls) == 5 and model.calls[0].items[-1].text_content == "hi"


async def test_llm_turn_delay_takes_time() -> None:
    model = ScriptedLLM([Turn(text="slow", delay=0.2)])
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert (await collect(model)).text == "slow"
    assert loop.time() - start >= 0.2


async def test_tts_audio_length_follows_the_configuration() -> None:
    for tts_, text, expected in (
        (TimedTTS(duration=0.3), "Goodbye!", 0.3),
        (TimedTTS(), "Goodbye!", 0.08),
        (TimedTTS(seconds_per_char=0.0), "x", 0.05),  # min_duration
        (TimedTTS(duration=lambda text: len(text) / 10), "abcd", 0.4),
    ):
        frame = await tts_.synthesize(text).collect()
        # the emitter may pad the end with up to one 10 ms frame
        assert 0 <= frame.duration - expected <= 0.011, (text, frame.duration)
        assert tts_.requests == [text]


async def test_stt_say_produces_speech_events_and_flush_finalizes() -> None:
    model = ScriptedSTT()
    model.say("early words")  # before any stream: delivered when one opens
    stream = model.stream()
    model.say("partial", final=False)

    async def take(n: int) -> list[stt.SpeechEvent]:
        out = []
        async for ev in stream:
            out.append(ev)
            if len(out) == n:
                break
        return out

    events = await asyncio.wait_for(take(6), 2)
    kinds = [(ev.type, ev.alternatives[0].text if ev.alternatives else None) for ev in events]
    assert kinds == [
        (stt.SpeechEventType.START_OF_SPEECH, None),
        (stt.SpeechEventType.INTERIM_TRANSCRIPT, "early words"),
        (stt.SpeechEventType.FINAL_TRANSCRIPT, "early words"),
        (stt.SpeechEventType.END_OF_SPEECH, None),
        (stt.SpeechEventType.START_OF_SPEECH, None),
        (stt.SpeechEventType.INTERIM_TRANSCRIPT, "partial"),
    ]
    stream.flush()
    events = await asyncio.wait_for(take(2), 2)
    assert [(ev.type, ev.alternatives[0].text if ev.alternatives else None) for ev in events] == [
        (stt.SpeechEventType.FINAL_TRANSCRIPT, "partial"),
        (stt.SpeechEventType.END_OF_SPEECH, None),
    ]
    stream.flush()  # nothing pending: an empty final, as STTs answer a flush
    [ev] = await asyncio.wait_for(take(1), 2)
    assert ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT and ev.alternatives[0].text == ""
    await stream.aclose()
