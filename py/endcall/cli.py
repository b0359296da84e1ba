"""The ``endcall`` command line: ``endcall outbox list | show | why | deliver | replay | purge``,
``endcall doctor`` and ``endcall secret new``.

``replay ID`` makes one report pending again, ``replay --dead [--since DATE]`` every dead one.

``main`` is a plain click group; other parts of the kit add their own commands to it. Only
``deliver`` may create an SQLite outbox that does not exist yet (a relay started before the
first agent); every other command refuses a path with no outbox instead of inventing one.
Connection-string passwords never appear in what it prints (`endcall.reports.redact`).
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import random
import re
import secrets
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import click

from endcall.reports.outbox.base import (
    OUTBOX_ENV,
    STATUSES,
    Outbox,
    OutboxRecord,
    default_outbox_path,
)
from endcall.reports.outbox.sql import SqlOutbox
from endcall.reports.redact import redact
from endcall.reports.webhook import SECRET_ENV, parse_secrets, validate_secret

__all__ = ["main"]


class _Commands(click.Group):
    """The CLI's group; `demo` is test tooling (it lives in `endcall.testing`, which loads
    livekit-agents), so it is imported only when it is run or listed."""

    _lazy: ClassVar[dict[str, tuple[str, str]]] = {"demo": ("endcall.testing.demo", "demo_command")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            module, attr = self._lazy[cmd_name]
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands)
@click.version_option(package_name="endcall")
def main() -> None:
    """endcall: end LiveKit voice-agent calls correctly; never lose the session report."""


def _is_url(target: str) -> bool:
    return target.startswith(("postgres://", "postgresql://"))


def _open(ctx: click.Context, *, create: bool = False) -> Outbox:
    """Open the outbox; without `create`, an SQLite path with no file is an error."""
    from endcall.reports.outbox import open_outbox

    target = ctx.obj["outbox"]
    if not create and not _is_url(target) and not Path(target).is_file():
        raise click.ClickException(
            f"no outbox at {target} (nothing was created): pass --outbox PATH or set "
            f"{OUTBOX_ENV} to the outbox your agents write"
        )
    try:
        return open_outbox(target)
    except Exception as e:
        raise click.ClickException(redact(f"cannot open outbox {target}: {e}")) from None


def _open_until_reachable(ctx: click.Context) -> Outbox:
    """`_open`, retried with backoff (1 s doubling to 30 s, ±20 %) while the database is not
    up yet: a sidecar started before its database is ordinary pod ordering. One line on
    stderr when it fails, one when it opens."""
    delay, failed = 1.0, False
    while True:
        try:
            ob = _open(ctx, create=True)
        except click.ClickException as e:
            if not failed:
                one_line = " ".join(e.format_message().split())
                click.echo(f"{one_line}; retrying until it opens", err=True)
            failed = True
        else:
            if failed:
                click.echo("the outbox opens now", err=True)
            return ob
        time.sleep(delay * random.uniform(0.8, 1.2))
        delay = min(delay * 2, 30.0)


def _report_fields(rec: OutboxRecord) -> dict[str, str | None]:
    """Room name, room sid and job id from the report body (None where it has none)."""
    try:
        parsed: Any = json.loads(rec.body)
    except ValueError:
        parsed = None
    doc: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
    room: dict[str, Any] = doc["room"] if isinstance(doc.get("room"), dict) else {}
    values = {"room": room.get("name"), "room_sid": room.get("sid"), "job_id": doc.get("job_id")}
    return {k: v if isinstance(v, str) else None for k, v in values.items()}


def _ts(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _short(text: str | None, n: int = 40) -> str:
    if not text:
        return "-"
    text = text.replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


@main.group()
@click.option(
    "--outbox",
    "target",
    envvar=OUTBOX_ENV,
    default=None,
    help=f"SQLite file or postgresql:// URL (env {OUTBOX_ENV}; default {default_outbox_path()}).",
)
@click.pass_context
def outbox(ctx: click.Context, target: str | None) -> None:
    """Inspect and deliver the durable outbox of session reports.

    Only "deliver" creates an outbox that does not exist yet; the others refuse the path.

    Reports the agent could not deliver within its in-process window wait here until a relay
    (this command's "deliver", the next agent job via endcall.prewarm, or the fallback
    server) delivers them. Each row stores its webhook URL; the signing secret(s) come from
    --secret or ENDCALL_WEBHOOK_SECRET (several, comma or space separated, for rotation).
    """
    ctx.ensure_object(dict)
    ctx.obj["outbox"] = target if target else str(default_outbox_path())


@outbox.command("list")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only this status.")
@click.option("--room", default=None, help="Only reports of this room (name or sid).")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="JSON Lines: one JSON object per report, one per line (no counts).",
)
@click.pass_context
def list_cmd(ctx: click.Context, status: Any, room: str | None, limit: int, as_json: bool) -> None:
    """List reports, newest first, with their room and job and a count per status.

    With --json the output is JSON Lines (https://jsonlines.org): one object per report and
    line, newest first, with the report's summary and its `room`, `room_sid` and `job_id`;
    no report prints nothing. Read it with `jq -c .` or line by line.
    """
    ob = _open(ctx)
    try:
        found: list[tuple[OutboxRecord, dict[str, str | None]]] = []
        offset, page = 0, max(limit, 200) if room else limit
        while len(found) < limit:
            batch = ob.records(status, limit=page, offset=offset)
            for r in batch:
                fields = _report_fields(r)
                if room is None or room in (fields["room"], fields["room_sid"]):
                    found.append((r, fields))
            if len(batch) < page or room is None:
                break
            offset += page
        found = found[:limit]
        counts = ob.counts()
    finally:
        ob.close()
    recs = [r for r, _ in found]
    if as_json:
        for r, fields in found:
            click.echo(json.dumps(r.summary() | fields))
        return
    click.echo("  ".join(f"{k}: {v}" for k, v in counts.items()))
    if not recs:
        click.echo("(no reports)")
        return
    rows = [
        [
            r.end_id,
            r.status + (" (draft)" if r.is_draft and r.status != "draft" else ""),
            _short(fields["room"], 24),
            fields["room_sid"] or "-",
            fields["job_id"] or "-",
            str(r.attempts),
            _ts(r.created_at),
            _ts(r.next_attempt_at) if r.status in ("pending", "delivering") else "-",
            str(r.last_status or "-"),
            _short(r.last_error),
        ]
        for r, fields in found
    ]
    header = [
        "END_ID",
        "STATUS",
        "ROOM",
        "ROOM SID",
        "JOB ID",
        "TRIES",
        "CREATED (UTC)",
        "NEXT TRY",
        "HTTP",
        "LAST ERROR",
    ]
    click.echo(_table(rows, header))


def _get(ctx: click.Context, end_id: str) -> OutboxRecord:
    ob = _open(ctx)
    try:
        rec = ob.get(end_id)
    finally:
        ob.close()
    if rec is None:
        raise click.ClickException(f"no report with end_id {end_id!r}")
    return rec


@outbox.command("show")
@click.argument("end_id")
@click.option("--json", "as_json", is_flag=True, help="JSON with the body as text.")
@click.option("--body", "body_only", is_flag=True, help="Print only the raw body bytes.")
@click.pass_context
def show_cmd(ctx: click.Context, end_id: str, as_json: bool, body_only: bool) -> None:
    """Show one report and its body."""
    rec = _get(ctx, end_id)
    if body_only:
        sys.stdout.buffer.write(rec.body)
        sys.stdout.buffer.flush()
        return
    info = rec.summary() | _report_fields(rec)
    if as_json:
        info["body"] = rec.body.decode("utf-8", errors="replace")
        click.echo(json.dumps(info))
        return
    for k, v in info.items():
        if k.endswith("_at") and isinstance(v, float):
            v = _ts(v) + " UTC"
        click.echo(f"{k:>17}: {v if v is not None else '-'}")
    click.echo("             body:")
    try:
        click.echo(json.dumps(json.loads(rec.body), indent=2, ensure_ascii=False))
    except ValueError:
        click.echo(repr(rec.body))


def _why_story(ob: Outbox, key: str) -> dict[str, Any]:
    """Everything the ledger and the outbox know about one session (room name, room sid, an
    end_id or a row key): the room's events, each report with its attempts, and a verdict."""
    from endcall.protocol import missing_webhook_id
    from endcall.server.ledger import Ledger
    from endcall.server.reconcile import report_of_room

    assert isinstance(ob, SqlOutbox)
    ledger = Ledger(ob)
    rows: list[OutboxRecord] = []
    rec = ob.get(key) or ob.get(key + ".draft")
    room_key = key
    if rec is not None:
        fields = _report_fields(rec)
        room_key = fields["room_sid"] or fields["room"] or key
        if rec.end_id.endswith(".missing"):
            room_key = rec.end_id[: -len(".missing")]
    rooms = ledger.rooms(room_key)
    story: dict[str, Any] = {"query": key, "rooms": [], "reports": []}
    for room in rooms:
        story["rooms"].append(
            room.to_dict() | {"events": [e.to_dict() for e in ledger.events(room.room_sid)]}
        )
        found = report_of_room(ob, room)
        if found is not None:
            rows.append(found)
        missing = ob.get(missing_webhook_id(room.room_sid))
        if missing is not None:
            rows.append(missing)
    if rec is not None:
        rows.append(rec)
    wanted = {room_key, *(r.room_sid for r in rooms), *(r.room_name for r in rooms)}
    offset = 0
    while True:  # every report of the room (final and draft), not only the first found
        batch = ob.records(limit=500, offset=offset)
        for r in batch:
            f = _report_fields(r)
            if f["room_sid"] in wanted or (f["room_sid"] is None and f["room"] in wanted):
                rows.append(r)
        if len(batch) < 500:
            break
        offset += 500
    seen: set[str] = set()
    for r in rows:
        if r.end_id in seen:
            continue
        seen.add(r.end_id)
        try:
            doc: Any = json.loads(r.body)
        except ValueError:
            doc = {}
        entry = r.summary() | _report_fields(r)
        entry["type"] = doc.get("type") if isinstance(doc, dict) else None
        if isinstance(doc, dict):
            end: dict[str, Any] = doc["end"] if isinstance(doc.get("end"), dict) else {}
            entry["ended_reason"] = doc.get("ended_reason")
            entry["channel"] = end.get("channel")
            entry["cause"] = doc.get("cause")
        entry["attempt_log"] = ob.attempts(r.end_id)
        story["reports"].append(entry)
    story["verdict"] = _verdict(story)
    return story


def _verdict(story: dict[str, Any]) -> str:
    reports = story["reports"]
    finals = [r for r in reports if r["type"] == "session.ended" and not r["draft"]]
    drafts = [r for r in reports if r["type"] == "session.ended" and r["draft"]]
    missing = [r for r in reports if r["type"] == "session.missing"]
    for group, what in ((finals, "report"), (drafts, "crash draft"), (missing, "session.missing")):
        if group:
            r = group[0]
            if r["status"] == "delivered":
                return f"{what} {r['end_id']} delivered at {_ts(r['delivered_at'])} UTC"
            if r["status"] == "dead":
                tries = f"{r['attempts']} attempt(s)"
                return f"{what} {r['end_id']} is DEAD after {tries}: {r['last_error']}"
            return f"{what} {r['end_id']} is {r['status']} (attempt {r['attempts']} done)"
    if story["rooms"]:
        if any(r["finished_at"] is None for r in story["rooms"]):
            return "the room has not finished yet; no report stored"
        return (
            "the room finished; no report stored yet (session.missing after the reconcile window)"
        )
    return "neither the ledger nor the outbox knows it"


@outbox.command("why")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="The whole story as one JSON object.")
@click.pass_context
def why_cmd(ctx: click.Context, key: str, as_json: bool) -> None:
    """The story of one session: KEY is a room name, a room sid or an end_id. Who joined and
    left (the room ledger), how it ended, when the report was stored, every delivery attempt,
    and whether it was delivered, is dead, or went missing."""
    ob = _open(ctx)
    try:
        story = _why_story(ob, key)
    finally:
        ob.close()
    if as_json:
        click.echo(json.dumps(story))
        return
    click.echo(f"{key}: {story['verdict']}")
    for room in story["rooms"]:
        click.echo(f"room {room['room_name']} ({room['room_sid']})")
        click.echo(f"  {_ts(room['started_at'])}  room started")
        for e in room["events"]:
            if e["event"] in ("participant_joined", "participant_left"):
                verb = "joined" if e["event"] == "participant_joined" else "left"
                click.echo(f"  {_ts(e['at'])}  {e['identity']} ({e['kind']}) {verb}")
        if room["finished_at"] is not None:
            click.echo(f"  {_ts(room['finished_at'])}  room finished")
        if room["verdict"]:
            click.echo(f"  {_ts(room['verdict_at'])}  reconciled: {room['verdict']}")
    for r in story["reports"]:
        what = r["type"] or "?"
        if r["type"] == "session.ended":
            what += f" ({'draft' if r['draft'] else 'final'}, {r['ended_reason']}"
            what += f" over {r['channel'] or '-'})"
        elif r["type"] == "session.missing":
            what += f" ({r['cause']})"
        click.echo(f"{r['end_id']}: {what}")
        click.echo(f"  {_ts(r['created_at'])}  stored in the outbox")
        for a in r["attempt_log"]:
            detail = f"HTTP {a['status_code']}" if a["status_code"] else "no answer"
            if a["error"]:
                detail += f": {_short(a['error'], 60)}"
            click.echo(f"  {_ts(a['at'])}  attempt {a['attempt']} {a['outcome']} ({detail})")
        click.echo(
            f"  now {r['status']}"
            + (f", next try {_ts(r['next_attempt_at'])}" if r["status"] == "pending" else "")
        )
    if not story["rooms"] and not story["reports"]:
        raise SystemExit(1)


