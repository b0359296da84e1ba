"""Building the `session.ended` report (protocol.md §6) from an `EndRecord` and the session.

- `session_section(ctx, session)`: `ctx.make_session_report(session).to_dict()` when it can be
  made (it raises while a RecorderIO is still recording, e.g. when the close timed out), else
  a smaller dict with the chat history and the session's events; always JSON-safe.
- `usage_summary(session)`: one entry per model (LLM tokens, TTS characters, STT audio
  seconds…) from `session.usage`.
- `build_report(...)` / `build_draft(...)`: the final report and the crash draft
  (`complete: false`, `ended_reason: agent-crashed`), serialized once with `encode_report`;
  `build_draft_async(...)` takes a snapshot on the event loop and serializes it in a worker
  thread, so a long session's draft never blocks the loop.
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
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from endcall.agent.annotations import AnnotationsSnapshot
from endcall.agent.end_machine import EndRecord
from endcall.protocol import AnnotationsSource, EndReason, Initiator, SessionEnded, encode_report

__all__ = [
    "MAX_REPORT_SIZE",
    "add_flushed_transcripts",
    "build_draft",
    "build_draft_async",
    "build_report",
    "json_safe",
    "session_section",
    "trim_report",
    "usage_summary",
]

logger = logging.getLogger("endcall")

#: the largest report endcall sends (bytes); larger ones are trimmed (see the module docstring)
MAX_REPORT_SIZE = 8 * 1024 * 1024
#: session keys kept while trimming (besides `chat_history`)
_KEEP_KEYS = frozenset({"chat_history", "job_id", "room_id", "room", "timestamp"})


def json_safe(value: Any) -> Any:
    """A copy of `value` that `json.dumps(allow_nan=False)` accepts (unknown objects → repr,
    non-finite floats → None)."""

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

    try:
        text = json.dumps(value, default=_default, allow_nan=True)
    except (TypeError, ValueError) as e:
        return {"unserializable": f"{type(e).__name__}: {e}", "repr": repr(value)[:2000]}
    return _finite(json.loads(text))


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
    """What a draft reads from a session, copied on the event loop (the lists, not the items,
    which do not change once added) so that it can be serialized in a worker thread."""

    def __init__(self, session: Any) -> None:
        self.history: Any = None
        self._recorded_events: list[Any] = []
        try:
            from livekit.agents.llm import ChatContext

            self.history = ChatContext(list(session.history.items))
        except Exception as e:
            logger.debug("endcall: no chat history to snapshot: %s", e)
        try:
            self._recorded_events = list(getattr(session, "_recorded_events", []))
        except Exception:
            self._recorded_events = []


def session_section(ctx: Any, session: Any, *, full: bool = True) -> dict[str, Any]:
    """The report's `session` object. `full=False` (drafts) skips `make_session_report`."""
    if full and ctx is not None:
        try:
            return dict(json_safe(ctx.make_session_report(session).to_dict()))
        except Exception as e:
            logger.info("endcall: make_session_report failed (%s); using a reduced report", e)
    section: dict[str, Any] = {"chat_history": _history_dict(session)}
    try:
        section["events"] = [
            ev.model_dump()
            for ev in getattr(session, "_recorded_events", [])
            if getattr(ev, "type", "") != "metrics_collected"
        ]
    except Exception:
        section["events"] = []
    if ctx is not None:
        try:
            section.update(job_id=ctx.job.id, room_id=ctx.job.room.sid, room=ctx.job.room.name)
        except Exception:
            pass
    section["timestamp"] = time.time()
    return dict(json_safe(section))


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
    items.append(
        {
            "id": "endcall_flushed_user_turn",
            "type": "message",
            "role": "user",
            "content": [" ".join(t.strip() for t in texts if t.strip())],
            "interrupted": False,
            "created_at": time.time(),
            "extra": {"endcall_flushed": True},
        }
    )


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
    assert record.reason is not None and record.initiator is not None
    return _encode(
        ctx,
        usage_summary(session),
        SessionEnded(
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
        ),
    )


def _draft_job(
    end_id: str,
    *,
    ctx: Any,
    session: Any,
    room_name: str,
    started_at: float,
    annotations: dict[str, Any] | None = None,
) -> Callable[[], bytes]:
    """Take what the draft needs now (on the event loop); the returned function serializes it
    and may run in any thread."""
    now = time.time()
    snap = _Snapshot(session)
    usage = usage_summary(session)
    notes = dict(annotations or {})
    source = _source(annotations)

    def run() -> bytes:
        return _encode(
            ctx,
            usage,
            SessionEnded(
                end_id=end_id,
                ended_reason=EndReason.AGENT_CRASHED.value,
                initiator=Initiator(kind="system", identity=None),
                room_name=room_name,
                started_at=started_at,
                ended_at=now,
                complete=False,
                annotations=notes,
                annotations_source=source,
                session=session_section(ctx, snap, full=False),
                end={"channel": None, "checkpoint_at": round(now, 3)},
            ),
        )

    return run


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
    return _draft_job(
        end_id,
        ctx=ctx,
        session=session,
        room_name=room_name,
        started_at=started_at,
        annotations=annotations,
    )()


async def build_draft_async(
    end_id: str,
    *,
    ctx: Any,
    session: Any,
    room_name: str,
    started_at: float,
    annotations: dict[str, Any] | None = None,
) -> bytes:
    """`build_draft` with the serialization in a worker thread: only the snapshot (copying two
    lists) runs on the event loop."""
    job = _draft_job(
        end_id,
        ctx=ctx,
        session=session,
        room_name=room_name,
        started_at=started_at,
        annotations=annotations,
    )
    return await asyncio.to_thread(job)


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
    logger.warning(
        "endcall: report %s is %d bytes, above %d: trimmed %s",
        doc.end_id,
        size,
        limit,
        {k: v for k, v in trimmed.items() if k != "original_bytes"},
    )
    return out


def _encode(ctx: Any, usage: dict[str, Any], doc: SessionEnded) -> bytes:
    """Serialize `doc` with what every report carries: the job's identifiers (from `ctx`),
    the session's usage, and its times rounded to the millisecond (never ending before it
    started); trimmed to `MAX_REPORT_SIZE`."""
    job = _job_fields(ctx)
    doc = dataclasses.replace(
        doc,
        room_sid=job["room_sid"],
        job_id=job["job_id"],
        agent_name=job["agent_name"],
        started_at=round(doc.started_at, 3),
        ended_at=round(max(doc.ended_at, doc.started_at), 3),
        usage=usage,
    )
    return encode_report(trim_report(doc, MAX_REPORT_SIZE))
