"""`ReportJson`: a report's JSON built in slices on the event loop, and kept element by element.

A report is a few small fields around two long lists, the session's chat history items and its
events (a 2,000-item call records ~14,000 events: ~6 MB of JSON). `json.dumps` of the whole
document is one C call that holds the GIL for tens to hundreds of milliseconds, on the event
loop or in a worker thread alike, while a voice frame is 10–20 ms. So here each element of the
two lists is made JSON-safe and encoded on its own, and the event loop runs between them
(`Slicer`: at most `SLICE` seconds of work at a time); `ReportJson` keeps each element's bytes,
so the next draft re-encodes only the elements that are new or whose dump changed (a fresh
`model_dump`, compared with the kept one through its `marshal` bytes, or its JSON text when it
holds other objects). The rest of the document is a small skeleton with a placeholder per list,
encoded with `encode_report` and spliced (`ReportParts`).

The bytes are exactly those of `encode_report(trim_report(doc))` of the whole document (compact
JSON is the concatenation of its parts; lone surrogates are replaced part by part, and never
meet across the ASCII between parts; `trim_report`'s order and arithmetic are followed with each
element's sizes). What this cannot reproduce raises `Unusual` (or the error itself), and the
caller serializes the whole document instead.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import itertools
import json
import logging
import marshal
import math
import time
import uuid
from array import array
from collections.abc import Generator, Sequence
from typing import Any

from endcall.protocol import SessionEnded, canonical_json, encode_report
from endcall.protocol.report import wire_utf8

__all__ = [
    "KEEP_KEYS",
    "SLICE",
    "Parts",
    "ReportJson",
    "ReportParts",
    "Slicer",
    "Unusual",
    "json_safe",
    "json_safe_strict",
    "log_trimmed",
    "raw_part",
]

logger = logging.getLogger("endcall")

#: the longest stretch of work between two yields to the event loop (seconds)
SLICE = 0.001
#: the timer a slice yields through (seconds; not 0, which `asyncio.sleep` turns into a bare
#: yield that puts the next slice first in line)
_YIELD = 1e-6
#: chat items dumped per `ChatContext.to_dict` call
_CHUNK = 8
#: the size of the blocks a list's bytes are kept in (bytes)
_BLOCK = 1 << 16
#: a draft this large is copied together in a worker thread (bytes)
_JOIN_IN_THREAD = 1 << 20
#: what makes this process's placeholders its own (random), and a count of the documents
_TAG = uuid.uuid4().hex
_BUILDS = itertools.count()
#: session keys kept while trimming (besides `chat_history`)
KEEP_KEYS = frozenset({"chat_history", "job_id", "room_id", "room", "timestamp"})


class Unusual(Exception):
    """Something the sliced path does not reproduce: serialize the whole document instead."""


# ---------------------------------------------------------------------------- JSON-safe


def _default(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:
            pass
    return repr(obj)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _loaded(text: str) -> Any:
    """`text` (from `json.dumps(allow_nan=True)`) parsed, non-finite floats → None. Only a text
    with a `NaN` or `Infinity` token can hold one: any other is returned as parsed."""
    value = json.loads(text)
    if "NaN" in text or "Infinity" in text:
        return _finite(value)
    return value


def json_safe(value: Any) -> Any:
    """A copy of `value` that `json.dumps(allow_nan=False)` accepts (unknown objects → repr,
    non-finite floats → None)."""
    try:
        text = json.dumps(value, default=_default, allow_nan=True)
    except (TypeError, ValueError) as e:
        return {"unserializable": f"{type(e).__name__}: {e}", "repr": repr(value)[:2000]}
    return _loaded(text)


def json_safe_strict(value: Any) -> Any:
    """`json_safe`, raising where it would give up (the sliced path then gives up too)."""
    return _loaded(json.dumps(value, default=_default, allow_nan=True))


def log_trimmed(end_id: str, size: int, limit: int, trimmed: dict[str, Any]) -> None:
    """The one WARNING a trimmed report gets: its size, the limit and what went."""
    logger.warning(
        "endcall: report %s is %d bytes, above %d: trimmed %s",
        end_id,
        size,
        limit,
        {k: v for k, v in trimmed.items() if k != "original_bytes"},
    )


# ---------------------------------------------------------------------------- slices


class Slicer:
    """`await tick()` after each piece of work: it yields to the event loop once `budget`
    seconds of work ran since the last yield. It yields through a timer, not `sleep(0)`: the
    next slice then runs after everything that became ready meanwhile (I/O, other tasks, due
    timers), never ahead of them."""

    def __init__(self, budget: float = SLICE) -> None:
        self.budget = budget
        self._since = time.perf_counter()

    async def tick(self) -> None:
        if time.perf_counter() - self._since >= self.budget:
            await asyncio.sleep(_YIELD)
            self._since = time.perf_counter()

    async def run(self, steps: Generator[None, None, Any]) -> Any:
        """Drive a generator of work (each `yield` is a point where the loop may run)."""
        try:
            while True:
                next(steps)
                await self.tick()
        except StopIteration as stop:
            return stop.value


def _run_sync(steps: Generator[None, None, Any]) -> Any:
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        return stop.value


# ---------------------------------------------------------------------------- parts


def _loose(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8", "replace"))


def _is_message(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type", "message") == "message"


class Parts:
    """The elements of one list, encoded: their UTF-8 compact JSON with the commas between, in
    blocks of about `_BLOCK` bytes (`chunks()`); per element, where its bytes end, what
    `trim_report` counts for it (`json.dumps` with default separators) and whether it is a
    message. A few dozen bytes objects and arrays of numbers: nothing the garbage collector has
    to look through (a list of 20,000 bytes objects made each young collection during a draft
    take milliseconds), and no buffer of megabytes copied as it grows."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []
        self.starts = array("q")  # where each block starts, the open one last
        self._open = bytearray()
        self.starts.append(0)
        self.size = 0  # bytes, commas included
        self.ends = array("q")
        self.loose = array("q")
        self.messages = bytearray()

    def add(self, data: bytes, loose: int, message: bool) -> None:
        if self.ends:
            self._open += b","
            self.size += 1
        self._open += data  # an element and the comma before it are in one block
        self.size += len(data)
        self.ends.append(self.size)
        self.loose.append(loose)
        self.messages.append(message)
        if len(self._open) >= _BLOCK:
            self.blocks.append(bytes(self._open))
            self._open = bytearray()
            self.starts.append(self.size)

    def chunks(self) -> list[bytes]:
        """The bytes, in order."""
        return [*self.blocks, bytes(self._open)] if self._open else list(self.blocks)

    def element(self, i: int) -> bytes:
        start = self.ends[i - 1] + 1 if i else 0
        b = bisect.bisect_right(self.starts, start) - 1
        block = self.blocks[b] if b < len(self.blocks) else self._open
        at = start - self.starts[b]
        return bytes(block[at : at + self.ends[i] - start])

    def __len__(self) -> int:
        return len(self.ends)

    @property
    def json_size(self) -> int:
        return self.size + 2


