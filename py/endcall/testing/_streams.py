"""In-process doubles of LiveKit data streams (text and byte streams).

The loopback delivers data streams between :class:`~endcall.testing.LoopbackRoom`
instances without the native FFI: a writer pushes chunks to one reader per recipient,
and each reader is handed to the topic's handler registered with
``room.register_text_stream_handler`` / ``register_byte_stream_handler`` (as the real SDK
does). Streams without a handler for their topic are dropped by the recipient.

It depends on the SDK only (`rtc.LocalParticipant`, not the loopback's subclass), so
The loopback's modules (`endcall.testing.loopback` and its `_loopback_*` parts) import it and
nothing imports back.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Generic, Self, TypeVar, cast

from livekit import rtc

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
_I = TypeVar("_I", rtc.TextStreamInfo, rtc.ByteStreamInfo)


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


class _FedReader(Generic[_C, _I]):
    """What both loopback readers are: the stream's info and a chunk queue fed in process."""

    _kind: type[_C]

    def __init__(self, info: _I) -> None:
        # deliberately not calling the FFI-bound constructor of the SDK's reader
        self._info: _I = info
        self._chunks: _Chunks[_C] = _Chunks()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> _C:
        return await self._chunks.next(self._kind)

    @property
    def info(self) -> _I:
        return self._info

    def close(self) -> None:
        self._chunks.close()

    async def aclose(self) -> None:
        self.close()

    def _signal_disconnect(self) -> None:
        self._chunks.finish(_DISCONNECT_ERROR)


class LoopbackTextStreamReader(_FedReader[str, rtc.TextStreamInfo], rtc.TextStreamReader):
    """A ``rtc.TextStreamReader`` fed in process: iterate it or ``await read_all()``."""

    _kind = str


class LoopbackByteStreamReader(_FedReader[bytes, rtc.ByteStreamInfo], rtc.ByteStreamReader):
    """A ``rtc.ByteStreamReader`` fed in process: iterate it for ``bytes`` chunks."""

    _kind = bytes


LoopbackStreamReader = LoopbackTextStreamReader | LoopbackByteStreamReader
OpenReaders = Callable[
    [rtc.TextStreamInfo | rtc.ByteStreamInfo, str, list[str] | None], list[LoopbackStreamReader]
]
"""``(info, sender_identity, destinations) -> readers``: opens the stream at the recipients."""


class _FedWriter(Generic[_C, _I]):
    """What both loopback writers do: open the recipients' readers with the header, push
    each chunk to them, finish them at close (the SDK writer's FFI calls, in process)."""

    _info: _I
    _sender_identity: str
    _write_lock: asyncio.Lock
    _closed: bool
    _writer_handle: int | None
    _reader_kind: type[_FedReader[_C, _I]]

    def _feed(self, open_readers: OpenReaders, destinations: list[str] | None) -> None:
        self._info.timestamp = int(time.time() * 1000)
        self._open_readers = open_readers
        self._destinations = list(destinations) if destinations else None
        self._readers: list[LoopbackStreamReader] = []

    async def _opened(self) -> Self:
        """Open the stream at its recipients; returns the writer."""
        await self._send_header()
        return self

    async def _send_header(self) -> None:
        self._writer_handle = 0
        self._readers = self._open_readers(self._info, self._sender_identity, self._destinations)

    async def _push(self, chunk: _C) -> None:
        async with self._write_lock:
            if self._closed:
                raise RuntimeError("Cannot write after stream is closed")
            for reader in self._readers:
                if isinstance(reader, self._reader_kind):
                    cast("_FedReader[_C, _I]", reader)._chunks.push(chunk)

    async def aclose(self, *, reason: str = "", attributes: dict[str, str] | None = None) -> None:
        if self._closed:
            raise RuntimeError("Stream already closed")
        self._closed = True
        for reader in self._readers:
            if attributes:
                reader.info.attributes = {**(reader.info.attributes or {}), **attributes}
            reader._chunks.finish()


class LoopbackTextStreamWriter(_FedWriter[str, rtc.TextStreamInfo], rtc.TextStreamWriter):
    """A ``rtc.TextStreamWriter`` whose chunks go to the loopback recipients' readers."""

    _reader_kind = LoopbackTextStreamReader

    def __init__(
        self,
        local_participant: rtc.LocalParticipant,
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
        self._feed(open_readers, destination_identities)

    async def write(self, text: str) -> None:
        await self._push(text)


class LoopbackByteStreamWriter(_FedWriter[bytes, rtc.ByteStreamInfo], rtc.ByteStreamWriter):
    """A ``rtc.ByteStreamWriter`` whose chunks go to the loopback recipients' readers."""

    _reader_kind = LoopbackByteStreamReader

    def __init__(
        self,
        local_participant: rtc.LocalParticipant,
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
        self._feed(open_readers, destination_identities)

    async def write(self, data: bytes) -> None:
        await self._push(bytes(data))
