"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl in a temp dir, 127.0.0.1, free port.

Needs Debian's ``postgresql`` package (initdb/pg_ctl in /usr/lib/postgresql/*/bin) and psycopg.
As root, the server runs as the ``postgres`` user via ``runuser``. One cluster per test run
(module-level singleton), stopped at exit. ``cluster()`` returns a DSN or raises
``PgUnavailable`` with the reason (tests turn that into a visible skip).
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from typing import Any

_state: dict[str, Any] = {}


class PgUnavailable(Exception):
    pass


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if cands:
        return cands[-1]
    raise PgUnavailable(
        f"{name} not found: install Debian's postgresql package (apt-get install -y postgresql)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cluster() -> str:
    """DSN of a running cluster's ``postgres`` database (started on first call)."""
    if "error" in _state:
        raise PgUnavailable(_state["error"])
    if "dsn" in _state:
        return _state["dsn"]
    try:
        _state["dsn"] = _start()
    except PgUnavailable as e:
        _state["error"] = str(e)
        raise
    return _state["dsn"]


def _start() -> str:
    try:
        import psycopg  # noqa: F401
    except ImportError as e:
        raise PgUnavailable("psycopg not installed (pip install 'psycopg[binary]')") from e
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    prefix: list[str] = []
    base = tempfile.mkdtemp(prefix="endcall-pg-")
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError as e:
            raise PgUnavailable("running as root and no 'postgres' user to run the server") from e
        if runuser is None:
            raise PgUnavailable("running as root and runuser is missing")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        prefix = [runuser, "-u", "postgres", "--"]
    data = os.path.join(base, "data")
    port = _free_port()
    run = subprocess.run
    r = run(
        [*prefix, initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if r.returncode != 0:
        raise PgUnavailable(f"initdb failed: {r.stderr.strip()[-500:]}")
    opts = f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off -c max_connections=50"
    r = run(
        [*prefix, pg_ctl, "-D", data, "-o", opts, "-l", os.path.join(base, "log"), "-w", "start"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    log_file = os.path.join(base, "log")  # the server must not inherit our pipes
    _state["restart"] = [
        *[*prefix, pg_ctl, "-D", data, "-o", opts, "-l", log_file, "-m", "fast", "-w", "restart"]
    ]
    if r.returncode != 0:
        log = ""
        try:
            with open(os.path.join(base, "log")) as f:
                log = f.read()[-500:]
        except OSError:
            pass
        raise PgUnavailable(f"pg_ctl start failed: {r.stderr.strip()[-300:]} {log}")

    def stop() -> None:
        subprocess.run(
            [*prefix, pg_ctl, "-D", data, "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(base, ignore_errors=True)

    atexit.register(stop)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def fresh_database() -> str:
    """A new empty database in the cluster; returns its DSN."""
    import psycopg

    dsn = cluster()
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return dsn.rsplit("/", 1)[0] + "/" + name


def database_or_skip() -> str:
    """A fresh database; without PostgreSQL the test is skipped on a developer's machine but
    fails in CI (`CI` set), where `make` installs PostgreSQL and nothing may be skipped."""
    import os

    import pytest

    try:
        return fresh_database()
    except PgUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL unavailable in CI: {e}")
        pytest.skip(f"PostgreSQL unavailable: {e}")


def restart() -> None:
    """Restart the cluster's server process (what a restart or failover does to clients: every
    connection is dropped; the same port and data come back)."""
    cluster()
    r = subprocess.run(_state["restart"], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise PgUnavailable(f"pg_ctl restart failed: {r.stderr.strip()[-300:]}")
