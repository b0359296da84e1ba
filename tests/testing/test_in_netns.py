"""scripts/in-netns: a fresh network namespace per run, deleted on every path."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "in-netns"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ENDCALL_NODE_IP", "ENDCALL_NETNS")}
    env.update(extra)
    return env


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creating namespaces needs root")


def test_runs_the_command_inside_a_namespace_with_two_test_addresses() -> None:
    probe = 'echo "ns=$ENDCALL_NETNS ip=$ENDCALL_NODE_IP"; ip -br addr'
    out = subprocess.run(
        [str(SCRIPT), "sh", "-c", probe], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    first, *links = out.stdout.splitlines()
    ns = first.split()[0].removeprefix("ns=")
    assert first.endswith("ip=10.77.0.1")
    addrs = " ".join(links)
    assert "10.77.0.1/24" in addrs and "10.77.0.2/24" in addrs
    assert any(line.startswith("lo ") and "127.0.0.1" in line for line in links)
    # nothing but lo and the veth pair: no route to the machine's own network
    assert len(links) == 3, links
    assert ns and ns not in _namespaces()


def test_the_exit_code_is_kept_and_the_namespace_deleted() -> None:
    before = _namespaces()
    out = subprocess.run([str(SCRIPT), "sh", "-c", "exit 3"], env=_env(), timeout=60)
    assert out.returncode == 3
    assert _namespaces() <= before


def test_a_terminated_run_deletes_its_namespace_and_what_ran_inside() -> None:
    before = _namespaces()
    proc = subprocess.Popen([str(SCRIPT), "sleep", "300"], env=_env())
    deadline = time.monotonic() + 20
    while not (_namespaces() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _namespaces() - before, "no namespace appeared"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) != 0
    assert _namespaces() <= before


def test_no_nesting_when_a_test_address_is_already_set() -> None:
    out = subprocess.run(
        [str(SCRIPT), "sh", "-c", 'echo "$ENDCALL_NODE_IP ${ENDCALL_NETNS:-none}"'],
        env=_env(ENDCALL_NODE_IP="10.9.9.9"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and out.stdout.strip() == "10.9.9.9 none"


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is missing")
def test_a_clear_error_when_not_root() -> None:
    # a copy nobody can reach: the checkout may sit in a directory only root can enter
    # (a CI clone in `mktemp -d`)
    where = Path(tempfile.mkdtemp(prefix="in-netns-"))
    try:
        where.chmod(0o755)
        script = where / SCRIPT.name
        shutil.copy2(SCRIPT, script)
        script.chmod(0o755)
        out = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(script), "true"],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=where,
        )
    finally:
        shutil.rmtree(where, ignore_errors=True)
    assert out.returncode == 77, out.stderr
    assert "must run as root" in out.stderr


def test_a_command_that_ignores_the_signal_is_killed_and_the_namespace_deleted() -> None:
    before = _namespaces()
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    proc = subprocess.Popen([str(SCRIPT), sys.executable, "-c", stubborn], env=_env())
    deadline = time.monotonic() + 20
    while not (_namespaces() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the command has set its handler
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0
    assert _namespaces() <= before
