"""In-process doubles of LiveKit text data streams (``stream_text`` / ``send_text``).

The loopback delivers text streams between :class:`~endcall.testing.LoopbackRoom`
instances without the native FFI: a writer pushes chunks to one reader per recipient,
and each reader is handed to the topic's handler registered with
``room.register_text_stream_handler`` (as the real SDK does).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from livekit import rtc

if TYPE_CHECKING:
    from .loopback import LoopbackLocalParticipant

__all__ = ["LoopbackTextStreamReader", "LoopbackTextStreamWriter"]

_EOS = object()


class LoopbackTextStreamReader(rtc.TextStreamReader):
    """A ``rtc.TextStreamReader`` fed in process: iterate it or ``await read_all()``."""

    def __init__(self, info: rtc.TextStreamInfo) -> None:
        # deliberately not calling the FFI-bound base constructor
        self._info = info
        self._chunks: asyncio.Queue[object] = asyncio.Queue()
        self._closed = False
        self._error: rtc.StreamError | None = None

    def _push(self, chunk: str) -> None:
        self._chunks.put_nowait(chunk)

    def _finish(self, attributes: dict[str, str] | None, error: str | None = None) -> None:
        if attributes:
            self._info.attributes = {**(self._info.attributes or {}), **attributes}
        if error is not None:
            self._error = rtc.StreamError(error)
        self._chunks.put_nowait(_EOS)

    def __aiter__(self) -> LoopbackTextStreamReader:
        return self

    async def __anext__(self) -> str:
        if self._closed:
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        item = await self._chunks.get()
        if item is _EOS:
            self._closed = True
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        assert isinstance(item, str)
        return item

    @property
    def info(self) -> rtc.TextStreamInfo:
        return self._info

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._chunks.put_nowait(_EOS)

    async def aclose(self) -> None:
        self.close()

    def _signal_disconnect(self) -> None:
        self._finish(None, "room disconnected")


class LoopbackTextStreamWriter(rtc.TextStreamWriter):
    """A ``rtc.TextStreamWriter`` whose chunks go to the loopback recipients' readers."""

    def __init__(
        self,
        local_participant: LoopbackLocalParticipant,
        *,
        topic: str,
        attributes: dict[str, str] | None,
        stream_id: str | None,
        total_size: int | None,
        reply_to_id: str | None,
        destination_identities: list[str] | None,
        sender_identity: str | None,
        open_readers: Callable[[rtc.TextStreamInfo, str, list[str] | None], list[object]],
    ) -> None:
        super().__init__(
            local_participant,
            topic=topic,
            attributes=attributes,
            stream_id=stream_id or str(uuid.uuid4()),
            total_size=total_size,
            reply_to_id=reply_to_id,
            destination_identities=destination_identities,
            sender_identity=sender_identity,
        )
        self._info.timestamp = int(time.time() * 1000)
        self._open_readers = open_readers
        self._destinations = list(destination_identities) if destination_identities else None
        self._readers: list[LoopbackTextStreamReader] = []

    async def _send_header(self) -> None:
        self._writer_handle = 0
        readers = self._open_readers(self._info, self._sender_identity, self._destinations)
        self._readers = [r for r in readers if isinstance(r, LoopbackTextStreamReader)]

    async def write(self, text: str) -> None:
        async with self._write_lock:
            if self._closed:
                raise RuntimeError("Cannot write after stream is closed")
            for reader in self._readers:
                reader._push(text)

    async def aclose(self, *, reason: str = "", attributes: dict[str, str] | None = None) -> None:
        if self._closed:
            raise RuntimeError("Stream already closed")
        self._closed = True
        for reader in self._readers:
            reader._finish(attributes)
