"""Scripted model plugins for running a real ``AgentSession`` in tests.

- :class:`ScriptedLLM` answers each ``chat()`` with the next item of a script: text,
  :class:`ToolCall` s, a :class:`Turn` combining both (with an optional delay), or a
  callable deciding from the chat context.
- :class:`TimedTTS` synthesizes silence whose length follows the text, so speech takes
  real time to play out through the (real-time) audio output and can be interrupted.
- :class:`ScriptedSTT` is a streaming STT fed with text: ``stt.say("my answer")`` makes the
  session receive a final user transcript (start of speech, final transcript, end of
  speech), as a real STT would after the user spoke.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectOptions,
    NotGivenOr,
    llm,
    stt,
    tts,
)
from livekit.agents.language import LanguageCode
from livekit.agents.types import NOT_GIVEN
from livekit.agents.utils import AudioBuffer

__all__ = [
    "ScriptItem",
    "ScriptedLLM",
    "ScriptedSTT",
    "TimedTTS",
    "ToolCall",
    "Turn",
]

logger = logging.getLogger("endcall.testing.models")


@dataclass(frozen=True)
class ToolCall:
    """A function call the scripted LLM makes: ``ToolCall("end_call", {})``."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Turn:
    """One LLM response: optional text, then tool calls, after ``delay`` seconds.

    ``chunk_delay`` spaces the streamed text chunks (one word each), to simulate a
    slow model; 0 sends the text in one chunk.
    """

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    delay: float = 0.0
    chunk_delay: float = 0.0


ScriptFn: TypeAlias = Callable[
    [llm.ChatContext, list[llm.Tool]],
    "str | ToolCall | Turn | Awaitable[str | ToolCall | Turn]",
]
ScriptItem: TypeAlias = "str | ToolCall | Turn | ScriptFn"


def _as_turn(item: str | ToolCall | Turn) -> Turn:
    if isinstance(item, Turn):
        return item
    if isinstance(item, ToolCall):
        return Turn(tool_calls=(item,))
    return Turn(text=item)


class _PluginNames:
    """The model and provider names the doubles report (in metrics and usage)."""

    _model_name = "scripted"

    @property
    def model(self) -> str:
        return self._model_name

    @property
    def provider(self) -> str:
        return "endcall.testing"


class ScriptedLLM(_PluginNames, llm.LLM[Any]):
    """An LLM that answers each ``chat()`` call with the next script item.

    ``script`` items: a string (reply text), a :class:`ToolCall`, a :class:`Turn`, or a
    callable ``(chat_ctx, tools) -> str | ToolCall | Turn`` (sync or async) deciding at
    call time. After a tool call, the session calls ``chat()`` again with the tool output:
    that consumes the next item. When the script is exhausted, ``default`` is used
    (empty text by default, which makes the agent say nothing).

    ``calls`` records the chat context of every request (copies).
    """

    def __init__(
        self,
        script: Sequence[ScriptItem] = (),
        *,
        default: str | ToolCall | Turn | ScriptFn = "",
    ) -> None:
        super().__init__()
        self._script: list[ScriptItem] = list(script)
        self._default = default
        self.calls: list[llm.ChatContext] = []

    def add(self, *items: ScriptItem) -> None:
        """Append items to the script."""
        self._script.extend(items)

    @property
    def remaining(self) -> int:
        """Script items not consumed yet."""
        return len(self._script)

    def _next_item(self) -> ScriptItem:
        if self._script:
            return self._script.pop(0)
        return self._default

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        self.calls.append(chat_ctx.copy())
        return _ScriptedLLMStream(
            self,
            item=self._next_item(),
            chat_ctx=chat_ctx,
            tools=list(tools or []),
            conn_options=conn_options,
        )


