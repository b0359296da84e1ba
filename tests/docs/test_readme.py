"""README.md against the code: the retry schedule, `end.end(...)`'s signature, the option
table's new options, `make install`, the CLI commands it names."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from click.testing import CliRunner

from endcall import EndCall
from endcall.cli import main
from endcall.reports.webhook import DEFAULT_SCHEDULE

ROOT = Path(__file__).resolve().parents[2]
README = " ".join((ROOT / "README.md").read_text().split())  # one line: wrapping is free


def _seconds(text: str) -> float:
    value, unit = text.split()
    return float(value) * {"s": 1, "min": 60, "h": 3600}[unit]


def test_the_default_retry_schedule_is_the_one_in_the_readme() -> None:
    m = re.search(r"the next ones wait ((?:\d+ (?:s|min|h), )+\d+ (?:s|min|h)) after", README)
    assert m is not None
    delays = [_seconds(t) for t in m.group(1).split(", ")]
    assert DEFAULT_SCHEDULE[0] == 0 and tuple(delays) == DEFAULT_SCHEDULE[1:]
    assert (
        f"{len(DEFAULT_SCHEDULE)} attempts over about {round(sum(DEFAULT_SCHEDULE) / 3600)} h"
        in (README)
    )
    assert "goes `dead` when the last attempt of the schedule fails" in README


def test_end_end_is_documented_with_its_real_signature() -> None:
    params = inspect.signature(EndCall.end).parameters
    m = re.search(r"`end\.end\(reason, \*, ([^`]*)\)`", README)
    assert m is not None
    documented = [p.split("=")[0] for p in m.group(1).split(", ")]
    assert sorted(documented) == sorted(n for n in params if n not in ("self", "reason"))


def test_every_option_is_in_the_option_table() -> None:
    raw = (ROOT / "README.md").read_text()
    table = raw.split("| option | default | meaning |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| `")]
    documented = {name.strip("` ") for row in rows for name in row.strip("| ").split(", ")}
    params = inspect.signature(EndCall.__init__).parameters
    options = {n for n in params if n not in ("self", "ctx", "session")}
    assert options - documented == set(), "EndCall options missing from the README's table"
    assert documented - options == set(), "README's option table names options EndCall lacks"


def test_make_install_is_named_and_exists() -> None:
    assert "`make install`" in README
    assert re.search(r"^install:", (ROOT / "Makefile").read_text(), re.M)


def test_the_cli_commands_it_names_exist() -> None:
    for args in (["secret", "new", "--help"], ["outbox", "deliver", "--help"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    assert "--now" in CliRunner().invoke(main, ["outbox", "deliver", "--help"]).output
    assert "--room" in CliRunner().invoke(main, ["outbox", "list", "--help"]).output


def test_demo_md_agrees_with_disconnect_grace() -> None:
    demo = " ".join((ROOT / "docs" / "demo.md").read_text().split())
    grace = inspect.signature(EndCall.__init__).parameters["disconnect_grace"].default
    assert "Known issue" not in demo and "strict xfail" not in demo
    assert f"`disconnect_grace` seconds (default {grace:g})" in demo


def test_the_in_process_window_and_on_session_end_bounds_agree() -> None:
    from endcall.reports.webhook import Webhook

    window = inspect.signature(Webhook).parameters["in_process_window"].default
    assert f"`in_process_window` ({window:g} s by default)" in README
    assert "`session_end_timeout` (300 s by default)" in README
    example = " ".join((ROOT / "examples" / "interview_agent.py").read_text().split())
    assert f"`in_process_window`, {window:g} s by default" in example
    assert "up to 60 s in process" not in README
