"""The report-loss benchmark's counts: one row per (scenario, agent), the table, the totals.

`tally` turns what a cell's receiver got into the row printed as JSON (`--json`) or as a line
of `fmt_table`'s table; `totals` sums an agent's rows. The counting rules are in
`bench/report_loss.py`'s docstring.
"""

from __future__ import annotations

import json
from typing import Any

from loss_receiver import Arrival
from loss_runner import Cell
from loss_scenarios import ALL_SCENARIOS, MISSING_PREFIX

#: the webhook-id suffix of a `session.missing` event (`<room_sid>.missing`, protocol.md §7)
MISSING_SUFFIX = ".missing"


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def tally(cell: Cell) -> dict[str, Any]:
    sc = cell.scenario
    rooms = {s.room: s for s in cell.sessions if not s.error}
    received = with_expected = incomplete = dup_same = dup_diff = 0
    superseded = other_jobs = 0
    latencies: list[float] = []
    reasons: dict[str, int] = {}
    if cell.agent == "naive":
        by_room: dict[str, list[Arrival]] = {}
        for a in cell.receiver.naive:
            by_room.setdefault(a.key, []).append(a)
        for room, session in rooms.items():
            got = by_room.get(room, [])
            if not got:
                continue
            received += 1
            first = got[0]
            doc = json.loads(first.body)
            reason = doc.get("ended_reason")
            reasons[str(reason)] = reasons.get(str(reason), 0) + 1
            with_expected += int(sc.expect is not None and reason == sc.expect)
            for again in got[1:]:
                if again.body == first.body:
                    dup_same += 1
                else:
                    dup_diff += 1
            end_at = session.end_at or doc.get("ended_at")
            if end_at:
                latencies.append(first.at - float(end_at))
    else:
        stored = cell.receiver.example.reports()
        for room, session in rooms.items():
            got = [r for r in stored if r.room == room]
            if not got:
                continue
            received += 1
            mine = [r for r in got if not r.webhook_id.endswith(MISSING_SUFFIX)]
            missing = [r for r in got if r.webhook_id.endswith(MISSING_SUFFIX)]
            for r in missing:
                dup_diff += r.body_mismatches
                dup_same += r.duplicates - r.body_mismatches
            if not mine:
                # no report, but `endcall serve` said so: a `session.missing` event
                first = missing[0]
                reason = MISSING_PREFIX + str(first.document.get("cause"))
                reasons[reason] = reasons.get(reason, 0) + 1
                with_expected += int(reason == sc.expect)
                dup_diff += len(missing) - 1
                if session.end_at:
                    latencies.append(first.received_at - session.end_at)
                continue
            # a report and a `session.missing` for one room contradict each other
            dup_diff += len(missing)
            # one report per end_id (protocol.md §6): the final replaces the draft
            by_end: dict[str, list[Any]] = {}
            for r in mine:
                by_end.setdefault(r.webhook_id.removesuffix(".draft"), []).append(r)
            first_end = min(by_end, key=lambda e: min(r.received_at for r in by_end[e]))
            other_jobs += len(by_end) - 1
            group = by_end[first_end]
            finals = [r for r in group if not r.webhook_id.endswith(".draft")]
            drafts = [r for r in group if r.webhook_id.endswith(".draft")]
            kept = finals[0] if finals else drafts[0]
            superseded += int(bool(finals and drafts))
            reason = kept.ended_reason
            reasons[str(reason)] = reasons.get(str(reason), 0) + 1
            with_expected += int(sc.expect is not None and reason == sc.expect)
            incomplete += int(kept.complete is False)
            for r in mine:
                dup_diff += r.body_mismatches
                dup_same += r.duplicates - r.body_mismatches
            end_at = session.end_at or kept.document.get("ended_at")
            if end_at:
                latencies.append(min(r.received_at for r in group) - float(end_at))
    n = len(rooms)
    p50, p99 = pct(latencies, 50), pct(latencies, 99)
    return {
        "scenario": sc.name,
        "agent": cell.agent,
        "sessions": n,
        "received": received,
        "expected_reason": sc.expect,
        "with_expected_reason": with_expected,
        "incomplete": incomplete,
        "dup_same_body": dup_same,
        "dup_diff_body": dup_diff,
        "lost": n - received,
        "p50_ms": None if p50 is None else round(p50 * 1000),
        "p99_ms": None if p99 is None else round(p99 * 1000),
        "reasons": reasons,
        "superseded_drafts": superseded,
        "other_jobs": other_jobs,
        "failed_interviews": sum(1 for s in cell.sessions if s.error),
    }


def fmt_table(rows: list[dict[str, Any]]) -> str:
    header = (
        "#",
        "scenario",
        "agent",
        "sessions",
        "received",
        "expected reason",
        "with it",
        "incomplete",
        "dup same",
        "dup diff",
        "lost",
        "p50 ms",
        "p99 ms",
        "not run",
        "reasons seen",
    )
    numbers = {s.name: s.number for s in ALL_SCENARIOS}

    def cell(v: Any) -> str:
        return "—" if v is None else str(v)

    body = [
        (
            str(numbers[r["scenario"]]),
            r["scenario"],
            r["agent"],
            cell(r["sessions"]),
            cell(r["received"]),
            cell(r["expected_reason"]),
            cell(r["with_expected_reason"]) if r["expected_reason"] else "—",
            cell(r["incomplete"]),
            cell(r["dup_same_body"]),
            cell(r["dup_diff_body"]),
            cell(r["lost"]),
            cell(r["p50_ms"]),
            cell(r["p99_ms"]),
            cell(r["failed_interviews"]),
            ", ".join(f"{k} ×{v}" for k, v in sorted(r["reasons"].items())) or "—",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def totals(rows: list[dict[str, Any]], agent: str) -> str:
    mine = [r for r in rows if r["agent"] == agent]
    n = sum(r["sessions"] for r in mine)
    got = sum(r["received"] for r in mine)
    lost = sum(r["lost"] for r in mine)
    knowable = [r for r in mine if r["expected_reason"]]
    exp_n = sum(r["sessions"] for r in knowable)
    exp = sum(r["with_expected_reason"] for r in knowable)
    diff = sum(r["dup_diff_body"] for r in mine)
    pct_lost = 100 * lost / n if n else 0.0
    return (
        f"TOTAL {agent:5}  sessions {n}  received {got}  lost {lost} ({pct_lost:.0f} %)  "
        f"expected reason {exp}/{exp_n}  incomplete {sum(r['incomplete'] for r in mine)}  "
        f"dup same body {sum(r['dup_same_body'] for r in mine)}  dup diff body {diff}"
    )