class _ScriptedLLMStream(llm.LLMStream):
    def __init__(
        self,
        scripted: ScriptedLLM,
        *,
        item: ScriptItem,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        conn_options: APIConnectOptions,
    ) -> None:
        super().__init__(scripted, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._item = item

    async def _run(self) -> None:
        item = self._item
        if callable(item) and not isinstance(item, (ToolCall, Turn)):
            decided = item(self._chat_ctx, self._tools)
            if asyncio.iscoroutine(decided) or isinstance(decided, Awaitable):
                decided = await decided
            item = decided
        assert isinstance(item, (str, ToolCall, Turn)), f"bad script item: {item!r}"
        turn = _as_turn(item)
        request_id = f"scripted_{uuid.uuid4().hex[:8]}"
        if turn.delay:
            await asyncio.sleep(turn.delay)
        if turn.text:
            chunks = turn.text.split(" ") if turn.chunk_delay else [turn.text]
            for i, chunk in enumerate(chunks):
                if i and turn.chunk_delay:
                    await asyncio.sleep(turn.chunk_delay)
                content = chunk if i == 0 or not turn.chunk_delay else " " + chunk
                self._event_ch.send_nowait(
                    llm.ChatChunk(
                        id=request_id,
                        delta=llm.ChoiceDelta(role="assistant", content=content),
                    )
                )
        if turn.tool_calls:
            self._event_ch.send_nowait(
                llm.ChatChunk(
                    id=request_id,
                    delta=llm.ChoiceDelta(
                        role="assistant",
                        tool_calls=[
                            llm.FunctionToolCall(
                                name=call.name,
                                arguments=json.dumps(call.arguments),
                                call_id=f"call_{uuid.uuid4().hex[:12]}",
                            )
                            for call in turn.tool_calls
                        ],
                    ),
                )
            )
        self._event_ch.send_nowait(
            llm.ChatChunk(
                id=request_id,
                usage=llm.CompletionUsage(
                    completion_tokens=len(turn.text.split()),
                    prompt_tokens=0,
                    total_tokens=len(turn.text.split()),
                ),
            )
        )


class TimedTTS(_PluginNames, tts.TTS[Any]):
    """A TTS producing silent PCM whose duration follows the text.

    The length of each synthesized request is ``duration`` when given (a fixed number of
    seconds, or a callable ``text -> seconds``), else ``seconds_per_char`` times the
    stripped text length (default 0.01: "Goodbye!" lasts 0.08 s); never below
    ``min_duration``. The session synthesizes sentence by sentence, so a two-sentence
    reply with ``duration=0.3`` plays for 0.6 s.
    Audio is emitted at once (synthesis is instant); playout takes real time because the
    session's audio output plays frames in real time. ``requests`` records every text
    synthesized. Non-streaming: the session wraps it in a sentence ``StreamAdapter``.
    """

    _model_name = "timed"

    def __init__(
        self,
        *,
        duration: float | Callable[[str], float] | None = None,
        seconds_per_char: float = 0.01,
        min_duration: float = 0.05,
        sample_rate: int = 24000,
        num_channels: int = 1,
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=sample_rate,
            num_channels=num_channels,
        )
        self._duration = duration
        self._seconds_per_char = seconds_per_char
        self._min_duration = min_duration
        self.requests: list[str] = []

    def duration_of(self, text: str) -> float:
        """Seconds of audio synthesized for ``text``."""
        if callable(self._duration):
            seconds = self._duration(text)
        elif self._duration is not None:
            seconds = self._duration
        else:
            seconds = self._seconds_per_char * len(text.strip())
        return max(seconds, self._min_duration)

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        self.requests.append(text)
        return _TimedChunkedStream(tts=self, input_text=text, conn_options=conn_options)


class _TimedChunkedStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        timed = self._tts
        assert isinstance(timed, TimedTTS)
        output_emitter.initialize(
            request_id=f"timed_{uuid.uuid4().hex[:8]}",
            sample_rate=timed.sample_rate,
            num_channels=timed.num_channels,
            mime_type="audio/pcm",
        )
        samples = int(timed.duration_of(self.input_text) * timed.sample_rate)
        output_emitter.push(bytes(samples * timed.num_channels * 2))
        output_emitter.flush()


class ScriptedSTT(_PluginNames, stt.STT[Any]):
    """A streaming STT fed with text.

    ``stt.say(text)`` delivers START_OF_SPEECH, an interim and a FINAL_TRANSCRIPT, and
    END_OF_SPEECH to the open recognition stream(s), as if the user had said ``text``.
    ``stt.say(text, final=False)`` leaves the utterance unfinished (START_OF_SPEECH and an
    interim only): it becomes final on the next ``say`` or when the session flushes the
    STT (``manual_flush`` is supported: a flush finalizes the pending interim, or answers
    an empty final transcript when there is none, so closing a session does not wait for
    the transcript timeout). ``say`` before the session opened its stream is kept and
    delivered when it opens. Audio frames pushed by the session are ignored.
    """

    def __init__(self, *, language: str = "en") -> None:
        super().__init__(
            capabilities=stt.STTCapabilities(
                streaming=True, interim_results=True, offline_recognize=False, manual_flush=True
            )
        )
        self._language = LanguageCode(language)
        self._streams: list[_ScriptedRecognizeStream] = []
        self._pending: list[tuple[str, bool]] = []

    def say(self, text: str, *, final: bool = True) -> None:
        """The user says ``text`` (``final=False`` sends only the start and an interim)."""
        streams = [s for s in self._streams if not s._closed_input]
        if not streams:
            self._pending.append((text, final))
            return
        for stream in streams:
            stream._say(text, final)

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[stt.SpeechData(language=self._language, text="")],
        )

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.RecognizeStream:
        stream = _ScriptedRecognizeStream(self, conn_options=conn_options)
        self._streams.append(stream)
        pending, self._pending = self._pending, []
        for text, final in pending:
            stream._say(text, final)
        return stream


