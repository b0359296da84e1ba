"""The agent's writes survive a PostgreSQL restart within the job (issue 20).

A real PostgreSQL server process is stopped and started (`endcall.testing.pgcluster`):
- the final report the outbox refused while the database was down is committed as soon as it
  is back, in the background — with the receiver down too, nothing waits for a delivery retry
  — and it replaces the crash draft: relays then send the final report, never the draft;
- an outbox that could not be opened when the job started (the database late, or
  restarting) is opened later: drafts and reports are stored once it is up.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator

import pytest
from support import Action, Receiver

from endcall.reports.outbox import PostgresOutbox
from endcall.reports.pipeline import ReportPipeline
from endcall.reports.relay import Relay
from endcall.reports.webhook import Webhook
from endcall.testing.pgcluster import PgCluster, PgUnavailable

DRAFT = json.dumps({"complete": False, "n": 1}).encode()
FINAL = json.dumps({"complete": True, "n": 2}).encode()


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    """A cluster of this test's own: stopping it disturbs no other test."""
    c = PgCluster()
    try:
        c.init()
        c.start()
    except PgUnavailable as e:
        c.remove()
        pytest.fail(f"PostgreSQL is needed here (make installs it): {e}")
    try:
        yield c
    finally:
        c.remove()


async def until(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):  # type: ignore[arg-type]
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.1)


async def test_the_final_report_is_stored_once_the_database_is_back_and_beats_the_draft(
    cluster: PgCluster, receiver: Receiver, secret: str
) -> None:
    dsn = cluster.create_database("heal")
    receiver.plan = lambda end_id, n: Action(503)  # the receiver is down all along
    pipe = ReportPipeline(Webhook(url=receiver.url, secret=secret), PostgresOutbox(dsn))
    await pipe.save_draft("e_1", DRAFT)
    await asyncio.to_thread(cluster.stop)
    assert await pipe.store("e_1", FINAL) is False  # kept in memory for now
    await asyncio.to_thread(cluster.start)
    reader = PostgresOutbox(dsn)

    def final_stored() -> bool:
        rec = reader.get("e_1")
        return rec is not None and not rec.is_draft and rec.body == FINAL

    await until(final_stored)  # no deliver() call, no aclose(): the background retry did it
    assert reader.get("e_1.draft") is None  # the final report replaced the crash draft
    receiver.plan = lambda end_id, n: Action(200)
    assert (await pipe.deliver("e_1")).delivered
    await pipe.aclose()
    relay = Relay(reader, [secret], owner="relay-host")
    assert (await relay.run_once()).claimed == 0  # nothing left: no draft to send
    await relay.aclose()
    assert list(receiver.accepted()) == ["e_1"]
    assert receiver.accepted()["e_1"][0].body == FINAL
    reader.close()


