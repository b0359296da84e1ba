"""The end tool with a realtime model that generates its own tool replies (the case
livekit-agents' EndCallTool handles with a delayed shutdown): the drain waits for the calling
turn and then for the model's reply speech, at most 5 s. A pipeline LLM never waits for a
reply speech. (Realtime models are not available offline, so the session is a small stand-in
with the attributes the tool reads; speech handles are real `SpeechHandle`s.)"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import llm
from livekit.agents.voice import SpeechHandle

from endcall.agent import end_tool


class FakeRealtime(llm.RealtimeModel):
    def __init__(self, auto_reply: bool) -> None:
        super().__init__(
            capabilities=llm.RealtimeCapabilities(
                message_truncation=True,
                turn_detection=True,
                user_transcription=True,
                auto_tool_reply_generation=auto_reply,
                audio_output=True,
                manual_function_calls=False,
            )
        )

    def session(self, *, turn_detection_disabled: bool = False) -> Any:
        raise NotImplementedError("a stand-in realtime model: the tests drive its session directly")

    async def aclose(self) -> None:
        return None


def run_ctx(model: Any) -> Any:
    session: Any = rtc.EventEmitter()
    rt_session = (
        SimpleNamespace(capabilities=model.capabilities)
        if isinstance(model, llm.RealtimeModel)
        else None
    )
    activity = SimpleNamespace(llm=model, realtime_llm_session=rt_session)
    session.current_agent = SimpleNamespace(_get_activity_or_raise=lambda: activity)
    return SimpleNamespace(session=session, speech_handle=SpeechHandle.create())


async def test_auto_reply_realtime_waits_for_the_reply_speech() -> None:
    ctx = run_ctx(FakeRealtime(auto_reply=True))
    turn = end_tool.capture_turn(ctx)
    assert turn.auto_reply
    waiter = asyncio.create_task(end_tool.wait_turn(turn))
    ctx.speech_handle._mark_done()  # the turn that called the tool is over
    await asyncio.sleep(0.05)
    assert not waiter.done()  # the model's goodbye has not been created yet
    reply = SpeechHandle.create()
    ctx.session.emit("speech_created", SimpleNamespace(speech_handle=reply))
    await asyncio.sleep(0.05)
    assert not waiter.done()  # …nor played
    reply._mark_done()
    await asyncio.wait_for(waiter, 1)


async def test_auto_reply_realtime_that_never_replies_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(end_tool, "REALTIME_REPLY_TIMEOUT", 0.1)
    ctx = run_ctx(FakeRealtime(auto_reply=True))
    turn = end_tool.capture_turn(ctx)
    ctx.speech_handle._mark_done()
    await asyncio.wait_for(end_tool.wait_turn(turn), 1)


@pytest.mark.parametrize("model", [FakeRealtime(auto_reply=False), object()])
async def test_no_auto_reply_waits_only_for_the_calling_turn(model: Any) -> None:
    ctx = run_ctx(model)
    turn = end_tool.capture_turn(ctx)
    assert not turn.auto_reply and turn.reply_fut is None
    waiter = asyncio.create_task(end_tool.wait_turn(turn))
    await asyncio.sleep(0.02)
    assert not waiter.done()
    ctx.speech_handle._mark_done()
    await asyncio.wait_for(waiter, 1)
