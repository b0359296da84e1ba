"""Outbox semantics on both backends: commit, drafts, claims, leases, replay, purge."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from endcall.reports.outbox import SqliteOutbox, default_outbox_path, draft_key, make_owner
from endcall.reports.outbox.sql import SqlOutbox

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


def test_final_report_replaces_the_untaken_draft(outbox: SqlOutbox, clock: object) -> None:
    assert outbox.save_draft("e1", URL, b"draft1", owner=ME, lease=30)
    assert outbox.save_draft("e1", URL, b"draft2", owner=ME, lease=30)
    assert outbox.get("e1") is None  # the draft has its own key (its webhook-id)
    rec = outbox.get(draft_key("e1"))
    assert rec is not None and rec.status == "draft" and rec.body == b"draft2" and rec.is_draft
    assert rec.end_id == "e1.draft" and rec.session_end_id == "e1"
    assert outbox.store("e1", URL, b"final", owner=ME, lease=30) == "stored"
    rec = outbox.get("e1")
    assert rec is not None and rec.status == "pending" and not rec.is_draft
    assert rec.body == b"final"
    assert outbox.get(draft_key("e1")) is None  # deleted with the same commit
    # a late checkpoint never writes a draft once the final report exists
    assert not outbox.save_draft("e1", URL, b"draft3", owner=ME, lease=30)
    assert not outbox.mark_ending(
        "e1", {"ended_reason": "x"}, url=URL, body=b"d", owner=ME, lease=30
    )
    assert outbox.get(draft_key("e1")) is None
    assert outbox.counts()["draft"] == 0


def test_write_many_stores_and_marks_in_one_batch(outbox: SqlOutbox, clock: object) -> None:
    """The group-commit write: each store gets the answer a lone store would get."""
    relay = "relay-host:1:r"
    assert outbox.store("old", URL, b"old", owner=ME, lease=30) == "stored"
    assert outbox.store("sent", URL, b"sent", owner=ME, lease=30) == "stored"
    assert outbox.save_draft("d", URL, b"draft", owner=ME, lease=30)
    assert outbox.save_draft("taken", URL, b"draft-t", owner="gone-host:1:x", lease=0)
    assert [r.end_id for r in outbox.claim(relay, limit=10, lease=30)] == ["taken.draft"]
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
        delivery={"timeout": 7},
    )
    assert res == ["stored", "stored", "exists", "stored", "exists"]
    got = {e: outbox.get(e) for e in ("new", "d", "old", "taken", "taken.draft", "sent")}
    assert all(r is not None for r in got.values())
    new, d, old, taken, tdraft, sent = got.values()
    assert new is not None and new.body == b"new" and new.status == "pending"
    assert new.lease_owner == ME and dict(new.headers) == {"X-A": "1"}
    assert dict(new.delivery) == {"timeout": 7}
    assert d is not None and d.body == b"final-d" and not d.is_draft and d.status == "pending"
    assert outbox.get("d.draft") is None
    assert old is not None and old.body == b"old"
    # the final report is stored even though a relay took the draft (which stays, in flight)
    assert taken is not None and taken.body == b"final-t" and not taken.is_draft
    assert tdraft is not None and tdraft.body == b"draft-t" and tdraft.lease_owner == relay
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
    assert [r.end_id for r in got] == ["e1.draft"]
    assert got[0].is_draft and got[0].status == "delivering" and got[0].body == b"draft"
    # the owner comes back: its final report is still stored (receivers keep it, §6)
    assert outbox.store("e1", URL, b"final", owner=other, lease=30) == "stored"
    rec = outbox.get("e1")
    assert rec is not None and rec.body == b"final"
    # the taken draft fails its attempt: it is not retried now that the final report exists
    assert outbox.mark_failed(
        "e1.draft", "relay", dead=False, next_attempt_at=clock.now, status_code=503, error="x"
    )  # type: ignore[attr-defined]
    clock.now += 1000  # type: ignore[attr-defined]
    assert [r.end_id for r in outbox.claim("relay", limit=10, lease=60)] == ["e1"]
    assert outbox.renew("e1.draft", "relay", 60) is None


def test_no_takeover_from_pid_guesses(outbox: SqlOutbox) -> None:
    """Issue 11 point 2: a sidecar shares the host name but not the PID namespace. A draft
    whose owner names this host and a pid that is not alive *here* is still owned: only its
    lease decides. (Before, "same host, pid gone" made the relay send it at once.)"""
    gone = f"{socket.gethostname()}:{dead_pid()}:abc"
    outbox.save_draft("live-elsewhere", URL, b"draft", owner=gone, lease=3600)
    outbox.save_draft("alive", URL, b"draft", owner=ME, lease=3600)
    assert outbox.claim("relay", limit=10, lease=60) == []


def test_mark_ending_records_the_accepted_end(outbox: SqlOutbox, clock: object) -> None:
    ending = {"ended_reason": "server-ended-call", "request_id": "r1"}
    # no draft yet: the row is created with the given (minimal) body
    assert outbox.mark_ending("e1", ending, url=URL, body=b"mini", owner=ME, lease=30)
    rec = outbox.get("e1.draft")
    assert rec is not None and rec.body == b"mini" and rec.ending == ending
    # a later checkpoint replaces the body and keeps the accepted end
    assert outbox.save_draft("e1", URL, b"later", owner=ME, lease=30)
    rec = outbox.get("e1.draft")
    assert rec is not None and rec.body == b"later" and rec.ending == ending
    assert outbox.discard_draft("e1") and outbox.get("e1.draft") is None


def test_replay_dead_in_bulk_since(outbox: SqlOutbox, clock: object) -> None:
    for i, e in enumerate(("a", "b", "c")):
        outbox.store(e, URL, b"x", owner=ME, lease=30)
        clock.now = 1_800_000_000.0 + i * 100  # type: ignore[attr-defined]
        assert outbox.mark_failed(
            e, ME, dead=True, next_attempt_at=clock.now, status_code=500, error="boom"
        )  # type: ignore[attr-defined]
    assert outbox.replay_dead(since=1_800_000_100.0) == ["b", "c"]
    assert outbox.counts()["dead"] == 1
    assert outbox.replay_dead() == ["a"]
    rec = outbox.get("a")
    assert rec is not None and rec.status == "pending" and rec.attempts == 0


def test_defer_gives_the_row_back_without_an_attempt(outbox: SqlOutbox, clock: object) -> None:
    outbox.store("e1", URL, b"x", owner=ME, lease=0)
    clock.now += 1  # type: ignore[attr-defined]
    assert len(outbox.claim("relay", limit=1, lease=60)) == 1
    assert outbox.defer("e1", "relay", until=clock.now + 300, error="no key")  # type: ignore[attr-defined]
    rec2 = outbox.get("e1")
    assert rec2 is not None and rec2.status == "pending" and rec2.attempts == 0
    assert rec2.last_error == "no key" and rec2.lease_owner is None


def test_probe_refuses_a_read_only_outbox(tmp_path: Path) -> None:
    ob = SqliteOutbox(tmp_path / "o.sqlite3")
    ob.probe()
    ob._conn.execute("PRAGMA query_only = ON")  # what a read-only file gives, even as root
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ob.probe()
    assert ob.counts() == dict.fromkeys(("draft", "pending", "delivering", "delivered", "dead"), 0)
    ob.close()


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
    default = default_outbox_path()
    assert isinstance(default, Path) and default.name == "outbox.sqlite3"
    # a PostgreSQL URL stays the URL it is (Path() would fold "//" and make it a file name)
    monkeypatch.setenv("ENDCALL_OUTBOX", "postgresql://endcall@db.internal:5432/endcall")
    assert default_outbox_path() == "postgresql://endcall@db.internal:5432/endcall"


CLAIMER = r"""
import sys, json
sys.path.insert(0, sys.argv[3])
from endcall.reports.outbox import SqliteOutbox, make_owner
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
