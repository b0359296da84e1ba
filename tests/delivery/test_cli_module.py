"""`python -m endcall …` is the `endcall` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PY = Path(__file__).resolve().parents[2] / "py"


def test_python_m_endcall_runs_the_cli() -> None:
    env = {**os.environ, "PYTHONPATH": f"{PY}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(
        [sys.executable, "-m", "endcall", "outbox", "list", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert out.stdout.startswith("Usage: endcall outbox list")
    assert "JSON Lines" in out.stdout
