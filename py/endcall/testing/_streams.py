"""In-process doubles of LiveKit data streams (text and byte streams).

The loopback delivers data streams between :class:`~endcall.testing.LoopbackRoom`
instances without the native FFI: a writer pushes chunks to one reader per recipient,
and each reader is handed to the topic's handler registered with
``room.register_text_stream_handler`` / ``register_byte_stream_handler`` (as the real SDK
does). Streams without a handler for their topic are dropped by the recipient.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from livekit import rtc

if TYPE_CHECKING:
    from .loopback import LoopbackLocalParticipant

__all__ = [
    "LoopbackByteStreamReader",
    "LoopbackByteStreamWriter",
    "LoopbackStreamReader",
    "LoopbackTextStreamReader",
    "LoopbackTextStreamWriter",
    "OpenReaders",
]

_EOS = object()
_DISCONNECT_ERROR = "room disconnected"

_C = TypeVar("_C", str, bytes)


class _Chunks(Generic[_C]):
    """The chunk queue behind a reader: chunks, then an end (maybe with an error)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.closed = False
        self.error: rtc.StreamError | None = None

    def push(self, chunk: _C) -> None:
        self.queue.put_nowait(chunk)

    def finish(self, error: str | None = None) -> None:
        if error is not None and self.error is None:
            self.error = rtc.StreamError(error)
        self.queue.put_nowait(_EOS)

    async def next(self, kind: type[_C]) -> _C:
        if self.closed:
            if self.error is not None:
                raise self.error
            raise StopAsyncIteration
        item = await self.queue.get()
        if item is _EOS:
            self.closed = True
            if self.error is not None:
                raise self.error
            raise StopAsyncIteration
        assert isinstance(item, kind)
        return item

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(_EOS)


class LoopbackTextStreamReader(rtc.TextStreamReader):
    """A ``rtc.TextStreamReader`` fed in process: iterate it or ``await read_all()``."""

    def __init__(self, info: rtc.TextStreamInfo) -> None:
        # deliberately not calling the FFI-bound base constructor
        self._info = info
        self._chunks = _Chunks[str]()

    def __aiter__(self) -> LoopbackTextStreamReader:
        return self

    async def __anext__(self) -> str:
        return await self._chunks.next(str)

    @property
    def info(self) -> rtc.TextStreamInfo:
        return self._info

    def close(self) -> None:
        self._chunks.close()

    async def aclose(self) -> None:
        self.close()

    def _signal_disconnect(self) -> None:
        self._chunks.finish(_DISCONNECT_ERROR)


class LoopbackByteStreamReader(rtc.ByteStreamReader):
    """A ``rtc.ByteStreamReader`` fed in process: iterate it for ``bytes`` chunks."""

    def __init__(self, info: rtc.ByteStreamInfo) -> None:
        self._info = info
        self._chunks = _Chunks[bytes]()

    def __aiter__(self) -> LoopbackByteStreamReader:
        return self

    async def __anext__(self) -> bytes:
        return await self._chunks.next(bytes)

    @property
    def info(self) -> rtc.ByteStreamInfo:
        return self._info

    def close(self) -> None:
        self._chunks.close()

    async def aclose(self) -> None:
        self.close()

    def _signal_disconnect(self) -> None:
        self._chunks.finish(_DISCONNECT_ERROR)


LoopbackStreamReader = LoopbackTextStreamReader | LoopbackByteStreamReader
OpenReaders = Callable[
    [rtc.TextStreamInfo | rtc.ByteStreamInfo, str, list[str] | None], list[LoopbackStreamReader]
]
"""``(info, sender_identity, destinations) -> readers``: opens the stream at the recipients."""


def _finish_readers(readers: list[LoopbackStreamReader], attributes: dict[str, str] | None) -> None:
    for reader in readers:
        if attributes:
            reader.info.attributes = {**(reader.info.attributes or {}), **attributes}
        reader._chunks.finish()


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
        open_readers: OpenReaders,
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
        self._readers: list[LoopbackStreamReader] = []

    async def _send_header(self) -> None:
        self._writer_handle = 0
        self._readers = self._open_readers(self._info, self._sender_identity, self._destinations)

    async def write(self, text: str) -> None:
        async with self._write_lock:
            if self._closed:
                raise RuntimeError("Cannot write after stream is closed")
            for reader in self._readers:
                if isinstance(reader, LoopbackTextStreamReader):
                    reader._chunks.push(text)

    async def aclose(self, *, reason: str = "", attributes: dict[str, str] | None = None) -> None:
        if self._closed:
            raise RuntimeError("Stream already closed")
        self._closed = True
        _finish_readers(self._readers, attributes)


class LoopbackByteStreamWriter(rtc.ByteStreamWriter):
    """A ``rtc.ByteStreamWriter`` whose chunks go to the loopback recipients' readers."""

    def __init__(
        self,
        local_participant: LoopbackLocalParticipant,
        *,
        name: str,
        topic: str,
        attributes: dict[str, str] | None,
        stream_id: str | None,
        total_size: int | None,
        mime_type: str,
        destination_identities: list[str] | None,
        open_readers: OpenReaders,
    ) -> None:
        super().__init__(
            local_participant,
            name=name,
            topic=topic,
            attributes=attributes,
            stream_id=stream_id or str(uuid.uuid4()),
            total_size=total_size,
            mime_type=mime_type,
            destination_identities=destination_identities,
        )
        self._info.timestamp = int(time.time() * 1000)
        self._open_readers = open_readers
        self._destinations = list(destination_identities) if destination_identities else None
        self._readers: list[LoopbackStreamReader] = []

    async def _send_header(self) -> None:
        self._writer_handle = 0
        self._readers = self._open_readers(self._info, self._sender_identity, self._destinations)

    async def write(self, data: bytes) -> None:
        async with self._write_lock:
            if self._closed:
                raise RuntimeError("Cannot write after stream is closed")
            for reader in self._readers:
                if isinstance(reader, LoopbackByteStreamReader):
                    reader._chunks.push(bytes(data))

    async def aclose(self, *, reason: str = "", attributes: dict[str, str] | None = None) -> None:
        if self._closed:
            raise RuntimeError("Stream already closed")
        self._closed = True
        _finish_readers(self._readers, attributes)
