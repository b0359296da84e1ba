"""Example backend that receives endcall session reports (the ``session.ended`` webhook).

A small Starlette app, the shape of what a real backend does with the report:

- verifies the Standard Webhooks signature on the **raw** body with the reference
  ``standardwebhooks`` package (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``;
  timestamps more than 5 minutes away are rejected),
- dedupes by ``webhook-id`` (the report's ``end_id``): a retry of a stored report gets 200 again
  and is not stored twice,
- stores the report in SQLite (``synchronous=FULL``) and only then answers 2xx,
- lists the reports (``GET /reports``, ``GET /reports/{id}``).

Status codes (protocol.md §6): 200 stored or duplicate; 400 not JSON; 401 bad or missing
signature (the sender keeps retrying: a key rotation may fix it); 503 with ``Retry-After``
while "down"; 410 for a report whose ``webhook-id`` was marked unwanted (``gone``), which tells
the sender to stop.

Every request, accepted or not, is recorded as an attempt, so a demo can show how many tries a
report took. A fault mode makes the receiver "down" (503) for N seconds, for the demo.

Run it: ``python examples/receiver.py --secret whsec_... --port 8900 [--db reports.sqlite]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import standardwebhooks
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["Receiver", "StoredReport", "create_app", "main"]

WEBHOOK_PATH = "/webhooks/session-ended"
MAX_BODY = 16 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    webhook_id   TEXT PRIMARY KEY,
    received_at  REAL NOT NULL,
    body         BLOB NOT NULL,
    ended_reason TEXT,
    room         TEXT,
    complete     INTEGER,
    duplicates   INTEGER NOT NULL DEFAULT 0,
    body_mismatches INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS attempts (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id  TEXT,
    at          REAL NOT NULL,
    status      INTEGER NOT NULL,
    verified    INTEGER NOT NULL,
    outcome     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_id ON attempts (webhook_id);
"""


@dataclass(frozen=True)
class StoredReport:
    """One stored report with its delivery history as seen by this receiver."""

    webhook_id: str
    received_at: float
    body: bytes
    ended_reason: str | None
    room: str | None
    complete: bool | None
    attempts: int
    duplicates: int
    body_mismatches: int
    verified: bool

    @property
    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.body)
        return doc

    def summary(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "received_at": self.received_at,
            "ended_reason": self.ended_reason,
            "room": self.room,
            "complete": self.complete,
            "attempts": self.attempts,
            "duplicates": self.duplicates,
            "body_mismatches": self.body_mismatches,
            "verified": self.verified,
        }


