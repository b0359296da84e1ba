"""``endcall serve``: run the fallback server on uvicorn (added to the ``endcall`` group)."""

from __future__ import annotations

import logging
from typing import Any

import click

from endcall.server.settings import RateLimit, Settings, parse_origins

__all__ = ["serve"]


def _rate(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return RateLimit.parse(value) or "off"
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def kit_logging(level: str) -> None:
    """Show the kit's own log lines (relay, reconciler, LiveKit webhooks: the ``endcall``
    loggers) on stderr next to uvicorn's, at ``level``; uvicorn configures only its own."""
    kit = logging.getLogger("endcall")
    if any(getattr(h, "_endcall_serve", False) for h in kit.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    handler._endcall_serve = True  # type: ignore[attr-defined]
    kit.addHandler(handler)
    number = logging.getLevelName(level.upper())  # an int for a known level name
    kit.setLevel(number if isinstance(number, int) else logging.INFO)
    kit.propagate = False


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535))
@click.option("--livekit-url", envvar="LIVEKIT_URL", help="LiveKit URL (env LIVEKIT_URL).")
@click.option("--api-key", envvar="LIVEKIT_API_KEY", help="API key (env LIVEKIT_API_KEY).")
@click.option(
    "--api-secret", envvar="LIVEKIT_API_SECRET", help="API secret (env LIVEKIT_API_SECRET)."
)
@click.option(
    "--allowed-origins",
    default=None,
    help="CORS origins, comma separated (env ENDCALL_ALLOWED_ORIGINS).",
)
@click.option(
    "--ack-timeout", type=float, default=None, help="Seconds (env ENDCALL_ACK_TIMEOUT; 3)."
)
@click.option(
    "--escalation",
    type=click.Choice(["delete_room", "none"]),
    default=None,
    help="When the agent does not ack (env ENDCALL_ESCALATION; delete_room).",
)
@click.option(
    "--rate-limit-identity",
    callback=_rate,
    default=None,
    help="N/PERIOD or off (env ENDCALL_RATE_LIMIT_IDENTITY; 10/60).",
)
@click.option(
    "--rate-limit-address",
    callback=_rate,
    default=None,
    help="N/PERIOD or off (env ENDCALL_RATE_LIMIT_ADDRESS; 10/60).",
)
@click.option(
    "--forwarded-allow-ips",
    default=None,
    help="Trust X-Forwarded-For from these proxy IPs (uvicorn's option), for per-address limits.",
)
@click.option(
    "--outbox",
    default=None,
    help="Also deliver leftover reports from this outbox (SQLite path or postgresql:// DSN; "
    "env ENDCALL_OUTBOX; signing secrets from ENDCALL_WEBHOOK_SECRET).",
)
@click.option(
    "--webhook-url",
    default=None,
    help="Where session.missing events go (env ENDCALL_WEBHOOK_URL; the reports' receiver).",
)
@click.option(
    "--reconcile-after",
    type=float,
    default=None,
    help="Seconds after room_finished before a room with no report gets session.missing "
    "(env ENDCALL_RECONCILE_AFTER; 300).",
)
@click.option(
    "--reconcile-sweep",
    type=float,
    default=None,
    help="Seconds between two ListRooms sweeps for rooms gone without a room_finished "
    "webhook (env ENDCALL_RECONCILE_SWEEP; 60).",
)
@click.option(
    "--idle-timeout",
    type=float,
    default=None,
    help="Seconds a client gets to send a request's head (from connecting or from the previous "
    "answer; then the connection is closed) and, apart, its body (then 408) "
    "(env ENDCALL_IDLE_TIMEOUT; 30).",
)
@click.option("--log-level", default="info", show_default=True)
def serve(
    host: str,
    port: int,
    livekit_url: str | None,
    api_key: str | None,
    api_secret: str | None,
    allowed_origins: str | None,
    ack_timeout: float | None,
    escalation: str | None,
    rate_limit_identity: Any,
    rate_limit_address: Any,
    forwarded_allow_ips: str | None,
    outbox: str | None,
    webhook_url: str | None,
    reconcile_after: float | None,
    reconcile_sweep: float | None,
    idle_timeout: float | None,
    log_level: str,
) -> None:
    """Run the fallback end server (POST /v1/end, POST /v1/livekit/webhook, GET /healthz,
    GET /openapi.json)."""
    import uvicorn

    from endcall.server.app import create_app
    from endcall.server.edge import edge_options

    overrides: dict[str, Any] = {
        "livekit_url": livekit_url,
        "api_key": api_key,
        "api_secret": api_secret,
        "ack_timeout": ack_timeout,
        "escalation": escalation,
        "webhook_url": webhook_url,
        "reconcile_after": reconcile_after,
        "reconcile_sweep": reconcile_sweep,
        "idle_timeout": idle_timeout,
    }
    if outbox is not None:
        from endcall.reports.relay import secrets_from_env

        overrides["relay_outbox"] = outbox
        overrides["relay_secrets"] = secrets_from_env()
    if allowed_origins is not None:
        overrides["allowed_origins"] = parse_origins(allowed_origins)
    disabled: dict[str, None] = {}
    for name, value in (
        ("rate_limit_identity", rate_limit_identity),
        ("rate_limit_address", rate_limit_address),
    ):
        if value == "off":
            disabled[name] = None
        elif value is not None:
            overrides[name] = value
    try:
        settings = Settings.from_env(**overrides).with_changes(**disabled)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    kit_logging(log_level)
    app = create_app(settings)
    click.echo(
        f"endcall fallback server on http://{host}:{port} (LiveKit {settings.livekit_url}, "
        f"escalation {settings.escalation}, ack timeout {settings.ack_timeout:g}s)",
        err=True,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        **edge_options(settings.idle_timeout),
    )