async def test_an_outbox_that_did_not_open_at_start_is_opened_later(
    cluster: PgCluster, receiver: Receiver, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = cluster.create_database("late")
    await asyncio.to_thread(cluster.stop)
    monkeypatch.setenv("ENDCALL_OUTBOX", dsn)
    pipe = ReportPipeline(Webhook(url=receiver.url, secret=secret))  # opens ENDCALL_OUTBOX
    await pipe.save_draft("e_2", DRAFT)  # cannot open: logged once, tried again later
    assert pipe.outbox is None
    await asyncio.to_thread(cluster.start)
    reader = PostgresOutbox(dsn)

    async def draft_saved() -> bool:
        await pipe.save_draft("e_2", DRAFT)
        return reader.get("e_2.draft") is not None

    deadline = time.monotonic() + 60
    while not await draft_saved():
        assert time.monotonic() < deadline, "the outbox was never opened again"
        await asyncio.sleep(0.5)
    assert await pipe.store("e_2", FINAL) is True
    out = await pipe.deliver("e_2")
    assert out.delivered
    assert receiver.accepted()["e_2"][0].body == FINAL
    await pipe.aclose()
    reader.close()


async def test_outbox_deliver_forever_waits_for_a_late_database(
    cluster: PgCluster, receiver: Receiver, secret: str
) -> None:
    """The sidecar relay (`endcall outbox deliver --forever`) started before its database:
    it keeps trying to open it (one line), then delivers."""
    dsn = cluster.create_database("sidecar")
    await asyncio.to_thread(cluster.stop)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "endcall.cli",
        "outbox",
        "--outbox",
        dsn,
        "deliver",
        "--forever",
        "--poll",
        "0.3",
        "--secret",
        secret,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    lines: list[bytes] = []
    try:
        assert proc.stderr is not None
        # it tried, failed, and says it keeps trying (however slowly it started)
        lines.append(await asyncio.wait_for(proc.stderr.readline(), 120))
        assert b"retrying until it opens" in lines[0], lines
        await asyncio.sleep(1.5)
        assert proc.returncode is None, "the sidecar gave up on a late database"
        await asyncio.to_thread(cluster.start)
        ob = PostgresOutbox(dsn)
        ob.store("e_3", receiver.url, FINAL, owner="agent-host", lease=0)
        await until(lambda: "e_3" in receiver.accepted())
        ob.close()
    finally:
        proc.terminate()
        _, rest = await asyncio.wait_for(proc.communicate(), 20)
    stderr = b"".join(lines) + rest
    assert stderr.count(b"retrying until it opens") == 1, stderr  # one line, not one per try
    assert b"the outbox opens now" in stderr


async def test_prewarm_starts_the_worker_while_its_database_is_down(
    cluster: PgCluster, receiver: Receiver, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A PostgreSQL outbox that is down (a restart) or late (pod ordering) when a job process
    starts must not fail the process: the worker would refuse every interview meanwhile (the
    fleet bench's pg-late lost its interviews that way). Its relay waits for the database."""
    import endcall
    from endcall.reports.relay import _prewarmed

    dsn = cluster.create_database("prewarm")
    await asyncio.to_thread(cluster.stop)
    _prewarmed.clear()
    relay = await asyncio.to_thread(
        lambda: endcall.prewarm(None, secret=secret, outbox=dsn, poll=0.3)
    )
    try:
        assert relay is not None and "starting anyway" in caplog.text
        await asyncio.to_thread(cluster.start)
        ob = PostgresOutbox(dsn)
        ob.store("e_4", receiver.url, FINAL, owner="agent-host", lease=0)
        await until(lambda: "e_4" in receiver.accepted(), timeout=60)
        ob.close()
    finally:
        await asyncio.to_thread(relay.stop)
        _prewarmed.clear()


async def test_a_report_delivered_from_memory_leaves_no_draft_behind(
    cluster: PgCluster, receiver: Receiver, secret: str
) -> None:
    """The database is down at the end: the final report goes out from memory, and its crash
    draft (saved before) cannot be replaced yet. Once the database is back the report is
    written as delivered, which replaces the draft: no relay ever sends the stale draft after
    the final report (the fleet bench's pg-restart did, 7-16 s after), and the reconciler finds
    the room's report (no false session.missing)."""
    dsn = cluster.create_database("settle")
    pipe = ReportPipeline(Webhook(url=receiver.url, secret=secret), PostgresOutbox(dsn))
    await pipe.save_draft("e_5", DRAFT)
    await asyncio.to_thread(cluster.stop)
    assert await pipe.store("e_5", FINAL) is False
    assert (await pipe.deliver("e_5")).delivered  # from memory
    await asyncio.to_thread(cluster.start)
    reader = PostgresOutbox(dsn)
    await until(lambda: reader.get("e_5.draft") is None)  # replaced while the job lives
    final = reader.get("e_5")  # by the report itself, as delivered: the reconciler finds it
    assert final is not None and final.status == "delivered" and final.body == FINAL
    await pipe.aclose()
    relay = Relay(reader, [secret], owner="relay-host")
    reader.make_due()
    assert (await relay.run_once()).claimed == 0
    await relay.aclose()
    assert [r.end_id for rs in receiver.accepted().values() for r in rs] == ["e_5"]
    reader.close()


async def test_close_waits_a_little_for_the_database_to_settle(
    cluster: PgCluster, receiver: Receiver, secret: str
) -> None:
    """The job ends while the database restarts: `aclose` waits (bounded) and commits the
    final report instead of leaving it only in the log."""
    dsn = cluster.create_database("close")
    receiver.plan = lambda end_id, n: Action(503)
    pipe = ReportPipeline(Webhook(url=receiver.url, secret=secret), PostgresOutbox(dsn))
    await pipe.save_draft("e_6", DRAFT)
    await asyncio.to_thread(cluster.stop)
    assert await pipe.store("e_6", FINAL) is False
    restart = asyncio.create_task(asyncio.to_thread(cluster.start))
    await pipe.aclose()  # within its 10 s the database is back
    await restart
    reader = PostgresOutbox(dsn)
    rec = reader.get("e_6")
    assert rec is not None and rec.body == FINAL and reader.get("e_6.draft") is None
    reader.close()