class Receiver:
    """The receiver's state: secrets, the SQLite store and the fault switches.

    Thread-safe (one connection behind a lock), so tests and the demo can read it from
    another thread while uvicorn serves requests.
    """

    def __init__(self, secrets: str | Sequence[str], db_path: str | os.PathLike[str]) -> None:
        secret_list = [secrets] if isinstance(secrets, str) else list(secrets)
        if not secret_list:
            raise ValueError("at least one webhook secret is required")
        # one verifier per secret: during a rotation either may have signed
        self._verifiers = [standardwebhooks.Webhook(s) for s in secret_list]
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._down_until = 0.0
        self._gone: set[str] = set()

    # -- fault switches ----------------------------------------------------------------
    def down_for(self, seconds: float) -> None:
        """Answer 503 (with ``Retry-After``) to every report for the next ``seconds``."""
        self._down_until = time.time() + seconds

    def up(self) -> None:
        self._down_until = 0.0

    @property
    def is_down(self) -> bool:
        return time.time() < self._down_until

    def mark_gone(self, webhook_id: str) -> None:
        """Answer 410 Gone to this report (the sender must stop retrying it)."""
        self._gone.add(webhook_id)

    # -- the webhook ---------------------------------------------------------------------
    def verify(self, body: bytes, headers: dict[str, str]) -> bool:
        """True when any secret's signature matches (the reference verifier decodes the body
        as JSON after checking the signature; a non-JSON body is still *verified*)."""
        for verifier in self._verifiers:
            try:
                verifier.verify(body, headers)
            except standardwebhooks.WebhookVerificationError:
                continue
            except ValueError:  # signature fine, body not JSON (answered 400 below)
                return True
            return True
        return False

    def handle(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any], float]:
        """Process one delivery attempt: ``(status, json answer, retry_after or 0)``."""
        webhook_id = headers.get("webhook-id")
        now = time.time()
        if self.is_down:
            retry_after = max(1.0, math.ceil(self._down_until - now))
            self._attempt(webhook_id, 503, verified=False, outcome="down")
            return 503, {"error": "receiver temporarily down"}, retry_after
        if not self.verify(body, headers):
            self._attempt(webhook_id, 401, verified=False, outcome="bad_signature")
            return 401, {"error": "invalid or missing webhook signature"}, 0.0
        assert webhook_id is not None  # verification requires it
        if webhook_id in self._gone:
            self._attempt(webhook_id, 410, verified=True, outcome="gone")
            return 410, {"error": "this report is not wanted"}, 0.0
        try:
            doc = json.loads(body)
        except ValueError:
            self._attempt(webhook_id, 400, verified=True, outcome="not_json")
            return 400, {"error": "body is not JSON"}, 0.0
        if not isinstance(doc, dict):
            self._attempt(webhook_id, 400, verified=True, outcome="not_object")
            return 400, {"error": "body is not a JSON object"}, 0.0
        room = doc.get("room")
        room_name = room.get("name") if isinstance(room, dict) else None
        reason = doc.get("ended_reason")
        complete = doc.get("complete")
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO reports (webhook_id, received_at, body, ended_reason,"
                " room, complete) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    webhook_id,
                    now,
                    body,
                    reason if isinstance(reason, str) else None,
                    room_name if isinstance(room_name, str) else None,
                    int(complete) if isinstance(complete, bool) else None,
                ),
            )
            stored = cur.rowcount == 1
            if not stored:
                row = self._db.execute(
                    "SELECT body FROM reports WHERE webhook_id = ?", (webhook_id,)
                ).fetchone()
                mismatch = int(bytes(row[0]) != body)
                self._db.execute(
                    "UPDATE reports SET duplicates = duplicates + 1,"
                    " body_mismatches = body_mismatches + ? WHERE webhook_id = ?",
                    (mismatch, webhook_id),
                )
            self._attempt_locked(
                webhook_id, 200, verified=True, outcome="stored" if stored else "duplicate"
            )
        return 200, {"status": "stored" if stored else "duplicate", "id": webhook_id}, 0.0

    def _attempt(
        self, webhook_id: str | None, status: int, *, verified: bool, outcome: str
    ) -> None:
        with self._lock:
            self._attempt_locked(webhook_id, status, verified=verified, outcome=outcome)

    def _attempt_locked(
        self, webhook_id: str | None, status: int, *, verified: bool, outcome: str
    ) -> None:
        self._db.execute(
            "INSERT INTO attempts (webhook_id, at, status, verified, outcome)"
            " VALUES (?, ?, ?, ?, ?)",
            (webhook_id, time.time(), status, int(verified), outcome),
        )

    # -- reading ---------------------------------------------------------------------------
    def reports(self) -> list[StoredReport]:
        """Every stored report, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT r.webhook_id, r.received_at, r.body, r.ended_reason, r.room,"
                " r.complete, r.duplicates, r.body_mismatches,"
                " (SELECT COUNT(*) FROM attempts a WHERE a.webhook_id = r.webhook_id)"
                " FROM reports r ORDER BY r.received_at, r.webhook_id"
            ).fetchall()
        return [
            StoredReport(
                webhook_id=row[0],
                received_at=row[1],
                body=bytes(row[2]),
                ended_reason=row[3],
                room=row[4],
                complete=None if row[5] is None else bool(row[5]),
                attempts=row[8],
                duplicates=row[6],
                body_mismatches=row[7],
                verified=True,  # only verified reports are ever stored
            )
            for row in rows
        ]

    def report(self, webhook_id: str) -> StoredReport | None:
        for r in self.reports():
            if r.webhook_id == webhook_id:
                return r
        return None

    def attempts(self, webhook_id: str | None = None) -> list[dict[str, Any]]:
        """Recorded attempts (all, or one report's), oldest first."""
        query = "SELECT webhook_id, at, status, verified, outcome FROM attempts"
        params: tuple[str, ...] = ()
        if webhook_id is not None:
            query += " WHERE webhook_id = ?"
            params = (webhook_id,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq", params).fetchall()
        return [
            {
                "webhook_id": r[0],
                "at": r[1],
                "status": r[2],
                "verified": bool(r[3]),
                "outcome": r[4],
            }
            for r in rows
        ]

    async def wait_for(
        self, predicate: Any, timeout: float, poll: float = 0.05
    ) -> list[StoredReport]:
        """Wait until ``predicate(reports)`` is true; returns the reports (raises on timeout)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            reports = self.reports()
            if predicate(reports):
                return reports
            if loop.time() >= deadline:
                raise TimeoutError(f"receiver condition not met within {timeout} s")
            await asyncio.sleep(poll)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def create_app(receiver: Receiver, *, admin: bool = False) -> Starlette:
    """The receiver's routes. ``admin`` adds ``POST /_fault`` (``{"down_for": N}``,
    ``{"up": true}``, ``{"gone": ID}``) for demos and tests; keep it off in production."""

    async def webhook(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": "body too large"}, status_code=413)
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, answer, retry_after = receiver.handle(body, headers)
        extra = {"Retry-After": str(int(retry_after))} if retry_after else None
        return JSONResponse(answer, status_code=status, headers=extra)

    async def list_reports(request: Request) -> Response:
        return JSONResponse([r.summary() for r in receiver.reports()])

    async def get_report(request: Request) -> Response:
        found = receiver.report(request.path_params["webhook_id"])
        if found is None:
            return JSONResponse({"error": "no such report"}, status_code=404)
        return JSONResponse({**found.summary(), "report": found.document})

    async def fault(request: Request) -> Response:
        try:
            cmd = await request.json()
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(cmd, dict):
            return JSONResponse({"error": "expected an object"}, status_code=400)
        if isinstance(cmd.get("down_for"), int | float):
            receiver.down_for(float(cmd["down_for"]))
        if cmd.get("up") is True:
            receiver.up()
        if isinstance(cmd.get("gone"), str):
            receiver.mark_gone(cmd["gone"])
        return JSONResponse({"down": receiver.is_down})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    routes = [
        Route(WEBHOOK_PATH, webhook, methods=["POST"]),
        Route("/reports", list_reports, methods=["GET"]),
        Route("/reports/{webhook_id}", get_report, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    if admin:
        routes.append(Route("/_fault", fault, methods=["POST"]))
    app = Starlette(routes=routes)
    app.state.receiver = receiver
    return app


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument(
        "--secret",
        action="append",
        default=None,
        help="whsec_... secret (repeat for rotation; default $ENDCALL_WEBHOOK_SECRET)",
    )
    parser.add_argument("--db", default="reports.sqlite", help="SQLite file for the reports")
    parser.add_argument("--down-for", type=float, default=0.0, help="start 'down' for N seconds")
    parser.add_argument(
        "--admin", action="store_true", help="enable POST /_fault (demos and tests only)"
    )
    args = parser.parse_args(argv)
    secrets = args.secret or [
        s for s in os.environ.get("ENDCALL_WEBHOOK_SECRET", "").replace(",", " ").split() if s
    ]
    if not secrets:
        parser.error("a secret is required (--secret or ENDCALL_WEBHOOK_SECRET)")
    receiver = Receiver(secrets, args.db)
    if args.down_for:
        receiver.down_for(args.down_for)
    print(f"receiving reports at http://{args.host}:{args.port}{WEBHOOK_PATH} → {args.db}")
    app = create_app(receiver, admin=args.admin)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
