"""Fault matrix against a real receiver (Starlette/uvicorn, reference verifier), real SQLite.

Every case asserts: every report delivered (or dead where the receiver said 410), every
request verified, duplicates only ever with the same webhook-id, the body byte-identical on
every attempt.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Action, FakeClock, Receiver, free_port

from endcall.reports.delivery import RetryPolicy
from endcall.reports.outbox import SqliteOutbox
from endcall.reports.pipeline import ReportPipeline
from endcall.reports.relay import Relay
from endcall.reports.webhook import Webhook

FAST = (0.0, 0.05, 0.1, 0.2, 0.2, 0.2, 0.2, 0.2)


def body_for(end_id: str, complete: bool = True) -> bytes:
    doc = {"type": "session.ended", "v": 1, "end_id": end_id, "complete": complete, "t": "é"}
    return json.dumps(doc, separators=(",", ":")).encode()


def pipe_for(
    receiver_url: str,
    secret: str,
    outbox: SqliteOutbox,
    *,
    timeout: float = 2.0,
    schedule: tuple[float, ...] = FAST,
    window: float = 10.0,
    clock: FakeClock | None = None,
) -> ReportPipeline:
    wh = Webhook(
        url=receiver_url,
        secret=secret,
        timeout=timeout,
        schedule=schedule,
        in_process_window=window,
        jitter=0.0,
    )
    return ReportPipeline(wh, outbox, clock=clock)


async def run_reports(pipe: ReportPipeline, ids: list[str]) -> dict[str, bytes]:
    sent = {}
    for e in ids:
        b = body_for(e)
        assert await pipe.store(e, b)
        sent[e] = b
    return sent


@pytest.mark.parametrize(
    "name,plan",
    [
        ("5xx", lambda e, n: Action(500 + n % 5) if n <= 3 else Action(200)),
        ("timeout", lambda e, n: Action(200, delay=3.0) if n == 1 else Action(204)),
        ("slower-than-timeout", lambda e, n: Action(200, delay=0.6) if n <= 2 else Action(200)),
        ("429", lambda e, n: Action(429, headers={"retry-after": "0"}) if n == 1 else Action()),
        ("503", lambda e, n: Action(503, headers={"retry-after": "0"}) if n <= 2 else Action()),
        ("redirect", lambda e, n: Action(307, headers={"location": "/x"}) if n == 1 else Action()),
    ],
)
async def test_transient_faults_end_delivered(
    name: str, plan: object, receiver: Receiver, secret: str, outbox_path: Path
) -> None:
    receiver.plan = plan  # type: ignore[assignment]
    ob = SqliteOutbox(outbox_path)
    pipe = pipe_for(receiver.url, secret, ob, timeout=0.4)
    ids = [f"{name}-{i}" for i in range(4)]
    sent = await run_reports(pipe, ids)
    for e in ids:
        out = await pipe.deliver(e)
        assert out.delivered and not out.dead, (e, out)
        assert out.attempts >= 2
        rec = ob.get(e)
        assert rec is not None and rec.status == "delivered" and rec.body == sent[e]
    await pipe.aclose()
    receiver.assert_invariants(sent)
    for e in ids:
        assert len(receiver.by_id()[e]) >= 2  # there really was a fault before success
    ob.close()


async def test_retry_after_is_honoured(receiver: Receiver, secret: str, outbox_path: Path) -> None:
    clock = FakeClock()
    times: list[float] = []

    def plan(e: str, n: int) -> Action:
        times.append(clock.time())
        return (
            Action(429, headers={"retry-after": "40"})
            if n == 1
            else Action(503, headers={"retry-after": "100"})
            if n == 2
            else Action()
        )

    receiver.plan = plan
    ob = SqliteOutbox(outbox_path, clock=clock.time)
    pipe = pipe_for(receiver.url, secret, ob, schedule=(0, 5, 30, 120), window=600, clock=clock)
    sent = await run_reports(pipe, ["ra"])
    out = await pipe.deliver("ra")
    assert out.delivered and out.attempts == 3
    assert times[1] - times[0] >= 40  # schedule said 5 s
    assert times[2] - times[1] >= 100  # schedule said 30 s
    await pipe.aclose()
    receiver.assert_invariants(sent)


async def test_410_is_dead_listed_and_replayable(
    receiver: Receiver, secret: str, outbox_path: Path
) -> None:
    receiver.plan = lambda e, n: Action(410)
    ob = SqliteOutbox(outbox_path)
    pipe = pipe_for(receiver.url, secret, ob)
    sent = await run_reports(pipe, ["gone"])
    out = await pipe.deliver("gone")
    assert out.dead and not out.delivered and out.attempts == 1 and out.last_status == 410
    assert [r.end_id for r in ob.records("dead")] == ["gone"]
    assert len(receiver.requests) == 1
    # the receiver is fixed; the operator replays it
    receiver.plan = lambda e, n: Action(200)
    assert ob.replay("gone")
    relay = Relay(ob, [secret], timeout=2)
    stats = await relay.run_once()
    await relay.aclose()
    assert stats.delivered == 1
    receiver.assert_invariants(sent)
    assert {r.body for r in receiver.requests} == {sent["gone"]}
    await pipe.aclose()


async def test_retries_exhausted_become_dead(
    receiver: Receiver, secret: str, outbox_path: Path
) -> None:
    receiver.plan = lambda e, n: Action(500)
    ob = SqliteOutbox(outbox_path)
    pipe = pipe_for(receiver.url, secret, ob, schedule=(0, 0.01, 0.01))
    await run_reports(pipe, ["x"])
    out = await pipe.deliver("x")
    assert out.dead and out.attempts == 3 and "exhausted" in (out.last_error or "")
    await pipe.aclose()


async def test_connection_refused_then_relay_delivers(secret: str, outbox_path: Path) -> None:
    port = free_port()  # nothing listens here yet
    ob = SqliteOutbox(outbox_path)
    pipe = pipe_for(f"http://127.0.0.1:{port}/hook", secret, ob, window=0.5)
    sent = await run_reports(pipe, ["r1", "r2"])
    for e in sent:
        out = await pipe.deliver(e)
        assert not out.delivered and not out.dead and out.attempts >= 1
        assert "connect" in (out.last_error or "")
    # left for relays: pending and not leased
    for e in sent:
        rec = ob.get(e)
        assert rec is not None and rec.status == "pending" and rec.lease_owner is None
    await pipe.aclose()
    receiver = Receiver([secret], port=port).start()
    try:
        relay = Relay(ob, [secret], timeout=2, policy=RetryPolicy(FAST, 0))
        for _ in range(50):
            await relay.run_once()
            if ob.counts()["delivered"] == 2:
                break

            await asyncio.sleep(0.1)
        await relay.aclose()
        receiver.assert_invariants(sent)
    finally:
        receiver.stop()


async def test_receiver_down_two_minutes_then_up(secret: str, outbox_path: Path) -> None:
    clock = FakeClock()
    t0 = clock.time()
    receiver = Receiver([secret])  # not started: connection refused while "down"
    ob = SqliteOutbox(outbox_path, clock=clock.time)
    pipe = pipe_for(receiver.url, secret, ob, schedule=(0, 5, 30, 120, 600), window=60, clock=clock)
    sent = await run_reports(pipe, ["down"])
    out = await pipe.deliver("down")  # tries at t0, t0+5, t0+35; next would be t0+155
    assert not out.delivered and out.attempts == 3
    rec = ob.get("down")
    assert rec is not None and rec.next_attempt_at == pytest.approx(t0 + 155, abs=0.5)
    await pipe.aclose()
    clock.now = t0 + 120
    receiver.start()  # up again after two minutes
    try:
        relay = Relay(ob, [secret], clock=clock, policy=RetryPolicy((0, 5, 30, 120, 600), 0))
        assert (await relay.run_once()).claimed == 0  # not due before t0+155
        clock.now = t0 + 156
        stats = await relay.run_once()
        await relay.aclose()
        assert stats.delivered == 1
        rec = ob.get("down")
        assert rec is not None and rec.status == "delivered" and rec.attempts == 4
        receiver.assert_invariants(sent)
        assert len(receiver.requests) == 1
    finally:
        receiver.stop()


async def test_signatures_for_rotated_secrets(outbox_path: Path) -> None:
    from support import new_secret

    old, new = new_secret(), new_secret()
    receiver = Receiver([old, new]).start()
    try:
        ob = SqliteOutbox(outbox_path)
        wh = Webhook(url=receiver.url, secret=[old, new], schedule=FAST)
        pipe = ReportPipeline(wh, ob)
        sent = await run_reports(pipe, ["rot"])
        assert (await pipe.deliver("rot")).delivered
        await pipe.aclose()
        [req] = receiver.requests
        assert req.verified_by == (0, 1)
        assert len(req.headers["webhook-signature"].split(" ")) == 2
        receiver.assert_invariants(sent)
    finally:
        receiver.stop()


@pytest.fixture
def read_only_target(tmp_path: Path) -> Iterator[Path]:
    """A path on a read-only location: a read-only tmpfs mount when root can mount one (root
    ignores permission bits), else a read-only pseudo filesystem (/proc); a mode 0500
    directory for other users."""
    import os
    import subprocess

    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = False
    if os.geteuid() == 0:
        cmd = ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)]
        mounted = subprocess.run(cmd, capture_output=True).returncode == 0
        target = ro / "outbox.sqlite3" if mounted else Path("/proc/endcall/outbox.sqlite3")
    else:
        ro.chmod(0o500)
        target = ro / "outbox.sqlite3"
    yield target
    if mounted:
        subprocess.run(["umount", str(ro)], check=False)
    else:
        ro.chmod(0o700)


def _unsaved_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "endcall_unsaved_report" in r.getMessage()]


async def test_read_only_outbox_keeps_report_in_memory_and_does_not_log_it_once_delivered(
    receiver: Receiver,
    secret: str,
    read_only_target: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("ENDCALL_OUTBOX", str(read_only_target))
    receiver.plan = lambda e, n: Action(503) if n == 1 else Action()
    wh = Webhook(url=receiver.url, secret=secret, schedule=FAST, jitter=0)
    pipe = ReportPipeline(wh)  # default outbox: $ENDCALL_OUTBOX, on the read-only path
    body = body_for("ro-1")
    with caplog.at_level(logging.ERROR, logger="endcall.report"):
        await pipe.save_draft("ro-1", body_for("ro-1", complete=False))  # never raises
        assert await pipe.store("ro-1", body) is False
        assert any("ro-1 could not be stored" in r.getMessage() for r in caplog.records)
        out = await pipe.deliver("ro-1")
        assert out.delivered and out.attempts == 2
        await pipe.aclose()
    # delivered: the private body never reached the logs
    assert _unsaved_lines(caplog) == []
    assert not any(body.decode() in r.getMessage() for r in caplog.records)
    receiver.assert_invariants({"ro-1": body})
    assert not await asyncio.to_thread(read_only_target.exists)


async def test_a_report_neither_stored_nor_delivered_is_logged_whole_once(
    receiver: Receiver,
    secret: str,
    read_only_target: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("ENDCALL_OUTBOX", str(read_only_target))
    receiver.plan = lambda e, n: Action(503)
    wh = Webhook(url=receiver.url, secret=secret, schedule=FAST, jitter=0, in_process_window=0.3)
    pipe = ReportPipeline(wh)
    body = body_for("ro-2")
    with caplog.at_level(logging.ERROR, logger="endcall.report"):
        assert await pipe.store("ro-2", body) is False
        assert _unsaved_lines(caplog) == []
        out = await pipe.deliver("ro-2")
        assert not out.delivered
        await pipe.aclose()
    lines = _unsaved_lines(caplog)
    assert len(lines) == 1 and "\n" not in lines[0]
    logged = json.loads(lines[0])["endcall_unsaved_report"]
    assert logged["end_id"] == "ro-2" and logged["body"].encode() == body


async def test_unknown_end_id_is_reported_not_raised(secret: str, outbox_path: Path) -> None:
    ob = SqliteOutbox(outbox_path)
    pipe = pipe_for("http://127.0.0.1:9/x", secret, ob)
    out = await pipe.deliver("never-stored")
    assert not out.delivered and out.attempts == 0 and "unknown" in (out.last_error or "")
    await pipe.aclose()


async def test_relay_slow_answer_does_not_hold_up_others(
    receiver: Receiver, secret: str, outbox_path: Path
) -> None:
    # the slow answer takes long enough that only a relay that sends the others meanwhile can
    # finish them before it, however loaded the machine is
    receiver.plan = lambda e, n: Action(200, delay=6.0) if e == "slow" else Action(200)
    ob = SqliteOutbox(outbox_path)
    bodies = {e: body_for(e) for e in ["slow"] + [f"f{i}" for i in range(40)]}
    for e, b in bodies.items():
        ob.store(e, receiver.url, b, owner="elsewhere:1:x", lease=0)
    relay = Relay(ob, [secret], timeout=15, batch=8, concurrency=8)
    stats = await relay.run_once()
    await relay.aclose()
    assert stats.delivered == 41
    receiver.assert_invariants(bodies)
    acc = receiver.accepted()
    slow_done = acc["slow"][0].at + 6.0  # `at` is the arrival; the answer came 6 s later
    assert all(acc[f"f{i}"][0].at < slow_done for i in range(40))
    ob.close()
