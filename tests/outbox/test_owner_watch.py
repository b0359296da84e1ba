"""A relay without LiveKit's webhooks asks whether silent drafts' owners are gone
(`endcall.reports.owner_watch`, issue 21): only drafts whose owner stopped renewing are asked
about, only a confirmed answer releases them, and a check that fails leaves the lease in
charge — on SQLite and PostgreSQL, on the database's clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from conftest import Clock

from endcall.reports.outbox import SqliteOutbox
from endcall.reports.outbox.sql import SqlOutbox
from endcall.reports.owner_watch import OwnerWatch
from endcall.reports.relay import BackgroundRelay

URL = "https://receiver.example/end"
A, RELAY = "host-a:1:job", "host-b:2:relay"
LEASE, QUIET = 90.0, 15.0
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Asked:
    """A `GoneCheck` double: records what it was asked, answers ``gone`` (or raises)."""

    def __init__(self, gone: Sequence[str] = (), error: Exception | None = None) -> None:
        self.gone = list(gone)
        self.error = error
        self.asked: list[list[str]] = []

    async def __call__(self, scopes: Sequence[str]) -> list[str]:
        self.asked.append(list(scopes))
        if self.error is not None:
            raise self.error
        return self.gone


def draft(outbox: SqlOutbox, end_id: str, scope: str) -> None:
    assert outbox.save_draft(end_id, URL, b'{"complete":false}', owner=A, lease=LEASE, scope=scope)


def claimed(outbox: SqlOutbox) -> list[str]:
    return [r.end_id for r in outbox.claim(RELAY, limit=10, lease=300)]


async def test_a_dead_owners_draft_is_released_when_livekit_confirms(
    outbox: SqlOutbox, clock: Clock
) -> None:
    t0 = clock.now
    draft(outbox, "e_dead", "RM_1/agent-dead")
    draft(outbox, "e_stalled", "RM_2/agent-stalled")  # silent, but still in its room
    gone = Asked(gone=["RM_1/agent-dead"])
    watch = OwnerWatch(outbox, gone, quiet=QUIET, every=0)
    clock.now = t0 + 10
    assert await watch.check() is None
    assert gone.asked == []  # nobody silent long enough: LiveKit is not asked
    clock.now = t0 + 20
    assert await watch.check() == t0 + 20
    assert gone.asked == [["RM_1/agent-dead", "RM_2/agent-stalled"]]
    assert watch.released == 1
    assert claimed(outbox) == ["e_dead.draft"]  # at once, not at t0 + 90
    clock.now = t0 + 60
    assert claimed(outbox) == []  # the stalled one keeps its lease


async def test_a_failing_check_leaves_the_lease_in_charge_and_says_so_once(
    outbox: SqlOutbox, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    t0 = clock.now
    draft(outbox, "e_1", "RM_1/agent-1")
    gone = Asked(gone=["RM_1/agent-1"], error=OSError("LiveKit unreachable"))
    watch = OwnerWatch(outbox, gone, quiet=QUIET, every=0)
    clock.now = t0 + 30
    with caplog.at_level(logging.INFO, logger="endcall.report"):
        for _ in range(3):
            assert await watch.check() is None
        assert claimed(outbox) == []
        gone.error = None
        assert await watch.check() == t0 + 30
    lines = [r.getMessage() for r in caplog.records]
    assert sum("cannot tell whether" in m for m in lines) == 1, lines
    assert sum("can be checked again" in m for m in lines) == 1, lines
    assert claimed(outbox) == ["e_1.draft"]


async def test_a_check_that_hangs_counts_as_failed(outbox: SqlOutbox, clock: Clock) -> None:
    draft(outbox, "e_1", "RM_1/agent-1")
    clock.now += 30

    async def hangs(scopes: Sequence[str]) -> list[str]:
        await asyncio.sleep(3600)
        return list(scopes)

    watch = OwnerWatch(outbox, hangs, quiet=QUIET, every=0, timeout=0.2)
    assert await watch.check() is None
    assert claimed(outbox) == []


async def test_an_answer_about_a_scope_not_asked_releases_nothing(
    outbox: SqlOutbox, clock: Clock
) -> None:
    t0 = clock.now
    draft(outbox, "e_1", "RM_1/agent-1")
    draft(outbox, "e_2", "RM_2/agent-2")
    clock.now = t0 + 1
    assert outbox.renew_draft("e_2", A, LEASE)
    clock.now = t0 + 15.5  # e_1 silent for 15.5 s, e_2 for 14.5 s: only e_1 is asked about
    watch = OwnerWatch(outbox, Asked(gone=["RM_2/agent-2", "RM_2"]), quiet=QUIET, every=0)
    assert await watch.check() is None
    clock.now = t0 + 20
    assert claimed(outbox) == []


async def test_checks_are_spaced_by_every(outbox: SqlOutbox, clock: Clock) -> None:
    draft(outbox, "e_1", "RM_1/agent-1")
    clock.now += 30
    gone = Asked()
    watch = OwnerWatch(outbox, gone, quiet=QUIET, every=60)
    await watch.check()
    await watch.check()
    assert len(gone.asked) == 1 and 59 < watch.due_in() <= 60


async def test_a_prewarm_style_relay_delivers_a_dead_agents_draft_before_its_lease(
    tmp_path: Path,
) -> None:
    """`BackgroundRelay` with a `GoneCheck` (what `endcall.prewarm` starts): the draft of an
    owner that stopped renewing goes out at the first check after the quiet, while the relay's
    poll (and the draft's 90 s lease) are far away; a live owner's draft stays."""
    path = tmp_path / "o.sqlite3"
    outbox = SqliteOutbox(path)
    draft(outbox, "e_dead", "RM_1/agent-dead")
    draft(outbox, "e_live", "RM_1/agent-live")
    got: list[str] = []
    sent = threading.Event()

    def receiver(request: httpx.Request) -> httpx.Response:
        got.append(request.headers["webhook-id"])
        assert json.loads(request.content) == {"complete": False}
        sent.set()
        return httpx.Response(200)

    gone = Asked(gone=["RM_1/agent-dead"])
    relay = BackgroundRelay(
        path,
        (SECRET,),
        poll=3600,
        transport=httpx.MockTransport(receiver),
        gone=gone,
        takeover_quiet=1.0,
    ).start()
    stop_beats = threading.Event()

    def beats() -> None:  # the live owner's heartbeat
        while not stop_beats.wait(0.3):
            outbox.renew_draft("e_live", A, LEASE)

    beating = threading.Thread(target=beats)
    beating.start()
    started = time.monotonic()
    try:
        assert await asyncio.to_thread(sent.wait, 30)
        took = time.monotonic() - started
        await asyncio.sleep(0.5)
    finally:
        stop_beats.set()
        beating.join()
        relay.stop()
        outbox.close()
    assert got == ["e_dead.draft"]
    assert took < 20, took  # the first check after the quiet (every 5 s), not the lease
    assert all(scopes == ["RM_1/agent-dead"] for scopes in gone.asked)  # never the live one


async def test_a_sidecar_relay_run_forever_with_a_watch_takes_a_dead_agents_draft_over(
    tmp_path: Path,
) -> None:
    """`Relay.run(forever=True, watch=...)` (what `endcall outbox deliver --forever
    --ask-livekit` runs beside Node workers, which have no `endcall.prewarm`): between passes an
    hour apart, the watch asks about silent drafts, and the dead owner's draft goes out as soon
    as LiveKit confirms — not at the next poll, nor when its 90 s lease runs out."""
    from endcall.reports.relay import Relay

    path = tmp_path / "o.sqlite3"
    outbox = SqliteOutbox(path)
    draft(outbox, "e_dead", "RM_1/agent-dead")
    got: list[str] = []
    sent = asyncio.Event()

    def receiver(request: httpx.Request) -> httpx.Response:
        got.append(request.headers["webhook-id"])
        sent.set()
        return httpx.Response(200)

    gone = Asked(gone=["RM_1/agent-dead"])
    relay = Relay(outbox, (SECRET,), transport=httpx.MockTransport(receiver))
    stop = asyncio.Event()
    run = asyncio.create_task(
        relay.run(forever=True, poll=3600, stop=stop, watch=OwnerWatch(outbox, gone, quiet=1.0))
    )
    started = time.monotonic()
    try:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(sent.wait(), 30)
        took = time.monotonic() - started
    finally:
        stop.set()
        stats = await asyncio.wait_for(run, 10)
        await relay.aclose()
        outbox.close()
    assert got == ["e_dead.draft"] and stats.delivered == 1
    assert took < 20, took  # the first check after the quiet (every 5 s), not the poll or lease
    assert gone.asked and all(scopes == ["RM_1/agent-dead"] for scopes in gone.asked)
