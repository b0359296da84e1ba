"""`endcall.testing.pgcluster`: a real PostgreSQL server process, stopped and started for real
(what `bench/report_loss.py --outbox postgres` does to its fleet). Skipped, with the reason,
where PostgreSQL is not installed; failed in CI (`make` installs it)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from endcall.testing.pgcluster import PgCluster, PgUnavailable


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    c = PgCluster()  # a directory of its own under the system's temp dir (the postgres user
    # cannot reach pytest's tmp_path when the tests run as root)
    try:
        c.init()
    except PgUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL unavailable in CI: {e}")
        pytest.skip(f"PostgreSQL unavailable: {e}")
    yield c
    c.remove()


def test_a_dsn_before_the_server_runs_is_refused_then_works(cluster: PgCluster) -> None:
    dsn = cluster.dsn()
    assert not cluster.running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=3)
    cluster.start()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_restart_is_a_new_server_process_on_the_same_port_and_data(cluster: PgCluster) -> None:
    cluster.start()
    dsn = cluster.create_database("bench")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (v int)")
        conn.execute("INSERT INTO t VALUES (7)")
    before = cluster.pid
    held = psycopg.connect(dsn, autocommit=True)
    cluster.restart(down_for=0.5)
    assert cluster.pid is not None and cluster.pid != before
    with pytest.raises(psycopg.OperationalError):  # the old connection was dropped
        held.execute("SELECT 1")
    held.close()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT v FROM t").fetchone() == (7,)


def test_stop_refuses_new_connections_and_remove_deletes_the_cluster(cluster: PgCluster) -> None:
    cluster.start()
    cluster.stop()
    assert not cluster.running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(cluster.dsn(), connect_timeout=3)
    cluster.remove()
    assert not cluster.base.exists()
