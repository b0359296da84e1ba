"""Building the `session.ended` report (protocol.md §6) from an `EndRecord` and the session.

- `session_section(ctx, session)`: `ctx.make_session_report(session).to_dict()` when it can be
  made (it raises while a RecorderIO is still recording, e.g. when the close timed out), else
  a smaller dict with the chat history and the session's events; always JSON-safe.
- `usage_summary(session)`: one entry per model (LLM tokens, TTS characters, STT audio
  seconds…) from `session.usage`.
- `build_report(...)` / `build_draft(...)`: the final report and the crash draft
  (`complete: false`, `ended_reason: agent-crashed`), serialized once with `encode_report`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from .machine import EndRecord
from .protocol import EndReason, Initiator, SessionEnded, encode_report

__all__ = [
    "add_flushed_transcripts",
    "build_draft",
    "build_report",
    "json_safe",
    "session_section",
    "usage_summary",
]

logger = logging.getLogger("endcall")


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
        return dict(history.to_dict(exclude_timestamp=False))
    except Exception as e:
        logger.warning("endcall: could not serialize the chat history: %s", e)
        return {"items": []}


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
        session,
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
            session=section,
            end=dict(json_safe(end_section)),
        ),
    )


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
    now = time.time()
    return _encode(
        ctx,
        session,
        SessionEnded(
            end_id=end_id,
            ended_reason=EndReason.AGENT_CRASHED.value,
            initiator=Initiator(kind="system", identity=None),
            room_name=room_name,
            started_at=started_at,
            ended_at=now,
            complete=False,
            annotations=dict(annotations or {}),
            session=session_section(ctx, session, full=False),
            end={"channel": None, "checkpoint_at": round(now, 3)},
        ),
    )


def _encode(ctx: Any, session: Any, doc: SessionEnded) -> bytes:
    """Serialize `doc` with what every report carries: the job's identifiers (from `ctx`),
    the session's usage, and its times rounded to the millisecond (never ending before it
    started)."""
    job = _job_fields(ctx)
    return encode_report(
        dataclasses.replace(
            doc,
            room_sid=job["room_sid"],
            job_id=job["job_id"],
            agent_name=job["agent_name"],
            started_at=round(doc.started_at, 3),
            ended_at=round(max(doc.ended_at, doc.started_at), 3),
            usage=usage_summary(session),
        )
    )
