"""Building the `session.ended` report (protocol.md §6) from an `EndRecord` and the session.

- `session_section(ctx, session)`: `ctx.make_session_report(session).to_dict()` when it can be
  made (it raises while a RecorderIO is still recording, e.g. when the close timed out), else
  a smaller dict with the chat history and the session's events; always JSON-safe.
- `usage_summary(session)`: one entry per model (LLM tokens, TTS characters, STT audio
  seconds…) from `session.usage`.
- `build_report(...)` / `build_draft(...)`: the final report and the crash draft
  (`complete: false`, `ended_reason: agent-crashed`), serialized once with `encode_report`.
- `build_draft_async(...)` and `prepare_report(...)` + `PreparedReport.finish(...)`: the same
  bytes, with the long lists (chat items, events) serialized element by element in slices on
  the event loop and kept between builds (`endcall.agent.report_json`), so no draft or report
  of a long session holds the loop for more than about a millisecond at a time. What that path
  cannot reproduce is serialized whole instead (the draft in a worker thread).
- Size: a report is at most `MAX_REPORT_SIZE` bytes (8 MiB; protocol.md allows 16 MiB).
  A larger one is trimmed, in this order, until it fits: (1) the session's `events`, (2) the
  session's other sections except `chat_history` and the ids, (3) chat history items that are
  not messages (tool calls and outputs, handoffs), oldest first, (4) messages, oldest first.
  So the transcript is kept before events, and its end before its start. What was removed is
  listed in `end.trimmed` (`{"events": n, "sections": [...], "items": n, "messages": n,
  "original_bytes": n}`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from endcall.agent.annotations import AnnotationsSnapshot
from endcall.agent.end_machine import EndRecord
from endcall.agent.report_json import (
    KEEP_KEYS,
    ReportJson,
    ReportParts,
    Slicer,
    Unusual,
    json_safe,
    json_safe_strict,
    log_trimmed,
    raw_part,
)
from endcall.protocol import AnnotationsSource, EndReason, Initiator, SessionEnded, encode_report

__all__ = [
    "MAX_REPORT_SIZE",
    "PreparedReport",
    "ReportJson",
    "add_flushed_transcripts",
    "build_draft",
    "build_draft_async",
    "build_report",
    "json_safe",
    "prepare_report",
    "session_section",
    "trim_report",
    "usage_summary",
]

logger = logging.getLogger("endcall")

#: the largest report endcall sends (bytes); larger ones are trimmed (see the module docstring)
MAX_REPORT_SIZE = 8 * 1024 * 1024
_KEEP_KEYS = KEEP_KEYS


def _history_dict(session: Any) -> dict[str, Any]:
    try:
        history = session.history
        if history is None:
            return {"items": []}
        return dict(history.to_dict(exclude_timestamp=False))
    except Exception as e:
        logger.warning("endcall: could not serialize the chat history: %s", e)
        return {"items": []}


class _Snapshot:
    """What a draft reads from a session, taken on the event loop: a copy of the chat items
    list (not of the items, which do not change once added), and how many events there are."""

    def __init__(self, session: Any) -> None:
        self.history: Any = None
        try:
            from livekit.agents.llm import ChatContext

            self.history = ChatContext(list(session.history.items))
        except Exception as e:
            logger.debug("endcall: no chat history to snapshot: %s", e)
        #: the session's own list of events (it only grows) and how many there are now: a
        #: copy of tens of thousands of references would slow the young collections down
        self.events: list[Any] = []
        self.count = 0
        try:
            self.events = getattr(session, "_recorded_events", [])
            self.count = len(self.events)
        except Exception:
            self.events, self.count = [], 0

    @property
    def _recorded_events(self) -> list[Any]:
        """The events when the snapshot was taken (what `session_section` reads)."""
        return list(self.events[: self.count])

    @property
    def items(self) -> list[Any]:
        return self.history.items if self.history is not None else []


def session_section(ctx: Any, session: Any, *, full: bool = True) -> dict[str, Any]:
    """The report's `session` object. `full=False` (drafts) skips `make_session_report`."""
    if full and ctx is not None:
        try:
            return dict(json_safe(ctx.make_session_report(session).to_dict()))
        except Exception as e:
            logger.info("endcall: make_session_report failed (%s); using a reduced report", e)
    try:
        events: list[Any] = [
            ev.model_dump()
            for ev in getattr(session, "_recorded_events", [])
            if getattr(ev, "type", "") != "metrics_collected"
        ]
    except Exception:
        events = []
    return dict(json_safe(_reduced_section(ctx, _history_dict(session), events)))