@outbox.command("deliver")
@click.option("--forever", is_flag=True, help="Keep polling (a sidecar); else one pass (cron).")
@click.option(
    "--now",
    "now",
    is_flag=True,
    help="First make pending reports waiting for a later retry due now (their attempt "
    "counts unchanged), e.g. once the receiver is back.",
)
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    help=f"Signing secret whsec_... (repeatable; default env {SECRET_ENV}).",
)
@click.option("--timeout", type=float, default=15.0, show_default=True, help="Per request, s.")
@click.option("--poll", type=float, default=5.0, show_default=True, help="Poll interval, s.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=16, show_default=True)
@click.option(
    "--ask-livekit",
    is_flag=True,
    help="With --forever: ask LiveKit's RoomService (LIVEKIT_URL, LIVEKIT_API_KEY, "
    "LIVEKIT_API_SECRET) whether a silent crash draft's agent left its room, and deliver it "
    "then instead of when its lease runs out (a host without endcall.prewarm, e.g. Node workers).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_context
def deliver_cmd(
    ctx: click.Context,
    forever: bool,
    now: bool,
    secrets: tuple[str, ...],
    timeout: float,
    poll: float,
    concurrency: int,
    ask_livekit: bool,
    as_json: bool,
) -> None:
    """Deliver due reports and abandoned crash drafts (one attempt each per pass).

    Signs with --secret, or $ENDCALL_WEBHOOK_SECRET (comma/space separated for rotation) and
    the secrets named in $ENDCALL_WEBHOOK_SECRETS (id=whsec_…).
    """
    from endcall.reports.relay import Relay, secrets_from_env

    keys: tuple[str, ...] = ()
    for s in secrets:
        keys += parse_secrets(s)
    try:
        keys = keys or secrets_from_env()
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    if not keys:
        raise click.UsageError(f"no signing secret: pass --secret or set {SECRET_ENV}")
    for k in keys:
        try:
            validate_secret(k)
        except ValueError as e:
            raise click.UsageError(str(e)) from e
    from endcall.agent.prewarm import livekit_gone_check
    from endcall.reports.owner_watch import GoneCheck, OwnerWatch

    gone: GoneCheck | None = None
    watch: OwnerWatch | None = None
    if ask_livekit:
        if not forever:
            raise click.UsageError("--ask-livekit needs --forever (one pass has no time to ask)")
        gone = livekit_gone_check()
        if gone is None:
            raise click.UsageError(
                "--ask-livekit needs LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET"
            )
    ob = _open_until_reachable(ctx) if forever else _open(ctx, create=True)
    if gone is not None:
        watch = OwnerWatch(ob, gone)
    hurried = 0
    if now:
        if not isinstance(ob, SqlOutbox):  # pragma: no cover - open_outbox gives SqlOutboxes
            raise click.UsageError("--now needs an SQLite or PostgreSQL outbox")
        hurried = ob.make_due()

    async def run() -> dict[str, int]:
        relay = Relay(ob, keys, timeout=timeout, concurrency=concurrency)
        try:
            stats = await relay.run(forever=forever, poll=poll, watch=watch)
        finally:
            await relay.aclose()
        return vars(stats)

    try:
        stats = asyncio.run(run())
    except KeyboardInterrupt:
        stats = {}
    finally:
        ob.close()
    if now:
        stats = {"made_due": hurried, **stats}
    if as_json:
        click.echo(json.dumps(stats))
    else:
        click.echo("  ".join(f"{k}: {v}" for k, v in stats.items()))


@outbox.command("replay")
@click.argument("end_id", required=False)
@click.option("--dead", is_flag=True, help="Replay every dead report (bulk).")
@click.option(
    "--since",
    help="With --dead: only reports that went dead since DATE (ISO, or an age like 2h, 3d).",
)
@click.option("--json", "as_json", is_flag=True, help="With --dead: print the ids as JSON.")
@click.pass_context
def replay_cmd(
    ctx: click.Context, end_id: str | None, dead: bool, since: str | None, as_json: bool
) -> None:
    """Send a report again: END_ID (dead, delivered or pending), or with --dead every dead
    report (those dead since --since only), becomes pending and due now.

    Its attempt count is reset to 0, so the whole retry schedule applies again (and it goes
    dead only after the schedule's last attempt fails again). The body and its webhook-id are
    unchanged: a receiver that already has it dedupes. Drafts (a live agent still writes them)
    and reports being delivered right now cannot be replayed. The next "deliver" (or any
    relay) sends it.
    """
    if dead == (end_id is not None):
        raise click.UsageError("give either an END_ID or --dead")
    if since is not None and not dead:
        raise click.UsageError("--since only goes with --dead")
    t = None if since is None else _parse_date(since)
    ids: list[str] = []
    was = ""
    attempts = 0
    ob = _open(ctx)
    try:
        if dead:
            ids = ob.replay_dead(t)
        else:
            assert end_id is not None
            rec = ob.get(end_id)
            if rec is None:
                raise click.ClickException(f"no report with end_id {end_id!r}")
            if rec.status in ("draft", "delivering"):
                raise click.ClickException(f"{end_id} is {rec.status}; it cannot be replayed now")
            was, attempts = rec.status, rec.attempts
            ob.replay(end_id)
    finally:
        ob.close()
    if not dead:
        click.echo(f"{end_id}: pending and due now (was {was}); attempts {attempts} -> 0")
    elif as_json:
        click.echo(json.dumps({"replayed": ids}))
    else:
        click.echo(
            f"{len(ids)} dead report(s) pending and due now, attempts reset to 0"
            + "".join(f"\n{i}" for i in ids)
        )


_REL = re.compile(r"^(\d+)([smhdw])$")


def _parse_date(text: str) -> float:
    m = _REL.match(text.strip())
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return (datetime.now(timezone.utc) - timedelta(seconds=int(m.group(1)) * unit)).timestamp()
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise click.BadParameter(
            "expected an ISO date/time (2026-01-31, 2026-01-31T12:00:00Z) or an age like 30d"
        ) from e
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


@outbox.command("purge")
@click.option(
    "--delivered-before",
    "before",
    required=True,
    help="ISO date/time (UTC unless an offset is given) or an age such as 30d, 12h.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def purge_cmd(ctx: click.Context, before: str, as_json: bool) -> None:
    """Delete delivered reports delivered before DATE (pending and dead ones are kept)."""
    t = _parse_date(before)
    ob = _open(ctx)
    try:
        n = ob.purge(t)
    finally:
        ob.close()
    if as_json:
        click.echo(json.dumps({"purged": n, "before": t}))
    else:
        click.echo(f"purged {n} delivered report(s) delivered before {_ts(t)} UTC")


@main.command("doctor")
@click.option("--outbox", "target", default=None, help=f"Outbox (env {OUTBOX_ENV}).")
@click.option("--webhook-url", default=None, help="The receiver (env ENDCALL_WEBHOOK_URL).")
@click.option("--secret", "secrets", multiple=True, help=f"whsec_ secret (env {SECRET_ENV}).")
@click.option("--session-end-timeout", type=float, default=None, help="AgentServer's (300).")
@click.option("--shutdown-process-timeout", type=float, default=None, help="AgentServer's (10).")
@click.option("--in-process-window", type=float, default=None, help="Webhook's (60).")
@click.option("--webhook-timeout", type=float, default=None, help="Webhook's timeout (15).")
@click.option("--ledger-max-age", type=float, default=None, help="Seconds (86400).")
@click.option("--max-pending-age", type=float, default=None, help="Seconds (3600).")
@click.option("--mountinfo", default=None, hidden=True)
@click.option(
    "--server",
    "server_url",
    default=None,
    help="A running endcall serve's base URL: its /readyz too (env ENDCALL_SERVER_URL).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def doctor_cmd(
    target: str | None,
    webhook_url: str | None,
    secrets: tuple[str, ...],
    session_end_timeout: float | None,
    shutdown_process_timeout: float | None,
    in_process_window: float | None,
    webhook_timeout: float | None,
    ledger_max_age: float | None,
    max_pending_age: float | None,
    mountinfo: str | None,
    server_url: str | None,
    as_json: bool,
) -> None:
    """Check everything that would lose reports on this host, one ✓/✗ line each with what to
    do; exit 1 when something fails. Reads LIVEKIT_*, ENDCALL_OUTBOX, ENDCALL_WEBHOOK_URL and
    ENDCALL_WEBHOOK_SECRET; options override them."""
    from endcall.server.doctor import DoctorOptions, run_checks

    keys: tuple[str, ...] = ()
    for s in secrets:
        keys += parse_secrets(s)
    opts = DoctorOptions.from_env(
        outbox=target,
        webhook_url=webhook_url,
        secrets=keys or None,
        session_end_timeout=session_end_timeout,
        shutdown_process_timeout=shutdown_process_timeout,
        in_process_window=in_process_window,
        webhook_timeout=webhook_timeout,
        ledger_max_age=ledger_max_age,
        max_pending_age=max_pending_age,
        mountinfo=mountinfo,
        server_url=server_url,
    )
    checks = run_checks(opts)
    ok = all(c.ok for c in checks)
    if as_json:
        click.echo(json.dumps({"ok": ok, "checks": [c.to_dict() for c in checks]}))
    else:
        for c in checks:
            click.echo(c.line())
        click.echo("all good" if ok else "something would lose reports: see ✗ above")
    if not ok:
        raise SystemExit(1)


@main.group()
def secret() -> None:
    """Webhook signing secrets (Standard Webhooks `whsec_...`)."""


@secret.command("new")
def secret_new() -> None:
    """Print a fresh random secret: `whsec_` + base64 of 32 random bytes.

    Give the same value to the agent (Webhook(secret=...) / ENDCALL_WEBHOOK_SECRET) and to the
    receiver. To rotate, sign with the old and the new one ("old,new") for a while.
    """
    click.echo("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())


from endcall.server.command import serve  # noqa: E402 (the fallback server, issue 6)

main.add_command(serve)


if __name__ == "__main__":  # pragma: no cover
    main()