class _Kept:
    """What was encoded for each object (by `id`), in dicts of strings, bytes and numbers
    only (dicts the garbage collector never tracks), updated in place: a draft that rebuilt
    them would free tens of thousands of entries at once."""

    def __init__(self) -> None:
        self.keys: dict[int, bytes | str] = {}
        self.data: dict[int, bytes] = {}
        self.meta: dict[int, int] = {}  # loose size × 2 + message

    def add(self, out: Parts, ident: int, dump: Any) -> None:
        """Add the element of the object `ident` (whose dump is `dump`) to `out`: what was
        kept for it when its key is the same (an object at the same address with an equal
        dump would be the same element anyway), else its encoding (a function of the dump's
        JSON text), kept."""
        key = _key(dump)
        if self.keys.get(ident) == key:
            data, meta = self.data[ident], self.meta[ident]
        else:
            text = (
                key if isinstance(key, str) else json.dumps(dump, default=_default, allow_nan=True)
            )
            value = _loaded(text)
            data = wire_utf8(canonical_json(value))
            meta = _loose(value) * 2 + _is_message(value)
            self.keys[ident], self.data[ident], self.meta[ident] = key, data, meta
        out.add(data, meta >> 1, bool(meta & 1))

    async def forget_others(self, seen: array[int], slicer: Slicer) -> None:
        """Forget the objects not in `seen`, once they are a quarter of what is kept (items
        that left the history, a session's new list of events)."""
        if len(self.keys) <= len(seen) * 5 // 4 + 64:
            return
        fresh = _Kept()
        for n, ident in enumerate(seen):
            if ident in self.keys:
                fresh.keys[ident] = self.keys[ident]
                fresh.data[ident] = self.data[ident]
                fresh.meta[ident] = self.meta[ident]
            if n % 256 == 255:
                await slicer.tick()
        self.keys, self.data, self.meta = fresh.keys, fresh.data, fresh.meta


