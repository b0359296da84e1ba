"""Who may send a draft: its lease on the database's clock, nothing else (issue 11)."""

from __future__ import annotations

import time

import pgcluster
import pytest

from endcall.reports.outbox import PostgresOutbox

URL = "http://127.0.0.1:9/hook"


@pytest.fixture
def dsn() -> str:
    return pgcluster.database_or_skip()


def test_a_relay_whose_clock_is_ahead_does_not_take_over_a_live_draft(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11 point 3: leases were compared against each host's own clock, so a relay host
    running two minutes ahead took a freshly renewed draft. Now PostgreSQL's clock decides."""
    agent = PostgresOutbox(dsn)
    assert agent.save_draft("e1", URL, b"draft", owner="agent-host:7:a", lease=90)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 120)  # the relay host's clock
    relay = PostgresOutbox(dsn)
    try:
        assert relay.claim("relay-host:1:r", limit=10, lease=60) == []
        # the lease still expires, on the server's clock
        assert agent.save_draft("e2", URL, b"draft", owner="agent-host:7:a", lease=0.5)
        deadline = real() + 10
        got: list[str] = []
        while not got and real() < deadline:
            got = [r.end_id for r in relay.claim("relay-host:1:r", limit=10, lease=60)]
            time.sleep(0.1)
        assert got == ["e2.draft"]
    finally:
        relay.close()
        agent.close()


def test_lease_times_come_from_the_server(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ob = PostgresOutbox(dsn)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 3600)
    try:
        ob.save_draft("e1", URL, b"d", owner="o", lease=90)
        rec = ob.get("e1.draft")
        assert rec is not None and rec.lease_expires_at is not None
        assert abs(rec.lease_expires_at - (real() + 90)) < 30
    finally:
        ob.close()
