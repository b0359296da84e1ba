"""A PostgreSQL outbox heals (issue 20): a connection the server dropped — pg_terminate_backend,
a real restart of the server process — is replaced at the next transaction, and a background
relay started before its database delivers once the database is up."""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pgcluster
import psycopg

from endcall.reports.outbox import PostgresOutbox
from endcall.reports.relay import BackgroundRelay
from endcall.reports.webhook import Webhook

URL = "https://receiver.example/end"
ME = "test-owner"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _kill_connections(dsn: str) -> int:
    """What a failover does to every client of the database: their backends are gone."""
    db = dsn.rsplit("/", 1)[1]
    with psycopg.connect(dsn, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (db,),
        ).fetchall()
    return len(rows)


def test_a_terminated_connection_is_replaced_at_the_next_transaction() -> None:
    ob = PostgresOutbox(pgcluster.database_or_skip())
    try:
        assert ob.store("e1", URL, b'{"n":1}', owner=ME, lease=0) == "stored"
        assert _kill_connections(ob.dsn) >= 1
        # the first use after the drop: nothing ran yet, so it reconnects and goes on
        assert ob.store("e2", URL, b'{"n":2}', owner=ME, lease=0) == "stored"
        assert {r.end_id for r in ob.records()} == {"e1", "e2"}
    finally:
        ob.close()


def test_the_outbox_heals_after_a_real_restart_of_the_server() -> None:
    ob = PostgresOutbox(pgcluster.database_or_skip())
    try:
        assert ob.store("before", URL, b"{}", owner=ME, lease=0) == "stored"
        pgcluster.restart()
        assert ob.store("after", URL, b"{}", owner=ME, lease=0) == "stored"
        record = ob.get("before")
        assert record is not None and record.status == "pending"
        assert ob.counts()["pending"] == 2
    finally:
        ob.close()


def test_a_relay_started_before_its_database_delivers_once_it_is_up() -> None:
    """Pod ordering: the relay starts while its database does not exist yet; it keeps
    trying (one WARNING, not a dead thread) and delivers the report stored once it is up."""
    cluster = pgcluster.cluster()
    name = "late_" + uuid.uuid4().hex[:10]
    dsn = cluster.rsplit("/", 1)[0] + "/" + name
    delivered = threading.Event()
    bodies: list[bytes] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        delivered.set()
        return httpx.Response(200)

    relay = BackgroundRelay(dsn, (SECRET,), poll=0.5, transport=httpx.MockTransport(receiver))
    relay.start()
    try:
        time.sleep(1.5)  # a few failed opens
        assert relay.thread.is_alive() and relay.error is None
        with psycopg.connect(cluster, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        ob = PostgresOutbox(dsn)
        try:
            body = json.dumps({"end_id": "e_late"}).encode()
            webhook = Webhook(url=URL, secret=SECRET)
            ob.store("e_late", URL, body, owner=ME, lease=0, delivery=webhook.delivery())
            assert delivered.wait(30), "the relay never delivered the report"
            assert bodies == [body]
        finally:
            ob.close()
    finally:
        relay.stop(timeout=10)
