"""protocol.md §6 against the code: every field the agent writes into the report's `end`
object, and every channel, is in the `end` table; the report's top-level fields are in the
report table."""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

from endcall.agent.end_machine import Channel
from endcall.protocol import Initiator, SessionEnded

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "protocol.md").read_text()
#: written into `_end_info` only after the report is built: never in a report
NOT_IN_REPORT = {"delivery_error"}


def _table_after(heading: str) -> dict[str, str]:
    """`field → meaning` rows of the first table after `heading` (names split on commas)."""
    rows: dict[str, str] = {}
    started = False
    for line in DOC[DOC.index(heading) :].splitlines()[1:]:
        if line.startswith("|"):
            started = True
            cells = [c.strip() for c in line.strip("|").split("|")]
            for name in re.findall(r"`([a-z_]+)`", cells[0]):
                rows[name] = " | ".join(cells[1:])
        elif started:
            break
    return rows


def _keys_written() -> set[str]:
    """Keys of the `end` section as the code writes them (EndCall's parts and report.py)."""
    keys: set[str] = set()
    parts = (
        "agent/end_call.py",
        "agent/end_path.py",
        "agent/room_signals.py",
        "agent/job_hooks.py",
        "agent/customer.py",
    )
    source = "\n".join((ROOT / "py" / "endcall" / name).read_text() for name in parts)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == "_end_section":
            for d in ast.walk(node):
                if isinstance(d, ast.Dict):
                    keys |= {k.value for k in d.keys if isinstance(k, ast.Constant)}
        if isinstance(node, ast.Subscript) and "end_info" in ast.unparse(node.value):
            if isinstance(node.slice, ast.Constant):
                keys.add(node.slice.value)
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("end_info.setdefault"):
            first = node.args[0]
            if isinstance(first, ast.Constant):
                keys.add(first.value)
        if isinstance(node, ast.Dict):
            ks = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            if "report_error" in ks:
                keys.add("report_error")
    report = (ROOT / "py" / "endcall" / "agent" / "report.py").read_text()
    keys |= set(re.findall(r'end=\{"channel": None, "(\w+)"', report))
    return keys - NOT_IN_REPORT


def test_every_end_field_the_agent_writes_is_documented() -> None:
    documented = _table_after("The `end` object")
    written = _keys_written()
    assert {"channel", "drain_ms", "close_reason", "report_error", "checkpoint_at"} <= written
    assert written - documented.keys() == set(), "undocumented end fields"
    assert documented.keys() - written == set(), "documented end fields nobody writes"


def test_every_channel_is_documented() -> None:
    row = _table_after("The `end` object")["channel"]
    assert set(typing.get_args(Channel)) <= set(re.findall(r"`([a-z_]+)`", row))


def test_every_report_field_is_in_the_report_table() -> None:
    table = _table_after("The body is serialized once")
    doc = SessionEnded(
        end_id="e",
        ended_reason="agent-error",
        initiator=Initiator("system"),
        room_name="r",
        started_at=0.0,
        ended_at=1.0,
    ).to_dict()
    assert set(doc) - table.keys() == set()