class _ScriptedRecognizeStream(stt.RecognizeStream):
    def __init__(self, scripted: ScriptedSTT, *, conn_options: APIConnectOptions) -> None:
        super().__init__(stt=scripted, conn_options=conn_options)
        self._scripted = scripted
        self._closed_input = False
        self._interim: str | None = None  # the unfinished utterance, if any

    def _data(self, text: str) -> stt.SpeechData:
        return stt.SpeechData(language=self._scripted._language, text=text, confidence=1.0)

    def _send(self, type_: stt.SpeechEventType, text: str | None = None) -> None:
        alternatives = [self._data(text)] if text is not None else []
        self._event_ch.send_nowait(stt.SpeechEvent(type=type_, alternatives=alternatives))

    def _say(self, text: str, final: bool) -> None:
        if self._event_ch.closed:
            return
        if self._interim is None:
            self._send(stt.SpeechEventType.START_OF_SPEECH)
            spoken = text
        else:
            spoken = f"{self._interim} {text}".strip()
        self._send(stt.SpeechEventType.INTERIM_TRANSCRIPT, spoken)
        if final:
            self._interim = None
            self._send(stt.SpeechEventType.FINAL_TRANSCRIPT, spoken)
            self._send(stt.SpeechEventType.END_OF_SPEECH)
        else:
            self._interim = spoken

    def _flush(self) -> None:
        if self._event_ch.closed:
            return
        if self._interim is None:
            self._send(stt.SpeechEventType.FINAL_TRANSCRIPT, "")
            return
        spoken, self._interim = self._interim, None
        self._send(stt.SpeechEventType.FINAL_TRANSCRIPT, spoken)
        self._send(stt.SpeechEventType.END_OF_SPEECH)

    async def _run(self) -> None:
        try:
            async for item in self._input_ch:
                # audio is ignored: the transcript comes from say()
                if isinstance(item, stt.RecognizeStream._FlushSentinel):
                    self._flush()
        finally:
            self._closed_input = True
            if self in self._scripted._streams:
                self._scripted._streams.remove(self)
