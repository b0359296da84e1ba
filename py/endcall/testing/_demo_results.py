"""What one `endcall demo` scenario measured, and the table the demo prints.

:class:`ScenarioResult` is one row (its ``row()`` is the ``--json`` object);
:func:`format_table` renders the rows for the terminal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ScenarioResult", "format_table"]


@dataclass
class ScenarioResult:
    """One row of the demo's table (every field measured in the run)."""

    scenario: str
    channel: str | None = None
    ack_ms: float | None = None
    ended_reason: str | None = None
    delivered: bool = False
    attempts: int | None = None
    verified: bool | None = None
    end_id: str | None = None
    page: str | None = None
    screenshot: str | None = None
    expected_reason: str | None = None
    #: the channel the agent saw (the report's ``end.channel``)
    report_channel: str | None = None
    #: which LiveKit it ran on: "livekit-server 1.13.5", "external" (LIVEKIT_URL) or "loopback"
    server: str | None = None
    #: the candidate's last answer is in the report's transcript (None: no answer was given)
    last_words: bool | None = None
    seconds: float = 0.0
    error: str | None = None
    transcript: list[str] | None = field(default=None, repr=False)
    #: wall clock (``time.time()``) just before End was clicked, when the agent had the request
    #: (the report's ``end.requested_at``) and when the receiver stored the report (for
    #: ``bench/end_to_report.py``; not in ``row()``)
    clicked_at: float | None = field(default=None, repr=False)
    requested_at: float | None = field(default=None, repr=False)
    report_at: float | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """Delivered, verified (when checked), with the expected reason and the candidate's
        last words, and no error in the run."""
        return (
            self.delivered
            and self.verified is not False
            and self.error is None
            and self.last_words is not False
            and (self.expected_reason is None or self.ended_reason == self.expected_reason)
        )

    def row(self) -> dict[str, Any]:
        """The documented ``--json`` fields first, then details."""
        keys = ("scenario", "channel", "ack_ms", "ended_reason", "delivered", "attempts")
        out = {k: getattr(self, k) for k in keys}
        out["verified"] = self.verified
        out["server"] = self.server
        out.update(
            {
                k: v
                for k, v in asdict(self).items()
                if k not in out
                and v is not None
                and k not in ("seconds", "transcript", "clicked_at", "requested_at", "report_at")
            }
        )
        out["seconds"] = round(self.seconds, 1)
        return out


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)


def format_table(results: list[ScenarioResult]) -> str:
    """The demo's table; its first line names the server the scenarios ran on."""
    header = ("scenario", "channel", "ack ms", "ended_reason", "delivered", "attempts", "verified")
    rows = [
        (
            r.scenario,
            _fmt(r.channel),
            _fmt(r.ack_ms),
            _fmt(r.ended_reason),
            _fmt(r.delivered),
            _fmt(r.attempts),
            _fmt(r.verified),
        )
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    servers = sorted({r.server for r in results if r.server})
    lines = [f"server: {', '.join(servers) or 'unknown'}", ""]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(lines)