def _reduced_section(ctx: Any, chat_history: Any, events: Any) -> dict[str, Any]:
    """The `session` object without `make_session_report`: the chat history, the events, the
    job's ids and a timestamp (not made JSON-safe yet)."""
    section: dict[str, Any] = {"chat_history": chat_history, "events": events}
    if ctx is not None:
        try:
            section.update(job_id=ctx.job.id, room_id=ctx.job.room.sid, room=ctx.job.room.name)
        except Exception:
            pass
    section["timestamp"] = time.time()
    return section


def usage_summary(session: Any) -> dict[str, Any]:
    """`{"models": [{"type": "llm_usage", "provider", "model", "input_tokens", ...}]}`."""
    models: list[dict[str, Any]] = []
    try:
        for summary in session.usage.model_usage:
            entry = {"type": getattr(summary, "type", None)}
            entry.update(summary.model_dump(exclude_defaults=True))
            models.append(entry)
    except Exception as e:
        logger.debug("endcall: no usage summary: %s", e)
    return {"models": json_safe(models)}


def _job_fields(ctx: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"job_id": None, "agent_name": None, "room_sid": None}
    if ctx is None:
        return out
    try:
        job = ctx.job
        out["job_id"] = job.id or None
        out["agent_name"] = job.agent_name or None
        out["room_sid"] = job.room.sid or None
    except Exception:
        pass
    return out


def add_flushed_transcripts(section: dict[str, Any], texts: Sequence[str]) -> None:
    """Append user transcripts that became final but were never committed as a user turn
    (the session closed before end of turn) to the report's chat history, marked
    `extra.endcall_flushed`."""
    if not texts:
        return
    history = section.setdefault("chat_history", {})
    items = history.setdefault("items", []) if isinstance(history, dict) else None
    if items is None:
        return
    items.append(_flushed_item(texts))


def _flushed_item(texts: Sequence[str]) -> dict[str, Any]:
    return {
        "id": "endcall_flushed_user_turn",
        "type": "message",
        "role": "user",
        "content": [" ".join(t.strip() for t in texts if t.strip())],
        "interrupted": False,
        "created_at": time.time(),
        "extra": {"endcall_flushed": True},
    }


def _source(annotations: dict[str, Any] | None) -> AnnotationsSource:
    """The report's `annotations_source`: what the snapshot says, else the agent's code."""
    return annotations.source if isinstance(annotations, AnnotationsSnapshot) else "code"


def build_report(
    record: EndRecord,
    *,
    ctx: Any,
    session: Any,
    room_name: str,
    started_at: float,
    end_section: dict[str, Any],
    flushed_transcripts: Sequence[str] = (),
    annotations: dict[str, Any] | None = None,
) -> bytes:
    """The final `session.ended` body, serialized once."""
    section = session_section(ctx, session)
    add_flushed_transcripts(section, flushed_transcripts)
    doc = _final_doc(record, room_name, started_at, section, end_section, annotations)
    return _encode(ctx, usage_summary(session), doc)


def _final_doc(
    record: EndRecord,
    room_name: str,
    started_at: float,
    section: dict[str, Any],
    end_section: dict[str, Any],
    annotations: dict[str, Any] | None,
) -> SessionEnded:
    assert record.reason is not None and record.initiator is not None
    return SessionEnded(
        end_id=record.end_id,
        ended_reason=record.reason,
        initiator=record.initiator,
        room_name=room_name,
        started_at=started_at,
        ended_at=record.requested_at or time.time(),
        complete=True,
        request_id=record.request_id,
        meta=json_safe(record.meta) if record.meta is not None else None,
        annotations=dict(annotations or {}),
        annotations_source=_source(annotations),
        session=section,
        end=dict(json_safe(end_section)),
    )


class _Draft:
    """What a draft needs, taken now (on the event loop): `run` serializes it whole (in any
    thread), `sliced` element by element on the event loop."""

    def __init__(
        self,
        end_id: str,
        *,
        ctx: Any,
        session: Any,
        room_name: str,
        started_at: float,
        annotations: dict[str, Any] | None = None,
    ) -> None:
        self.ctx = ctx
        self.now = time.time()
        self.snap = _Snapshot(session)
        self.usage = usage_summary(session)
        self.end_id = end_id
        self.room_name = room_name
        self.started_at = started_at
        self.notes = dict(annotations or {})
        self.source = _source(annotations)

    def _doc(self, section: dict[str, Any]) -> SessionEnded:
        return SessionEnded(
            end_id=self.end_id,
            ended_reason=EndReason.AGENT_CRASHED.value,
            initiator=Initiator(kind="system", identity=None),
            room_name=self.room_name,
            started_at=self.started_at,
            ended_at=self.now,
            complete=False,
            annotations=self.notes,
            annotations_source=self.source,
            session=section,
            end={"channel": None, "checkpoint_at": round(self.now, 3)},
        )

    def run(self) -> bytes:
        section = session_section(self.ctx, self.snap, full=False)
        return _encode(self.ctx, self.usage, self._doc(section))

    async def sliced(self, cache: ReportJson, slicer: Slicer) -> bytes:
        items = await cache.items(self.snap.items, slicer)
        events = await cache.events(self.snap.events, self.snap.count, slicer)
        parts = ReportParts(items, events)
        chat_history = {"items": parts.items_token}
        section = json_safe_strict(_reduced_section(self.ctx, chat_history, parts.events_token))
        doc = _prepare(self.ctx, self.usage, self._doc(dict(section)))
        return await parts.encode_sliced(doc, MAX_REPORT_SIZE, slicer)


