"""`endcall outbox ...` against a real SQLite file and a real receiver."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner
from support import Action, Receiver

from endcall.cli import main
from endcall.reports.outbox import SqliteOutbox, make_owner


def seed(path: Path, url: str, n: int = 3) -> dict[str, bytes]:
    ob = SqliteOutbox(path)
    bodies = {}
    for i in range(n):
        e = f"cli-{i}"
        bodies[e] = json.dumps({"end_id": e, "complete": True}).encode()
        ob.store(e, url, bodies[e], owner=make_owner(), lease=0)
    ob.close()
    return bodies


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return r.exit_code, r.output


def test_list_show_deliver_replay_purge(outbox_path: Path, receiver: Receiver, secret: str) -> None:
    bodies = seed(outbox_path, receiver.url)
    base = ["outbox", "--outbox", str(outbox_path)]
    code, out = run(*base, "list")
    assert code == 0 and "pending: 3" in out and "END_ID" in out and "cli-2" in out
    code, out = run(*base, "list", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert {r["end_id"] for r in rows} == set(bodies) and rows[0]["status"] == "pending"
    code, out = run(*base, "show", "cli-1", "--json")
    assert code == 0 and json.loads(out)["body"].encode() == bodies["cli-1"]
    code, out = run(*base, "show", "cli-1")
    assert code == 0 and '"complete": true' in out
    code, out = run(*base, "show", "nope")
    assert code == 1 and "no report" in out

    # no secret -> usage error; with the env secret -> delivered
    code, out = run(*base, "deliver", env={"ENDCALL_WEBHOOK_SECRET": ""})
    assert code == 2 and "ENDCALL_WEBHOOK_SECRET" in out
    receiver.plan = lambda e, n: Action(410) if e == "cli-0" else Action(200)
    code, out = run(*base, "deliver", "--json", env={"ENDCALL_WEBHOOK_SECRET": secret})
    assert code == 0 and json.loads(out)["delivered"] == 2 and json.loads(out)["dead"] == 1
    code, out = run(*base, "list", "--status", "dead", "--json")
    assert [json.loads(line)["end_id"] for line in out.splitlines()] == ["cli-0"]

    receiver.plan = lambda e, n: Action(200)
    code, out = run(*base, "replay", "cli-0")
    assert code == 0 and "pending and due now (was dead); attempts 1 -> 0" in out
    code, out = run(*base, "deliver", "--secret", secret, "--json")
    assert code == 0 and json.loads(out)["delivered"] == 1
    receiver.assert_invariants(bodies)

    code, out = run(*base, "purge", "--delivered-before", "2000-01-01")
    assert code == 0 and "purged 0" in out
    tomorrow = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
    code, out = run(*base, "purge", "--delivered-before", tomorrow, "--json")
    assert code == 0 and json.loads(out)["purged"] == 3
    code, out = run(*base, "purge", "--delivered-before", "yesterday-ish")
    assert code == 2 and "ISO date" in out


def test_outbox_from_env_and_bad_secret(outbox_path: Path) -> None:
    seed(outbox_path, "http://127.0.0.1:9/x", n=1)
    code, out = run("outbox", "list", env={"ENDCALL_OUTBOX": str(outbox_path)})
    assert code == 0 and "cli-0" in out
    code, out = run("outbox", "--outbox", str(outbox_path), "deliver", "--secret", "whsec_???")
    assert code == 2 and "base64" in out


def test_ask_livekit_needs_forever_and_livekits_credentials(outbox_path: Path, secret: str) -> None:
    seed(outbox_path, "http://127.0.0.1:9/x", n=1)
    deliver = ("outbox", "--outbox", str(outbox_path), "deliver", "--secret", secret)
    code, out = run(*deliver, "--ask-livekit")
    assert code == 2 and "--ask-livekit needs --forever" in out
    no_livekit = {"LIVEKIT_URL": "", "LIVEKIT_API_KEY": "", "LIVEKIT_API_SECRET": ""}
    code, out = run(*deliver, "--forever", "--ask-livekit", env=no_livekit)
    assert code == 2 and "LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET" in out