class ReportJson:
    """The encoded chat items and events of one session, kept between builds."""

    def __init__(self) -> None:
        self._items = _Kept()
        self._events = _Kept()

    async def history(self, history: Any, slicer: Slicer) -> Parts:
        """`history.to_dict(exclude_timestamp=False)["items"]` of a livekit `ChatContext`,
        encoded (None: no items; another kind of history raises `Unusual`)."""
        from livekit.agents.llm import ChatContext

        if history is None:
            return Parts()
        if type(history).to_dict is not ChatContext.to_dict:
            raise Unusual("the history is not a ChatContext")
        return await self.items(list(history.items), slicer)

    async def items(self, items: Sequence[Any], slicer: Slicer) -> Parts:
        """`ChatContext(items).to_dict(exclude_timestamp=False)["items"]`, encoded."""
        from livekit.agents.llm import ChatContext

        out = Parts()
        seen = array("q")
        for start in range(0, len(items), _CHUNK):
            chunk = list(items[start : start + _CHUNK])
            whole = ChatContext(chunk).to_dict(exclude_timestamp=False)
            dumps = whole.get("items") if isinstance(whole, dict) and len(whole) == 1 else None
            if not isinstance(dumps, list) or len(dumps) != len(chunk):
                raise Unusual("ChatContext.to_dict is not one dict per item")
            for obj, dump in zip(chunk, dumps, strict=True):
                self._items.add(out, id(obj), dump)
                seen.append(id(obj))
            await slicer.tick()
        await self._items.forget_others(seen, slicer)
        return out

    async def events(self, events: Sequence[Any], count: int, slicer: Slicer) -> Parts:
        """`[ev.model_dump() for ev in events[:count] if ev.type != "metrics_collected"]`,
        encoded. `events` is the session's own list, which only grows (a copy of tens of
        thousands of references would be traversed by the young collections)."""
        out = Parts()
        seen = array("q")
        for i in range(count):
            if len(events) < count:
                raise Unusual("the session's events shrank")
            ev = events[i]
            if ev.type == "metrics_collected":
                continue
            self._events.add(out, id(ev), ev.model_dump())
            seen.append(id(ev))
            await slicer.tick()
        await self._events.forget_others(seen, slicer)
        return out


def _key(dump: Any) -> bytes | str:
    """What tells whether a dump changed: its `marshal` bytes (version 2: no references, so
    equal bytes are equal values; exact built-in types only, ~5 times faster than JSON), else
    its JSON text (whatever `marshal` refuses: enums, datetimes, other objects)."""
    try:
        return marshal.dumps(dump, 2)
    except ValueError:
        return json.dumps(dump, default=_default, allow_nan=True)


def raw_part(value: Any) -> tuple[bytes, int, bool]:
    """An element added after the section was made JSON-safe (encoded as it is): its bytes,
    loose size and whether it is a message (`Parts.add`'s arguments)."""
    return wire_utf8(canonical_json(value)), _loose(value), _is_message(value)


# ---------------------------------------------------------------------------- the document