def build_draft(
    end_id: str,
    *,
    ctx: Any,
    session: Any,
    room_name: str,
    started_at: float,
    annotations: dict[str, Any] | None = None,
) -> bytes:
    """The crash draft: the transcript so far as a `complete: false` `agent-crashed` report."""
    return _Draft(
        end_id,
        ctx=ctx,
        session=session,
        room_name=room_name,
        started_at=started_at,
        annotations=annotations,
    ).run()


async def build_draft_async(
    end_id: str,
    *,
    ctx: Any,
    session: Any,
    room_name: str,
    started_at: float,
    annotations: dict[str, Any] | None = None,
    cache: ReportJson | None = None,
) -> bytes:
    """`build_draft`'s bytes without holding the event loop: the snapshot (copying two lists)
    is taken now, then the chat items and events are serialized one by one in slices on the
    loop, reusing what `cache` kept from the previous draft (pass the same `ReportJson` to every
    draft of a session). What the sliced path cannot reproduce is serialized whole in a worker
    thread."""
    draft = _Draft(
        end_id,
        ctx=ctx,
        session=session,
        room_name=room_name,
        started_at=started_at,
        annotations=annotations,
    )
    try:
        return await draft.sliced(cache if cache is not None else ReportJson(), Slicer())
    except Exception as e:
        logger.debug("endcall: the draft is serialized whole (%s: %s)", type(e).__name__, e)
    return await asyncio.to_thread(draft.run)


class PreparedReport:
    """The final report's session section, serialized in slices (`prepare_report`); `finish`
    adds what is known only at the end and gives `build_report`'s bytes."""

    def __init__(self, ctx: Any, session: Any) -> None:
        self._ctx = ctx
        self._session = session
        self._parts: ReportParts | None = None
        self._section: dict[str, Any] = {}

    async def _prepare(self, cache: ReportJson, slicer: Slicer) -> None:
        ctx, session = self._ctx, self._session
        report = None
        if ctx is not None:
            try:
                report = ctx.make_session_report(session)
            except Exception as e:
                logger.info("endcall: make_session_report failed (%s); using a reduced report", e)
        if report is None:
            items = await cache.history(session.history, slicer)
            recorded = getattr(session, "_recorded_events", [])
            events = await cache.events(recorded, len(recorded), slicer)
            parts = ReportParts(items, events)
            section = _reduced_section(ctx, {"items": parts.items_token}, parts.events_token)
        else:
            items = await cache.history(report.chat_history, slicer)
            events = await cache.events(report.events, len(report.events), slicer)
            parts = ReportParts(items, events)
            await asyncio.sleep(0)  # livekit's to_dict goes through every event once more
            section = _full_section(report, parts)
        self._section = dict(json_safe_strict(section))
        self._parts = parts

    def finish(
        self,
        record: EndRecord,
        *,
        room_name: str,
        started_at: float,
        end_section: dict[str, Any],
        flushed_transcripts: Sequence[str] = (),
        annotations: dict[str, Any] | None = None,
    ) -> bytes:
        """`build_report(record, ...)`'s bytes (once: it uses up what was prepared)."""
        parts, self._parts = self._parts, None
        if parts is not None:
            try:
                section = dict(self._section)
                history = section["chat_history"] = dict(section["chat_history"])
                if history.get("items") != parts.items_token:
                    raise Unusual("the chat history is not the placeholder")
                if flushed_transcripts:
                    parts.items.add(*raw_part(_flushed_item(flushed_transcripts)))
                doc = _final_doc(record, room_name, started_at, section, end_section, annotations)
                usage = usage_summary(self._session)
                return parts.encode(_prepare(self._ctx, usage, doc), MAX_REPORT_SIZE)
            except Exception as e:
                logger.debug(
                    "endcall: the report is serialized whole (%s: %s)", type(e).__name__, e
                )
        return build_report(
            record,
            ctx=self._ctx,
            session=self._session,
            room_name=room_name,
            started_at=started_at,
            end_section=end_section,
            flushed_transcripts=flushed_transcripts,
            annotations=annotations,
        )


