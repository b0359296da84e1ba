"""The outbox CLI does not invent outboxes, `deliver --now`, `replay`'s effect on attempts,
room/job columns and `--room`; `endcall secret new`; no DSN password in any message."""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import Action, Receiver

from endcall.cli import main
from endcall.reports.outbox import SqliteOutbox, make_owner
from endcall.reports.outbox.postgres import PostgresOutbox
from endcall.reports.redact import redact
from endcall.reports.webhook import validate_secret


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return r.exit_code, r.output


def report(end_id: str, room: str, sid: str, job: str) -> bytes:
    doc = {"end_id": end_id, "room": {"name": room, "sid": sid}, "job_id": job}
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "args", [["list"], ["show", "e1"], ["replay", "e1"], ["purge", "--delivered-before", "1d"]]
)
def test_commands_refuse_a_path_with_no_outbox(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "typo" / "outbox.sqlite3"
    code, out = run("outbox", "--outbox", str(missing), *args)
    assert code == 1 and f"no outbox at {missing}" in out and "nothing was created" in out
    assert not missing.exists() and not missing.parent.exists()


def test_deliver_may_create_the_outbox(tmp_path: Path, secret: str) -> None:
    fresh = tmp_path / "new" / "outbox.sqlite3"
    code, out = run("outbox", "--outbox", str(fresh), "deliver", "--secret", secret, "--json")
    assert code == 0 and json.loads(out)["delivered"] == 0 and fresh.exists()


def test_list_shows_room_and_job_and_filters_by_room(outbox_path: Path) -> None:
    ob = SqliteOutbox(outbox_path)
    for i, room in enumerate(["interview-a", "interview-b", "interview-a"]):
        e = f"e{i}"
        ob.store(
            e, "http://x/h", report(e, room, f"RM_{i}", f"AJ_{i}"), owner=make_owner(), lease=0
        )
    ob.store("odd", "http://x/h", b"not json", owner=make_owner(), lease=0)
    ob.close()
    base = ["outbox", "--outbox", str(outbox_path)]
    code, out = run(*base, "list")
    assert code == 0 and "ROOM" in out and "ROOM SID" in out and "JOB ID" in out
    assert "interview-b" in out and "RM_1" in out and "AJ_1" in out
    code, out = run(*base, "list", "--room", "interview-a", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["end_id"] for r in rows) == ["e0", "e2"]
    assert {(r["room"], r["job_id"]) for r in rows} == {
        ("interview-a", "AJ_0"),
        ("interview-a", "AJ_2"),
    }
    code, out = run(*base, "list", "--room", "RM_1", "--json")
    assert [json.loads(line)["room_sid"] for line in out.splitlines()] == ["RM_1"]
    code, out = run(*base, "list", "--room", "nowhere")
    assert code == 0 and "(no reports)" in out
    code, out = run(*base, "show", "e1", "--json")
    assert json.loads(out)["room"] == "interview-b"


def test_deliver_now_sends_reports_not_yet_due(
    outbox_path: Path, receiver: Receiver, secret: str
) -> None:
    ob = SqliteOutbox(outbox_path)
    owner = make_owner()
    ob.store("later", receiver.url, report("later", "r", "RM", "AJ"), owner=owner, lease=60)
    later = time.time() + 3600
    ob.mark_failed("later", owner, dead=False, next_attempt_at=later, status_code=503, error="503")
    ob.close()
    base = ["outbox", "--outbox", str(outbox_path)]
    code, out = run(*base, "deliver", "--secret", secret, "--json")
    assert code == 0 and json.loads(out)["delivered"] == 0  # not due for an hour
    receiver.plan = lambda e, n: Action(200)
    code, out = run(*base, "deliver", "--now", "--secret", secret, "--json")
    stats = json.loads(out)
    assert code == 0 and stats["made_due"] == 1 and stats["delivered"] == 1
    rec = SqliteOutbox(outbox_path).get("later")
    assert rec is not None and rec.status == "delivered" and rec.attempts == 2


def test_replay_help_says_what_it_does_to_attempts() -> None:
    code, out = run("outbox", "replay", "--help")
    assert code == 0 and "attempt count is reset to 0" in out and "Drafts" in out


def test_secret_new_prints_a_fresh_usable_secret() -> None:
    code, first = run("secret", "new")
    code2, second = run("secret", "new")
    assert code == code2 == 0 and first != second
    value = first.strip()
    assert value.startswith("whsec_") and len(base64.b64decode(value[6:])) == 32
    validate_secret(value)


def test_redact_masks_every_connection_string_password() -> None:
    assert redact("postgresql://u:s3cret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact("to postgres://user:p%40ss@h/x and back") == "to postgres://user:***@h/x and back"
    assert redact("host=db password=s3cret user=u") == "host=db password=*** user=u"
    assert redact("postgresql://h/x?password=s3cret&a=1") == "postgresql://h/x?password=***&a=1"
    assert redact("postgresql://u@db/x and /var/outbox.sqlite3") == (
        "postgresql://u@db/x and /var/outbox.sqlite3"
    )


def test_no_password_in_logs_errors_or_cli_output(caplog: pytest.LogCaptureFixture) -> None:
    import endcall  # noqa: F401 (installs the log filter)

    dsn = "postgresql://u:s3cret@127.0.0.1:1/db"
    with caplog.at_level(logging.INFO):
        logging.getLogger("endcall.relay").warning("relay stopped: cannot open %s", dsn)
        try:
            raise RuntimeError(f"boom at {dsn}")
        except RuntimeError:
            logging.getLogger("endcall").exception("failed")
    text = "\n".join(caplog.text.splitlines())
    assert "s3cret" not in text and "u:***@127.0.0.1" in text
    with pytest.raises(Exception) as err:  # a malformed DSN: psycopg quotes it whole
        PostgresOutbox("postgresql://u:s3cret@[::1/db", connect_timeout=1)
    assert "s3cret" not in str(err.value) and "u:***@" in str(err.value)
    code, out = run("outbox", "--outbox", dsn, "list")
    assert code == 1 and "s3cret" not in out and "u:***@" in out
