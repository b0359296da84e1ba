"""The Node agent package (node/, ``endcall-agent``) and Python share one outbox.

A Node process (node/test/fixtures/outbox_tool.ts, compiled once per session with the repo's
TypeScript) writes final reports and crash drafts into a SQLite file or a PostgreSQL database;
Python's relay (``endcall outbox deliver``) delivers them to a receiver that verifies every
Standard Webhooks signature. And the reverse: Python creates the outbox, Node opens it and
stores into it. A draft left by a SIGKILLed Node process is delivered once its lease expires,
never while its heartbeats hold it.

Needs Node and node/node_modules (``npm install`` in node/); PostgreSQL cases need Debian's
``postgresql`` (skipped without it, failed in CI).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks

from endcall.protocol import parse_report
from endcall.reports.outbox import open_outbox
from endcall.reports.outbox.base import draft_key
from endcall.reports.outbox.sql import SqlOutbox

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "node"
ENDCALL = str(Path(sys.executable).parent / "endcall")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="session")
def node_tool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture tool compiled to JavaScript (only the reports wing and the tool itself)."""
    node, npx = shutil.which("node"), shutil.which("npx")
    if node is None or npx is None or not (NODE_DIR / "node_modules").is_dir():
        _unavailable("node/npx or node/node_modules missing (run npm install in node/)")
    out = tmp_path_factory.mktemp("node-build")
    r = subprocess.run(
        [
            npx or "npx",
            "--no-install",
            "tsc",
            "--outDir",
            str(out),
            "--rootDir",
            str(NODE_DIR),
            "--module",
            "nodenext",
            "--moduleResolution",
            "nodenext",
            "--target",
            "es2022",
            "--strict",
            "--skipLibCheck",
            "--types",
            "node",
            "test/fixtures/outbox_tool.ts",
        ],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (out / "package.json").write_text('{"type": "module"}')
    (out / "node_modules").symlink_to(NODE_DIR / "node_modules")
    return out / "test" / "fixtures" / "outbox_tool.js"


def run_node(tool: Path, *, ok: bool = True, **args: Any) -> dict[str, Any]:
    r = subprocess.run(
        ["node", str(tool), json.dumps(args)], capture_output=True, text=True, timeout=60
    )
    assert (r.returncode == 0) == ok, r.stdout + r.stderr
    result: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


class Receiver:
    """Verifies every signature; keeps (webhook-id, body) of each verified request."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.rejected = 0
        #: answer this many verified requests with a 500 first
        self.fail_first = 0
        verifier = standardwebhooks.Webhook(SECRET)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                try:
                    verifier.verify(body, dict(self.headers.items()))
                except standardwebhooks.webhooks.WebhookVerificationError:
                    outer.rejected += 1
                    self.send_response(401)
                else:
                    if outer.fail_first > 0:
                        outer.fail_first -= 1
                        self.send_response(500)
                    else:
                        outer.got.append((self.headers["webhook-id"], body))
                        self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ids(self) -> list[str]:
        return sorted(i for i, _ in self.got)

    def body(self, webhook_id: str) -> bytes:
        return next(b for i, b in self.got if i == webhook_id)


def node_draft(
    tool: Path, target: str, receiver: Receiver, end_id: str, **args: Any
) -> dict[str, Any]:
    """A Node process saves a crash draft for ``receiver`` and exits without closing anything."""
    return run_node(
        tool, cmd="draft", outbox=target, url=receiver.url, secret=SECRET, end_id=end_id, **args
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[Any]:
    from endcall.testing.pgcluster import PgCluster, PgUnavailable

    try:
        import psycopg  # noqa: F401

        cluster = PgCluster().init()
        cluster.start()
    except (PgUnavailable, ImportError) as e:
        _unavailable(f"PostgreSQL unavailable: {e}")
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the shared outbox lives: a SQLite file or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "outbox.sqlite3")
    cluster = request.getfixturevalue("pg_cluster")
    return str(cluster.create_database("n" + os.urandom(6).hex()))


def relay(target: str) -> dict[str, int]:
    """One pass of Python's relay over the outbox."""
    r = subprocess.run(
        [ENDCALL, "outbox", "--outbox", target, "deliver", "--secret", SECRET, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    stats: dict[str, int] = json.loads(r.stdout.strip().splitlines()[-1])
    return stats


def schema_of(target: str) -> Any:
    """Everything about the outbox's tables that Python and Node must agree on."""
    if target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(target) as conn:
            cols = conn.execute(
                "SELECT table_name, ordinal_position, column_name, data_type, column_default,"
                " is_nullable FROM information_schema.columns WHERE table_schema = 'public'"
                " ORDER BY table_name, ordinal_position"
            ).fetchall()
            idx = conn.execute(
                "SELECT tablename, indexname, indexdef FROM pg_indexes"
                " WHERE schemaname = 'public' ORDER BY indexname"
            ).fetchall()
            versions = conn.execute("SELECT component, version FROM endcall_schema").fetchall()
        return cols, idx, versions
    with sqlite3.connect(target) as conn:
        master = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY rowid").fetchall()
        versions = conn.execute("SELECT component, version FROM endcall_schema").fetchall()
    return master, versions


def second_target(target: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if target.startswith("postgresql://"):
        cluster = request.getfixturevalue("pg_cluster")
        return str(cluster.create_database("n" + os.urandom(6).hex()))
    return str(tmp_path / "second.sqlite3")


def test_a_node_created_outbox_has_pythons_schema(
    node_tool: Path, target: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    assert run_node(node_tool, cmd="open", outbox=target) == {"ok": True}
    python_made = second_target(target, tmp_path, request)
    open_outbox(python_made).close()
    node_schema = schema_of(target)
    assert node_schema == schema_of(python_made)
    assert node_schema[-1] == [("outbox", 4)]
    open_outbox(target).close()  # Python finds it current: nothing changes
    assert schema_of(target) == node_schema


def test_node_refuses_a_newer_schema(node_tool: Path, target: str) -> None:
    open_outbox(target).close()
    if target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("UPDATE endcall_schema SET version = 5")
    else:
        with sqlite3.connect(target) as conn:
            conn.execute("UPDATE endcall_schema SET version = 5")
    out = run_node(node_tool, ok=False, cmd="open", outbox=target)
    assert out["cause"] == "SchemaTooNew"
    assert "schema version 5, newer than this endcall-agent knows (4)" in out["error"]
    assert "OutboxError" in out["error"]


def test_many_node_processes_create_a_fresh_outbox_once(node_tool: Path, target: str) -> None:
    procs = [
        subprocess.Popen(
            ["node", str(node_tool), json.dumps({"cmd": "open", "outbox": target})],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, outs
    assert schema_of(target)[-1] == [("outbox", 4)]


def test_node_reports_are_delivered_by_the_python_relay(
    node_tool: Path, target: str, receiver: Receiver
) -> None:
    final = run_node(
        node_tool,
        cmd="store",
        outbox=target,
        url=receiver.url,
        secret=SECRET,
        end_id="e_final",
        draft_first=True,
    )
    assert final["stored"] is True
    assert final["outcome"]["stored"] is True and final["outcome"]["delivered"] is False
    ending = {
        "reason": "customer-ended-call",
        "initiator": {"kind": "customer", "identity": "cand-9"},
        "request_id": "req_1",
        "meta": {"button": "end"},
    }
    crash = node_draft(node_tool, target, receiver, "e_crash", lease=1, ending=ending)
    assert crash["lease"] == 2  # the lease covers the 1 s request timeout plus 1 s
    ob = open_outbox(target)
    try:
        draft = ob.get(draft_key("e_crash"))
        assert draft is not None and draft.status == "draft"
        assert draft.lease_owner == crash["owner"]
        assert draft.ending is not None and draft.ending["ended_reason"] == "customer-ended-call"
        assert ob.get(draft_key("e_final")) is None  # the final report replaced its draft
        time.sleep(2.3)  # the crashed writer's lease runs out
        stats = relay(target)
        assert stats["delivered"] == 2, stats
        assert receiver.ids() == ["e_crash.draft", "e_final"]
        assert receiver.rejected == 0
        # the final report byte for byte as Node serialized it
        assert receiver.body("e_final") == base64.b64decode(final["body"])
        doc = parse_report(receiver.body("e_crash.draft"))
        assert doc.complete is False
        assert doc.ended_reason == "customer-ended-call"  # the accepted end, written in
        assert doc.request_id == "req_1"
        assert doc.initiator is not None and doc.initiator.identity == "cand-9"
        for key in ("e_final", "e_crash.draft"):
            rec = ob.get(key)
            assert rec is not None and rec.status == "delivered", key
        assert relay(target)["claimed"] == 0  # nothing is sent twice
    finally:
        ob.close()


def test_node_stores_into_an_outbox_python_created(
    node_tool: Path, target: str, receiver: Receiver
) -> None:
    ob = open_outbox(target)
    try:
        ob.store("e_py", receiver.url, b'{"from":"python"}', owner="py", lease=0.0)
    finally:
        ob.close()
    read = run_node(node_tool, cmd="get", outbox=target, key="e_py")
    assert read["status"] == "pending" and read["leaseOwner"] == "py"
    assert base64.b64decode(read["body"]) == b'{"from":"python"}'
    out = run_node(
        node_tool, cmd="store", outbox=target, url=receiver.url, secret=SECRET, end_id="e_node"
    )
    assert out["stored"] is True
    stats = relay(target)
    assert stats["delivered"] == 2, stats
    assert receiver.ids() == ["e_node", "e_py"]
    assert receiver.body("e_node") == base64.b64decode(out["body"])
    ob = open_outbox(target)
    try:
        rec = ob.get("e_node")
        assert rec is not None
        assert rec.delivery["timeout"] == 15.0 and rec.delivery["keys"]
        assert rec.lease_owner is None and rec.status == "delivered"
    finally:
        ob.close()


def test_a_sigkilled_node_agents_draft_is_delivered_once_its_lease_expires(
    node_tool: Path, target: str, receiver: Receiver
) -> None:
    proc = subprocess.Popen(
        [
            "node",
            str(node_tool),
            json.dumps(
                {
                    "cmd": "draft",
                    "outbox": target,
                    "url": receiver.url,
                    "secret": SECRET,
                    "end_id": "e_kill",
                    "lease": 1.5,
                    "heartbeat": 0.3,
                    "hold": True,
                }
            ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["ready"] is True and ready["lease"] == 2
        time.sleep(3.0)  # longer than the lease: only its heartbeats keep it held
        assert relay(target)["claimed"] == 0
        assert receiver.got == []
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        ob = open_outbox(target)
        try:
            rec = ob.get(draft_key("e_kill"))
            assert rec is not None and rec.lease_expires_at is not None
            assert rec.lease_owner == ready["owner"]
        finally:
            ob.close()
        time.sleep(2.4)  # the dead owner's lease runs out
        stats = relay(target)
        assert stats["delivered"] == 1, stats
        assert receiver.ids() == ["e_kill.draft"]
        assert receiver.body("e_kill.draft") == base64.b64decode(ready["body"])
        assert parse_report(receiver.body("e_kill.draft")).complete is False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_node_process_that_exits_hands_its_draft_over_at_once(
    node_tool: Path, target: str, receiver: Receiver
) -> None:
    """A Node agent process that exits without closing its pipeline (``process.exit``, an
    uncaught error, @livekit/agents ending an orphaned job process) ends its draft's lease in
    its ``exit`` event on SQLite, so the relay's next pass delivers it — not 60 s later. On
    PostgreSQL (no synchronous client) the lease runs out as after a SIGKILL."""
    crash = node_draft(node_tool, target, receiver, "e_exit", lease=60)
    ob = open_outbox(target)
    try:
        rec = ob.get(draft_key("e_exit"))
        assert rec is not None and rec.status == "draft"
        assert rec.lease_owner == crash["owner"] and rec.lease_expires_at is not None
        stats = relay(target)
        if target.startswith("postgresql://"):
            assert rec.lease_expires_at > time.time() + 30
            assert stats["claimed"] == 0 and receiver.got == []
            return
        assert rec.lease_expires_at <= time.time()
        assert stats["delivered"] == 1, stats
        assert receiver.ids() == ["e_exit.draft"]
        assert receiver.body("e_exit.draft") == base64.b64decode(crash["body"])
    finally:
        ob.close()


class Session:
    """A Node pipeline kept open in its own process, driven step by step."""

    def __init__(self, tool: Path, **args: Any) -> None:
        self.proc = subprocess.Popen(
            ["node", str(tool), json.dumps({"cmd": "session", **args})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert json.loads(self.readline())["ready"] is True

    def readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read() if self.proc.stderr else "no output"
        return line

    def step(self, op: str, **extra: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **extra}) + "\n")
        self.proc.stdin.flush()
        out: dict[str, Any] = json.loads(self.readline())
        assert out["op"] == op
        return out

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def test_a_node_pipeline_keeps_working_across_a_postgres_restart(
    node_tool: Path, pg_cluster: Any, receiver: Receiver
) -> None:
    dsn = pg_cluster.create_database("n" + os.urandom(6).hex())
    s = Session(node_tool, outbox=dsn, url=receiver.url, secret=SECRET, end_id="e_rs")
    try:
        s.step("saveDraft")
        ob = open_outbox(dsn)
        try:
            assert ob.get(draft_key("e_rs")) is not None
        finally:
            ob.close()
        pg_cluster.restart()  # every connection dropped, the server back on the same port
        assert s.step("store")["result"] is True
        out = s.step("deliver", within_ms=5000)["result"]
        assert out["delivered"] is True and out["stored"] is True
        s.step("close")
    finally:
        s.end()
    ob = open_outbox(dsn)
    try:
        rec = ob.get("e_rs")
        assert rec is not None and rec.status == "delivered"
        assert ob.get(draft_key("e_rs")) is None
    finally:
        ob.close()
    assert receiver.ids() == ["e_rs"]


def test_a_report_postgres_refused_is_delivered_from_memory_and_recorded_later(
    node_tool: Path, pg_cluster: Any, receiver: Receiver
) -> None:
    dsn = pg_cluster.create_database("n" + os.urandom(6).hex())
    s = Session(node_tool, outbox=dsn, url=receiver.url, secret=SECRET, end_id="e_down")
    try:
        s.step("saveDraft")
        pg_cluster.stop()
        try:
            stored = s.step("store")
            assert stored["result"] is False
            assert any("kept in memory" in line for line in stored["logs"]), stored
            out = s.step("deliver", within_ms=5000)["result"]
            assert out["delivered"] is True and out["stored"] is False
        finally:
            pg_cluster.start()
        # the write the outbox owes (delivered, replacing the draft) lands once it is back
        deadline = time.monotonic() + 20
        while True:
            ob = open_outbox(dsn)
            try:
                rec = ob.get("e_down")
                draft = ob.get(draft_key("e_down"))
            finally:
                ob.close()
            if rec is not None and rec.status == "delivered" and draft is None:
                break
            assert time.monotonic() < deadline, (rec, draft)
            time.sleep(0.3)
        closed = s.step("close")
        assert not any("endcall_unsaved_report" in line for line in closed["logs"])
    finally:
        s.end()
    assert receiver.ids() == ["e_down"]
    assert relay(dsn)["claimed"] == 0  # no relay sends the draft afterwards


def test_node_in_process_retries_are_recorded_where_python_reads_them(
    node_tool: Path, target: str, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    s = Session(
        node_tool,
        outbox=target,
        url=receiver.url,
        secret=SECRET,
        end_id="e_retry",
        schedule=[0, 0.2, 0.2, 3600],
        jitter=0,
    )
    try:
        assert s.step("store")["result"] is True
        out = s.step("deliver", within_ms=5000)["result"]
        assert out == {
            "delivered": True,
            "stored": True,
            "dead": False,
            "attempts": 3,
            "lastStatus": 200,
            "lastError": None,
        }
        s.step("close")
    finally:
        s.end()
    ob = open_outbox(target)
    try:
        assert isinstance(ob, SqlOutbox)
        rec = ob.get("e_retry")
        assert rec is not None and rec.status == "delivered" and rec.attempts == 3
        assert rec.delivery["schedule"] == [0.0, 0.2, 0.2, 3600.0]
        log = ob.attempts("e_retry")
        assert [(a["outcome"], a["status_code"]) for a in log] == [
            ("failed", 500),
            ("failed", 500),
            ("delivered", 200),
        ]
    finally:
        ob.close()
    # `endcall outbox why` tells a Node report's story like a Python one's
    r = subprocess.run(
        [ENDCALL, "outbox", "--outbox", target, "why", "e_retry", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    story = json.loads(r.stdout)
    [entry] = story["reports"]
    assert entry["end_id"] == "e_retry" and entry["status"] == "delivered"
    assert entry["type"] == "session.ended" and len(entry["attempt_log"]) == 3
    assert "delivered" in story["verdict"]


def test_what_the_window_leaves_is_released_to_the_python_relay(
    node_tool: Path, target: str, receiver: Receiver
) -> None:
    receiver.fail_first = 1
    s = Session(
        node_tool,
        outbox=target,
        url=receiver.url,
        secret=SECRET,
        end_id="e_left",
        schedule=[0, 1, 60],
        jitter=0,
    )
    try:
        assert s.step("store")["result"] is True
        out = s.step("deliver", within_ms=300)["result"]
        assert out["delivered"] is False and out["stored"] is True and out["attempts"] == 1
        s.step("close")
    finally:
        s.end()
    ob = open_outbox(target)
    try:
        rec = ob.get("e_left")
        assert rec is not None and rec.status == "pending" and rec.lease_owner is None
    finally:
        ob.close()
    time.sleep(1.1)  # its next attempt is due
    assert relay(target)["delivered"] == 1
    assert receiver.ids() == ["e_left"]
