"""Any text encodes: lone surrogates in meta or the transcript are replaced (issue 11 point 7)."""

from __future__ import annotations

import json
from pathlib import Path

from agent_harness import start_job, wait_until


def user_texts(doc: dict[str, object]) -> list[str]:
    items = doc["session"]["chat_history"]["items"]  # type: ignore[index]
    return [
        part
        for item in items
        if item.get("role") == "user"
        for part in item.get("content", [])
        if isinstance(part, str)
    ]


async def test_lone_surrogates_in_meta_and_the_transcript(tmp_path: Path) -> None:
    """Before: no final report (only the draft), and every later draft failed too."""
    job = await start_job(tmp_path, endcall_kwargs={"checkpoint_interval": 1.0})
    assert job.end is not None
    job.llm.add("Noted.")
    job.stt.say("my name is \ud800 Bob")
    await wait_until(lambda: any(b"Bob" in body for _, body in job.pipeline.drafts))
    draft = json.loads(job.pipeline.drafts[-1][1])
    assert any("\ufffd Bob" in t for t in user_texts(draft))
    await job.end.end("server-ended-call", meta={"note": "half \udfff pair"})
    await job.finished()
    [doc] = job.receiver.reports()
    assert doc["complete"] is True and doc["ended_reason"] == "server-ended-call"
    assert doc["meta"] == {"note": "half \ufffd pair"}
    assert any("\ufffd Bob" in t for t in user_texts(doc))
