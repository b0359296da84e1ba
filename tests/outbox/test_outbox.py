"""Outbox semantics on both backends: commit, drafts, claims, leases, replay, purge."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from endcall.outbox import SqliteOutbox, default_outbox_path, make_owner, owner_gone
from endcall.outbox.base import SqlOutbox

URL = "http://127.0.0.1:9/hook"
ME = make_owner("test")


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_store_commits_once_and_body_never_changes(outbox: SqlOutbox) -> None:
    assert outbox.store("e1", URL, b'{"a":1}', owner=ME, lease=30) == "stored"
    assert outbox.store("e1", URL, b'{"a":2}', owner=ME, lease=30) == "exists"
    rec = outbox.get("e1")
    assert rec is not None
    assert rec.body == b'{"a":1}' and rec.status == "pending" and not rec.is_draft
    assert rec.lease_owner == ME
    assert outbox.get("nope") is None


def test_binary_body_and_headers_round_trip(outbox: SqlOutbox) -> None:
    body = bytes(range(256))
    outbox.store("e1", URL, body, owner=ME, lease=30, headers={"X-Tenant": "t1"})
    rec = outbox.get("e1")
    assert rec is not None and rec.body == body and dict(rec.headers) == {"X-Tenant": "t1"}


def test_final_report_supersedes_draft_in_place(outbox: SqlOutbox, clock: object) -> None:
    assert outbox.save_draft("e1", URL, b"draft1", owner=ME, lease=30)
    assert outbox.save_draft("e1", URL, b"draft2", owner=ME, lease=30)
    rec = outbox.get("e1")
    assert rec is not None and rec.status == "draft" and rec.body == b"draft2"
    assert outbox.store("e1", URL, b"final", owner=ME, lease=30) == "stored"
    rec = outbox.get("e1")
    assert rec is not None and rec.status == "pending" and not rec.is_draft
    assert rec.body == b"final"
    # a late checkpoint never overwrites the final report
    assert not outbox.save_draft("e1", URL, b"draft3", owner=ME, lease=30)
    rec = outbox.get("e1")
    assert rec is not None and rec.body == b"final"
    assert outbox.counts()["draft"] == 0


def test_write_many_stores_and_marks_in_one_batch(outbox: SqlOutbox, clock: object) -> None:
    """The group-commit write: each store gets the answer a lone store would get."""
    relay = "relay-host:1:r"
    assert outbox.store("old", URL, b"old", owner=ME, lease=30) == "stored"
    assert outbox.store("sent", URL, b"sent", owner=ME, lease=30) == "stored"
    assert outbox.save_draft("d", URL, b"draft", owner=ME, lease=30)
    assert outbox.save_draft("taken", URL, b"draft-t", owner="gone-host:1:x", lease=0)
    assert [r.end_id for r in outbox.claim(relay, limit=10, lease=30)] == ["taken"]
    res = outbox.write_many(
        [
            ("new", URL, b"new"),
            ("d", URL, b"final-d"),
            ("old", URL, b"changed"),
            ("taken", URL, b"final-t"),
            ("new", URL, b"again"),
        ],
        [("sent", 204), ("missing", 200)],
        owner=ME,
        lease=30,
        headers={"X-A": "1"},
    )
    assert res == ["stored", "stored", "exists", "taken", "exists"]
    got = {e: outbox.get(e) for e in ("new", "d", "old", "taken", "sent")}
    assert all(r is not None for r in got.values())
    new, d, old, taken, sent = (got[e] for e in ("new", "d", "old", "taken", "sent"))
    assert new is not None and new.body == b"new" and new.status == "pending"
    assert new.lease_owner == ME and dict(new.headers) == {"X-A": "1"}
    assert d is not None and d.body == b"final-d" and not d.is_draft and d.status == "pending"
    assert old is not None and old.body == b"old"
    assert taken is not None and taken.body == b"draft-t" and taken.lease_owner == relay
    assert sent is not None and sent.status == "delivered" and sent.last_status == 204
    assert sent.attempts == 1 and sent.lease_owner is None
    assert outbox.get("missing") is None
    # marking again changes nothing (already delivered)
    outbox.mark_delivered_many([("sent", 200)], ME)
    again = outbox.get("sent")
    assert again is not None and again.attempts == 1 and again.last_status == 204


def test_write_many_large_batch_is_chunked(outbox: SqlOutbox) -> None:
    items = [(f"b{i}", URL, b"x" * i) for i in range(450)]
    assert outbox.write_many(items, [], owner=ME, lease=30) == ["stored"] * 450
    outbox.write_many([], [(f"b{i}", 200) for i in range(450)], owner=ME, lease=30)
    assert outbox.counts()["delivered"] == 450
    rec = outbox.get("b449")
    assert rec is not None and rec.body == b"x" * 449


def test_live_draft_is_not_claimed_but_expired_one_is(outbox: SqlOutbox, clock: object) -> None:
    other = "some-other-host:123:x"
    outbox.save_draft("e1", URL, b"draft", owner=other, lease=30)
    assert outbox.claim("relay", limit=10, lease=60) == []
    clock.now += 31  # type: ignore[attr-defined]
    got = outbox.claim("relay", limit=10, lease=60)
    assert [r.end_id for r in got] == ["e1"]
    assert got[0].is_draft and got[0].status == "delivering" and got[0].body == b"draft"
    # the owner comes back: its final report must not be sent alongside the draft
    assert outbox.store("e1", URL, b"final", owner=other, lease=30) == "taken"
    rec = outbox.get("e1")
    assert rec is not None and rec.body == b"draft"


def test_draft_of_dead_pid_on_this_host_is_claimed_before_lease_expiry(
    outbox: SqlOutbox,
) -> None:
    gone = f"{socket.gethostname()}:{dead_pid()}:abc"
    assert owner_gone(gone)
    assert not owner_gone(ME)
    assert not owner_gone(f"otherhost:{dead_pid()}:abc")
    outbox.save_draft("crashed", URL, b"draft", owner=gone, lease=3600)
    outbox.save_draft("alive", URL, b"draft", owner=ME, lease=3600)
    got = outbox.claim("relay", limit=10, lease=60)
    assert [r.end_id for r in got] == ["crashed"]


def test_claim_respects_due_time_and_lease(outbox: SqlOutbox, clock: object) -> None:
    outbox.store("e1", URL, b"x", owner=ME, lease=10)
    assert outbox.claim("relay", limit=10, lease=60) == []  # leased by its (live) owner
    outbox.release("e1", ME)
    got = outbox.claim("r1", limit=10, lease=60)
    assert [r.end_id for r in got] == ["e1"]
    assert outbox.claim("r2", limit=10, lease=60) == []  # r1 holds it
    # r1 fails; retry in 30 s; lease dropped
    assert outbox.mark_failed(
        "e1",
        "r1",
        dead=False,
        next_attempt_at=clock.now + 30,
        status_code=500,
        error="HTTP 500",  # type: ignore[attr-defined]
    )
    assert outbox.claim("r2", limit=10, lease=60) == []
    clock.now += 30  # type: ignore[attr-defined]
    got = outbox.claim("r2", limit=10, lease=60)
    assert [r.end_id for r in got] == ["e1"] and got[0].attempts == 1
    assert got[0].last_status == 500 and got[0].last_error == "HTTP 500"
    # a sender whose lease was lost cannot record a failure over the new owner
    assert not outbox.mark_failed(
        "e1",
        "r1",
        dead=True,
        next_attempt_at=clock.now,
        status_code=500,
        error="x",  # type: ignore[attr-defined]
    )
    # lease expiry hands it to someone else
    clock.now += 61  # type: ignore[attr-defined]
    assert [r.end_id for r in outbox.claim("r3", limit=10, lease=60)] == ["e1"]
    outbox.mark_delivered("e1", "r3", 204)
    rec = outbox.get("e1")
    assert rec is not None and rec.status == "delivered" and rec.attempts == 2
    assert rec.delivered_at == clock.now and rec.lease_owner is None  # type: ignore[attr-defined]
    assert outbox.claim("r4", limit=10, lease=60) == []


def test_renew_only_for_free_or_own_lease(outbox: SqlOutbox, clock: object) -> None:
    outbox.store("e1", URL, b"x", owner=ME, lease=10)
    assert not outbox.renew("e1", "other", 10)
    assert outbox.renew("e1", ME, 10)
    rec = outbox.get("e1")
    assert rec is not None and rec.status == "delivering"
    clock.now += 11  # type: ignore[attr-defined]
    assert outbox.renew("e1", "other", 10)
    assert not outbox.renew("missing", ME, 10)


def test_claim_limit_and_order(outbox: SqlOutbox, clock: object) -> None:
    for i in range(5):
        outbox.store(f"e{i}", URL, b"x", owner=ME, lease=0)
        clock.now += 1  # type: ignore[attr-defined]
    got = outbox.claim("r", limit=3, lease=60)
    assert [r.end_id for r in got] == ["e0", "e1", "e2"]
    assert [r.end_id for r in outbox.claim("r", limit=3, lease=60)] == ["e3", "e4"]


def test_dead_rows_stay_listed_and_can_be_replayed(outbox: SqlOutbox, clock: object) -> None:
    outbox.store("e1", URL, b"x", owner=ME, lease=0)
    assert len(outbox.claim("r", limit=1, lease=60)) == 1
    outbox.mark_failed("e1", "r", dead=True, next_attempt_at=0, status_code=410, error="gone")
    assert [r.end_id for r in outbox.records("dead")] == ["e1"]
    assert outbox.claim("r", limit=1, lease=60) == []
    assert outbox.replay("e1")
    rec2 = outbox.get("e1")
    assert rec2 is not None and rec2.status == "pending" and rec2.attempts == 0
    assert rec2.body == b"x"
    assert [r.end_id for r in outbox.claim("r", limit=1, lease=60)] == ["e1"]
    assert not outbox.replay("missing")


def test_purge_removes_only_old_delivered(outbox: SqlOutbox, clock: object) -> None:
    for i in range(3):
        outbox.store(f"e{i}", URL, b"x", owner=ME, lease=0)
    outbox.mark_delivered("e0", ME, 200)
    clock.now += 100  # type: ignore[attr-defined]
    outbox.mark_delivered("e1", ME, 200)
    outbox.mark_failed("e2", ME, dead=True, next_attempt_at=0, status_code=None, error="x")
    assert outbox.purge(clock.now - 50) == 1  # type: ignore[attr-defined]
    assert outbox.get("e0") is None and outbox.get("e1") is not None
    assert outbox.get("e2") is not None
    c = outbox.counts()
    assert c["delivered"] == 1 and c["dead"] == 1 and c["pending"] == 0


def test_records_pagination(outbox: SqlOutbox, clock: object) -> None:
    for i in range(7):
        outbox.store(f"e{i}", URL, b"x", owner=ME, lease=0)
        clock.now += 1  # type: ignore[attr-defined]
    page1 = outbox.records(limit=4)
    page2 = outbox.records(limit=4, offset=4)
    assert [r.end_id for r in page1 + page2] == [f"e{i}" for i in range(6, -1, -1)]


def test_sqlite_is_wal_and_synchronous_full(tmp_path: Path) -> None:
    ob = SqliteOutbox(tmp_path / "a" / "b" / "o.sqlite3")
    assert ob._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ob._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    ob.close()


def test_default_path_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENDCALL_OUTBOX", str(tmp_path / "x.db"))
    assert default_outbox_path() == tmp_path / "x.db"
    monkeypatch.delenv("ENDCALL_OUTBOX")
    assert default_outbox_path().name == "outbox.sqlite3"


CLAIMER = r"""
import sys, json
sys.path.insert(0, sys.argv[3])
from endcall.outbox import SqliteOutbox, make_owner
ob = SqliteOutbox(sys.argv[1], busy_timeout=60)
owner = make_owner(sys.argv[2])
got = []
while True:
    recs = ob.claim(owner, limit=7, lease=3600)
    if not recs:
        break
    for r in recs:
        got.append(r.end_id)
        ob.mark_delivered(r.end_id, owner, 200)
print(json.dumps(got))
"""


def test_sqlite_claims_are_exclusive_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    ob = SqliteOutbox(path)
    ids = [f"e{i}" for i in range(300)]
    for e in ids:
        ob.store(e, URL, e.encode(), owner=ME, lease=0)
    py = str(Path(__file__).resolve().parents[2] / "py")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(path), f"p{i}", py],
            stdout=subprocess.PIPE,
            env={**os.environ},
        )
        for i in range(4)
    ]
    import json

    claimed: list[str] = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        claimed += json.loads(out)
    assert sorted(claimed) == sorted(ids)  # each exactly once
    assert ob.counts()["delivered"] == 300
    ob.close()
