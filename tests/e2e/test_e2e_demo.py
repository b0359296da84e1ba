"""`endcall demo`: its command line, its table, and two scenarios on the loopback double.

The scenario run uses the same stack and browser as the demo (``run_demo(loopback=True)``);
every scenario on the real livekit-server is in test_e2e_real.py, the other loopback browser
tests in test_e2e_browser.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from endcall.cli import main
from endcall.testing.browser import browser_unavailable
from endcall.testing.demo import SCENARIOS, ScenarioResult, format_table, run_demo

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "examples" / "web"
_missing = browser_unavailable(WEB) or (
    None if (WEB / "dist" / "index.html").is_file() else "examples/web is not built (npm run build)"
)


def test_webhook_url_needs_a_secret_and_secrets_are_checked() -> None:
    runner = CliRunner()
    no_secret = runner.invoke(main, ["demo", "--webhook-url", "http://127.0.0.1:9/x"])
    bad_secret = runner.invoke(
        main, ["demo", "--webhook-url", "http://127.0.0.1:9/x", "--webhook-secret", "nope!"]
    )
    unknown = runner.invoke(main, ["demo", "--scenario", "no-such-scenario"])
    assert no_secret.exit_code == 2 and "--webhook-secret" in no_secret.output
    assert bad_secret.exit_code == 2 and "whsec_" in bad_secret.output
    assert unknown.exit_code == 2


def test_table_and_json_rows_have_the_documented_fields() -> None:
    ok = ScenarioResult(
        "candidate-ends",
        channel="rpc",
        ack_ms=12.3,
        ended_reason="customer-ended-call",
        delivered=True,
        attempts=1,
        verified=True,
        server="livekit-server 1.13.5",
    )
    failed = ScenarioResult("silence", error="TimeoutError: …", server="livekit-server 1.13.5")
    lines = format_table([ok, failed]).splitlines()
    # the table says which server the scenarios ran on
    assert lines[0] == "server: livekit-server 1.13.5" and lines[1] == ""
    table = lines[2:]
    row = ok.row()
    assert row["server"] == "livekit-server 1.13.5"
    assert table[0].split() == [
        "scenario", "channel", "ack", "ms", "ended_reason", "delivered", "attempts", "verified"
    ]  # fmt: skip
    assert table[2].split() == [
        "candidate-ends",
        "rpc",
        "12",
        "customer-ended-call",
        "yes",
        "1",
        "yes",
    ]
    assert table[3].split()[:2] == ["silence", "—"] and "NO" in table[3]
    assert list(row)[:7] == [
        "scenario", "channel", "ack_ms", "ended_reason", "delivered", "attempts", "verified"
    ]  # fmt: skip
    assert json.loads(json.dumps(row))["ack_ms"] == 12.3
    assert ok.ok and not failed.ok


@pytest.mark.skipif(_missing is not None, reason=f"browser tests need: {_missing}")
@pytest.mark.timeout(240)
async def test_demo_scenarios_deliver_verified_reports(tmp_path: Path) -> None:
    chosen = [s for s in SCENARIOS if s.name in ("candidate-ends", "rpc-disabled")]
    lines: list[str] = []
    results = await run_demo(chosen, output_dir=tmp_path, progress=lines.append, loopback=True)
    shots = {r.scenario: r.screenshot for r in results}
    on_disk = {p.name for p in (tmp_path / "screenshots").iterdir()}
    by_name = {r.scenario: r for r in results}
    assert [r.scenario for r in results] == ["candidate-ends", "rpc-disabled"]
    for r in results:
        assert r.ok, r
        assert r.ended_reason == "customer-ended-call"
        assert r.attempts == 1 and r.verified is True
        assert shots[r.scenario] and Path(shots[r.scenario] or "").name in on_disk
    assert by_name["candidate-ends"].channel == "rpc"
    assert by_name["candidate-ends"].ack_ms is not None
    # RPC is refused (UNSUPPORTED_METHOD): the agent takes the end over the data channel; the
    # page keeps whichever of data / REST acknowledged first
    assert by_name["rpc-disabled"].report_channel == "data"
    assert by_name["rpc-disabled"].channel in ("data", "rest (agent: data)")
    assert lines[0] == "server: loopback"
    assert len(lines) == 5 and lines[2].startswith("[1/2] candidate-ends: ok")
    assert all(r.server == "loopback" for r in results)
