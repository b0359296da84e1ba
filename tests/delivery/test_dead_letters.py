"""Dead letters are visible: an ERROR line with the end_id and last error, a callback, and a
bulk replay (`endcall outbox replay --dead [--since]`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import Action, Receiver

from endcall.cli import main
from endcall.reports.delivery import RetryPolicy
from endcall.reports.outbox import OutboxRecord, SqliteOutbox, make_owner
from endcall.reports.relay import Relay


async def test_a_report_going_dead_is_logged_and_reported(
    outbox_path: Path, receiver: Receiver, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11 point 10: dead letters were silent."""
    receiver.plan = lambda e, n: Action(410)
    ob = SqliteOutbox(outbox_path)
    ob.store("gone-1", receiver.url, b'{"a":1}', owner=make_owner(), lease=0)
    dead: list[OutboxRecord] = []
    relay = Relay(ob, [secret], policy=RetryPolicy((0.0,), 0), on_dead=dead.append)
    with caplog.at_level(logging.ERROR, logger="endcall.delivery"):
        stats = await relay.run_once()
    await relay.aclose()
    assert stats.dead == 1
    assert [r.end_id for r in dead] == ["gone-1"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("gone-1" in r.getMessage() and "410" in r.getMessage() for r in errors)
    rec = ob.get("gone-1")
    assert rec is not None and rec.status == "dead"
    ob.close()


def test_replay_dead_in_bulk_from_the_cli(outbox_path: Path) -> None:
    ob = SqliteOutbox(outbox_path)
    for e in ("d1", "d2"):
        ob.store(e, "http://127.0.0.1:9/h", b"{}", owner="o", lease=0)
        ob.mark_failed(e, "o", dead=True, next_attempt_at=0, status_code=500, error="HTTP 500")
    ob.store("p1", "http://127.0.0.1:9/h", b"{}", owner="o", lease=0)
    ob.close()
    base = ["outbox", "--outbox", str(outbox_path), "replay"]
    r = CliRunner().invoke(main, [*base, "--dead", "--since", "2099-01-01", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"replayed": []}
    r = CliRunner().invoke(main, [*base, "--dead", "--since", "1h", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"replayed": ["d1", "d2"]}
    ob = SqliteOutbox(outbox_path)
    assert ob.counts()["dead"] == 0 and ob.counts()["pending"] == 3
    ob.close()
    r = CliRunner().invoke(main, [*base])
    assert r.exit_code != 0 and "either an END_ID or --dead" in r.output
    r = CliRunner().invoke(main, [*base, "d1", "--since", "1h"])
    assert r.exit_code != 0 and "--since only goes with --dead" in r.output