def _full_section(report: Any, parts: ReportParts) -> dict[str, Any]:
    """`report.to_dict()` (a livekit `SessionReport`) with the placeholders for its chat items
    and events, in the same key order."""
    head = report.to_dict(include_chat_history=False, include_events=False)
    empty = type(report.chat_history)([])
    order = dataclasses.replace(report, events=[], chat_history=empty).to_dict()
    if order.get("events") != [] or order.get("chat_history") != {"items": []}:
        raise Unusual("SessionReport.to_dict has another shape")
    if set(order) != set(head) | {"events", "chat_history"}:
        raise Unusual("SessionReport.to_dict has other keys")
    section: dict[str, Any] = {}
    for key in order:
        if key == "events":
            section[key] = parts.events_token
        elif key == "chat_history":
            section[key] = {"items": parts.items_token}
        else:
            section[key] = head[key]
    return section


async def prepare_report(ctx: Any, session: Any, cache: ReportJson | None = None) -> PreparedReport:
    """Serialize the final report's session section without holding the event loop (see
    `build_draft_async`; the same `cache` reuses what the drafts serialized). Never raises:
    what the sliced path cannot do, `finish` does whole."""
    prepared = PreparedReport(ctx, session)
    try:
        await prepared._prepare(cache if cache is not None else ReportJson(), Slicer())
    except Exception as e:
        logger.debug("endcall: the report will be serialized whole (%s: %s)", type(e).__name__, e)
        prepared._parts = None
    return prepared


def trim_report(doc: SessionEnded, limit: int = MAX_REPORT_SIZE) -> SessionEnded:
    """`doc` cut down to at most ``limit`` bytes serialized, in the documented order (events,
    other session sections, non-message history items, messages; oldest first), with what was
    removed in ``end.trimmed``. Returns ``doc`` itself when it fits."""
    size = len(encode_report(doc))
    if size <= limit:
        return doc
    session = dict(doc.session)
    trimmed: dict[str, Any] = {"original_bytes": size}
    events = session.get("events")
    if isinstance(events, list) and events:
        trimmed["events"] = len(events)
        session["events"] = []
    history = session.get("chat_history")
    items = list(history.get("items", [])) if isinstance(history, dict) else []
    overhead = 1024 + len(json.dumps(trimmed))  # room for `end.trimmed` itself

    def current() -> int:
        d = dataclasses.replace(
            doc, session={**session, "chat_history": {**(history or {}), "items": items}}
        )
        return len(encode_report(d))

    if current() + overhead > limit:
        dropped = [k for k in session if k not in _KEEP_KEYS and k != "events"]
        for k in dropped:
            del session[k]
        if dropped:
            trimmed["sections"] = sorted(dropped)
    sizes = [len(json.dumps(item, ensure_ascii=False).encode("utf-8", "replace")) for item in items]
    excess = current() + overhead - limit
    for kind, is_message in (("items", False), ("messages", True)):
        if excess <= 0:
            break
        keep: list[Any] = []
        keep_sizes: list[int] = []
        removed = 0
        for item, n in zip(items, sizes, strict=True):
            message = isinstance(item, dict) and item.get("type", "message") == "message"
            if excess > 0 and message == is_message:
                excess -= n + 1
                removed += 1
                continue
            keep.append(item)
            keep_sizes.append(n)
        items, sizes = keep, keep_sizes
        if removed:
            trimmed[kind] = removed
        excess = current() + overhead - limit
    if isinstance(history, dict):
        session["chat_history"] = {**history, "items": items}
    end = {**doc.end, "trimmed": trimmed}
    out = dataclasses.replace(doc, session=session, end=end)
    log_trimmed(doc.end_id, size, limit, trimmed)
    return out


def _encode(ctx: Any, usage: dict[str, Any], doc: SessionEnded) -> bytes:
    """Serialize `doc` with what every report carries (`_prepare`), trimmed to
    `MAX_REPORT_SIZE`."""
    return encode_report(trim_report(_prepare(ctx, usage, doc), MAX_REPORT_SIZE))


def _prepare(ctx: Any, usage: dict[str, Any], doc: SessionEnded) -> SessionEnded:
    """`doc` with the job's identifiers (from `ctx`), the session's usage, and its times
    rounded to the millisecond (never ending before it started)."""
    job = _job_fields(ctx)
    return dataclasses.replace(
        doc,
        room_sid=job["room_sid"],
        job_id=job["job_id"],
        agent_name=job["agent_name"],
        started_at=round(doc.started_at, 3),
        ended_at=round(max(doc.ended_at, doc.started_at), 3),
        usage=usage,
    )