class ReportParts:
    """Placeholders for the session section's chat items and events, and the encoding of a
    document that holds them."""

    def __init__(self, items: Parts, events: Parts) -> None:
        tag = f"{_TAG}:{next(_BUILDS)}"
        #: strings that stand for the lists in the skeleton (NUL-framed: not user text)
        self.items_token = f"\x00endcall:{tag}:items\x00"
        self.events_token = f"\x00endcall:{tag}:events\x00"
        self.items = items
        self.events = events

    def encode(self, doc: SessionEnded, limit: int) -> bytes:
        """`encode_report(trim_report(doc, limit))` of the whole document (synchronous)."""
        return self._splice(*_run_sync(self._trim(doc, limit)))

    async def encode_sliced(self, doc: SessionEnded, limit: int, slicer: Slicer) -> bytes:
        """`encode`, with the event loop running during the trim's loops and while the bytes
        are copied together (a worker thread: `bytes.join` lets go of the GIL)."""
        pieces, size = self._pieces(*(await slicer.run(self._trim(doc, limit))))
        if size < _JOIN_IN_THREAD:
            return b"".join(pieces)
        return await asyncio.to_thread(b"".join, pieces)

    # ------------------------------------------------------------------ encoding

    def _lists(
        self, doc: SessionEnded, items: Parts, with_events: bool
    ) -> tuple[bytes, list[tuple[int, bytes, Parts]]]:
        """`encode_report(doc)`, and (position, token bytes, parts) of its placeholders."""
        head = encode_report(doc)
        found: list[tuple[int, bytes, Parts]] = []
        tokens = [(self.items_token, items)]
        if with_events:
            tokens.append((self.events_token, self.events))
        for token, parts in tokens:
            mark = wire_utf8(canonical_json(token))
            at = head.find(mark)
            if at < 0 or head.find(mark, at + 1) >= 0:
                raise Unusual("a placeholder is missing or repeated")
            found.append((at, mark, parts))
        found.sort(key=lambda x: x[0])
        return head, found

    def _size(self, doc: SessionEnded, items: Parts | int, with_events: bool) -> int:
        """The size of the document with `items` (or items of that JSON size)."""
        items_json = items if isinstance(items, int) else items.json_size
        head, found = self._lists(doc, Parts(), with_events)
        total = len(head)
        for _, mark, parts in found:
            total += (parts.json_size if parts is self.events else items_json) - len(mark)
        return total

    def _splice(self, doc: SessionEnded, items: Parts, with_events: bool) -> bytes:
        return b"".join(self._pieces(doc, items, with_events)[0])

    def _pieces(
        self, doc: SessionEnded, items: Parts, with_events: bool
    ) -> tuple[list[bytes], int]:
        """The document's bytes in pieces, in order (the skeleton's and the lists'), and their
        total size."""
        head, found = self._lists(doc, items, with_events)
        pieces: list[bytes] = []
        pos = 0
        size = len(head)
        for at, mark, parts in found:
            pieces += (head[pos:at], b"[", *parts.chunks(), b"]")
            pos = at + len(mark)
            size += parts.json_size - len(mark)
        pieces.append(head[pos:])
        return pieces, size

    # ------------------------------------------------------------------ trim_report

    def _trim(
        self, doc: SessionEnded, limit: int
    ) -> Generator[None, None, tuple[SessionEnded, Parts, bool]]:
        """`report.trim_report`, step for step, on the encoded elements (sizes added up, not
        serialized again)."""
        size = self._size(doc, self.items, True)
        if size <= limit:
            return doc, self.items, True
        session = dict(doc.session)
        trimmed: dict[str, Any] = {"original_bytes": size}
        with_events = True
        if session.get("events") != self.events_token:
            raise Unusual("the events are not the placeholder")
        if len(self.events):
            trimmed["events"] = len(self.events)
            session["events"] = []
            with_events = False
        history = session.get("chat_history")
        if not isinstance(history, dict) or history.get("items") != self.items_token:
            raise Unusual("the chat history is not the placeholder")
        parts = self.items
        kept = array("q", range(len(parts)))  # the items kept, by index
        items_json = parts.json_size
        overhead = 1024 + len(json.dumps(trimmed))
        token = self.items_token

        def current(items_json: int) -> int:
            d = dataclasses.replace(
                doc, session={**session, "chat_history": {**history, "items": token}}
            )
            return self._size(d, items_json, with_events)

        if current(items_json) + overhead > limit:
            dropped = [k for k in session if k not in KEEP_KEYS and k != "events"]
            for k in dropped:
                del session[k]
            if dropped:
                trimmed["sections"] = sorted(dropped)
        yield
        excess = current(items_json) + overhead - limit
        for kind, is_message in (("items", False), ("messages", True)):
            if excess <= 0:
                break
            keep = array("q")
            removed = 0
            for n, i in enumerate(kept):
                if excess > 0 and bool(parts.messages[i]) == is_message:
                    excess -= parts.loose[i] + 1
                    removed += 1
                    start = parts.ends[i - 1] + 1 if i else 0
                    items_json -= parts.ends[i] - start + 1  # and its comma
                else:
                    keep.append(i)
                if n % 256 == 255:
                    yield
            if not keep and kept:
                items_json = 2  # "[]": one comma fewer than the items
            kept = keep
            if removed:
                trimmed[kind] = removed
            excess = current(items_json) + overhead - limit
            yield
        session["chat_history"] = {**history, "items": token}
        end = {**doc.end, "trimmed": trimmed}
        log_trimmed(doc.end_id, size, limit, trimmed)
        out = dataclasses.replace(doc, session=session, end=end)
        if len(kept) == len(parts):  # only the events went
            return out, parts, with_events
        items = Parts()
        for n, i in enumerate(kept):
            items.add(parts.element(i), parts.loose[i], bool(parts.messages[i]))
            if n % 256 == 255:
                yield
        return out, items, with_events
