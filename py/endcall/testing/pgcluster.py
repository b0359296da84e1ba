"""A throwaway PostgreSQL cluster on this machine, for benchmarks and tests: a real server
process that can be stopped, started and restarted.

:class:`PgCluster` runs Debian's ``initdb``/``pg_ctl`` (``/usr/lib/postgresql/*/bin``, or on
``PATH``) in a directory of its own: the server listens on ``127.0.0.1`` on a free port (and a
unix socket in that directory), with PostgreSQL's own defaults for durability (``fsync`` on).
As root the server runs as the ``postgres`` user (``runuser``), as PostgreSQL requires.

The faults it gives are the real ones: :meth:`PgCluster.stop` ends the server process (every
client connection is dropped, new ones are refused until :meth:`PgCluster.start`), and
:meth:`PgCluster.restart` is a stop, a pause, and a start on the same port and data. A DSN
can be handed out before the server ever ran (``initdb`` only): a database that is late at
start. ``bench/report_loss.py --outbox postgres`` runs its fleet on these.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PgCluster", "PgUnavailable", "pg_binary"]


class PgUnavailable(RuntimeError):
    """No PostgreSQL server can be run here; the message says what is missing."""


def pg_binary(name: str) -> str:
    """The path of PostgreSQL's ``name`` (``initdb``, ``pg_ctl``…): on ``PATH``, else the
    newest ``/usr/lib/postgresql/*/bin``; raises :class:`PgUnavailable` naming the package."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    raise PgUnavailable(
        f"{name} not found: install Debian's postgresql package (apt-get install -y postgresql)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgCluster:
    """One PostgreSQL cluster in ``base`` (a new temporary directory by default; as root, a
    directory the ``postgres`` user can reach).

    ``init()`` creates it (``initdb``), ``start()``/``stop()``/``restart()`` run the server
    process; ``remove()`` stops it at once and deletes the directory. ``dsn(database)`` is
    usable as soon as ``init()`` returned, whether or not the server runs.
    """

    def __init__(
        self, base: Path | None = None, *, port: int = 0, max_connections: int = 200
    ) -> None:
        self.base = base if base is not None else Path(tempfile.mkdtemp(prefix="endcall-pgc-"))
        self.port = port or _free_port()
        self.max_connections = max_connections
        self.data = self.base / "data"
        self.log_path = self.base / "server.log"
        self._prefix: list[str] = []
        self._initialized = False

    # -- addresses ---------------------------------------------------------------------------
    def dsn(self, database: str = "postgres") -> str:
        """The URL of ``database`` (user ``postgres``, trust authentication on loopback)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while the server runs (``postmaster.pid``), else None."""
        try:
            first = (self.data / "postmaster.pid").read_text().splitlines()[0]
            pid = int(first)
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def running(self) -> bool:
        return self.pid is not None

    # -- lifecycle ---------------------------------------------------------------------------
    def _run(self, args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._prefix, *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    def init(self) -> PgCluster:
        """``initdb`` (UTF-8, trust authentication, superuser ``postgres``; its files are not
        fsynced, the server later runs with ``fsync`` on)."""
        try:
            import psycopg  # noqa: F401 - what every user of the cluster talks with
        except ImportError as e:
            raise PgUnavailable("psycopg is not installed (pip install 'psycopg[binary]')") from e
        initdb = pg_binary("initdb")
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            try:
                import pwd

                pw = pwd.getpwnam("postgres")
            except KeyError as e:
                raise PgUnavailable("running as root and there is no 'postgres' user") from e
            if runuser is None:
                raise PgUnavailable("running as root and runuser is missing")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            self._prefix = [runuser, "-u", "postgres", "--"]
            if self._run(["test", "-w", str(self.base)], timeout=30).returncode != 0:
                raise PgUnavailable(
                    f"the postgres user cannot reach {self.base} (a parent directory is not"
                    " searchable by it): put the cluster elsewhere, e.g. under /tmp"
                )
        r = self._run(
            [
                initdb,
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        if r.returncode != 0:
            raise PgUnavailable(f"initdb failed: {r.stderr.strip()[-500:]}")
        self._initialized = True
        return self

    def start(self, timeout: float = 60.0) -> None:
        """Start the server process and wait until it accepts connections."""
        if not self._initialized:
            self.init()
        opts = (
            f"-h 127.0.0.1 -p {self.port} -k {self.base} -c max_connections={self.max_connections}"
        )
        r = self._run(
            [
                pg_binary("pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                opts,
                "-l",
                str(self.log_path),
                "-t",
                str(int(timeout)),
                "-w",
                "start",
            ],
            timeout=timeout + 30,
        )
        if r.returncode != 0:
            raise PgUnavailable(
                f"pg_ctl start failed: {r.stderr.strip()[-300:]}\n{self.log_tail()}"
            )

    def stop(self, mode: str = "fast", timeout: float = 60.0) -> None:
        """Stop the server process (``fast``: clients are disconnected, a clean shutdown;
        ``immediate``: as if the process died). Nothing happens when it is not running."""
        if not self.running():
            return
        pg_ctl = pg_binary("pg_ctl")
        args = [pg_ctl, "-D", str(self.data), "-m", mode, "-t", str(int(timeout)), "-w", "stop"]
        r = self._run(args, timeout=timeout + 30)
        if r.returncode != 0 and self.running():
            raise PgUnavailable(f"pg_ctl stop failed: {r.stderr.strip()[-300:]}")

    def restart(self, down_for: float = 0.0) -> None:
        """Stop the server process, stay down ``down_for`` seconds, start it again on the same
        port and data (what a restart or a failover does to clients)."""
        self.stop()
        if down_for > 0:
            time.sleep(down_for)
        self.start()

    def create_database(self, name: str) -> str:
        """Create ``name`` (the server must run); its DSN."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def remove(self) -> None:
        """Stop the server at once (if it runs) and delete the cluster's directory."""
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"PgCluster(port={self.port}, base={str(self.base)!r})"
