"""`endcall.agent.transcript`: final words not yet in the history, and the flush at the end."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from parts_fakes import FakeSession

from endcall.agent.transcript import Transcript


def _said(text: str, final: bool) -> object:
    return SimpleNamespace(transcript=text, is_final=final)


def test_final_transcripts_wait_until_a_user_turn_commits_them() -> None:
    t = Transcript(FakeSession(), 1.0)
    t.on_transcribed(_said("hello", True))
    t.on_transcribed(_said(" there ", True))
    t.on_transcribed(_said("and", False))
    assert t.uncommitted == ["hello", "there"]
    t.on_item_added(SimpleNamespace(item=SimpleNamespace(role="assistant")))
    assert t.uncommitted == ["hello", "there"]
    t.on_item_added(SimpleNamespace(item=SimpleNamespace(role="user")))
    assert t.uncommitted == []


async def test_nothing_pending_flushes_at_once() -> None:
    session = FakeSession()
    t = Transcript(session, 1.0)
    await t.flush()
    assert session.commits == []


async def test_a_pending_interim_gets_the_flush_timeout_to_become_final() -> None:
    session = FakeSession()
    t = Transcript(session, 1.0)
    t.on_transcribed(_said("I think", False))
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, t.on_transcribed, _said("I think so", True))
    started = time.monotonic()
    await t.flush()
    assert time.monotonic() - started < 0.5
    assert session.commits and session.commits[0]["skip_reply"] is True
    assert t.uncommitted == ["I think so"]


async def test_the_flush_is_bounded() -> None:
    t = Transcript(FakeSession(), 0.1)
    t.on_transcribed(_said("never final", False))
    started = time.monotonic()
    await t.flush()
    assert time.monotonic() - started < 0.5
