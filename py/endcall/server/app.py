"""``create_app(settings)``: the fallback server as a Starlette app.

Routes: ``POST /v1/end``, ``POST /v1/livekit/webhook`` (LiveKit's own webhooks into the room
ledger, :mod:`endcall.server.livekit_webhooks`), ``GET /healthz``, ``GET /openapi.json``.
Every error is JSON ``{"code", "message"}`` (404 and 405 included). CORS for
``settings.allowed_origins``.

Order of checks on ``POST /v1/end`` (nothing touches LiveKit before the last step):
Content-Type (415) → size (413) → body (400) → token (401/403) → idempotency (the same request
id is answered from the cache, before any limit) → per-identity rate limit (429, charged once
per request id: a retry after a 502 pays nothing) → the end flow (:mod:`endcall.server.flow`;
502 with Retry-After when LiveKit cannot be reached). The per-address limit is charged only by
requests that fail before authenticating (and by LiveKit webhooks that fail verification):
junk from one address behind a proxy never uses up a candidate's budget. Behind a proxy, run
``endcall serve --forwarded-allow-ips <proxy>`` so the address is the client's.

With ``ENDCALL_OUTBOX`` (and ``ENDCALL_WEBHOOK_SECRET``) the app also runs a relay for the
agents' outbox while it is up, so reports a killed job left behind are still delivered; with
``ENDCALL_WEBHOOK_URL`` too it reconciles the room ledger with the outbox
(:mod:`endcall.server.reconcile`): a finished room without a report gets a ``session.missing``
event, and a room LiveKit no longer lists (ListRooms, every ``ENDCALL_RECONCILE_SWEEP`` seconds)
counts as finished even when its ``room_finished`` webhook never came.

The app can be mounted in another Starlette/FastAPI app (``Mount("/endcall", app)``); the
LiveKit client is created on first use, and closed by this app's lifespan when it runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Literal

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from endcall.reports.loop_health import LoopHealth
from endcall.reports.metrics import OutboxCollector
from endcall.reports.outbox.base import Backlog
from endcall.reports.redact import redact
from endcall.reports.relay import BackgroundRelay
from endcall.reports.webhook import Webhook
from endcall.server.auth import authenticate
from endcall.server.errors import HTTP_CODES, HttpError, error_response
from endcall.server.flow import Answer, EndFlow
from endcall.server.gateway import LiveKitError, LiveKitUnavailable, RoomGateway
from endcall.server.idempotency import IdempotencyCache, IdempotencyConflict
from endcall.server.intake import read_end_body
from endcall.server.ledger import Room
from endcall.server.livekit_webhooks import LiveKitWebhooks
from endcall.server.metrics import END_ANSWERS, LIVEKIT_WEBHOOKS, exposition, webhook_result
from endcall.server.openapi import openapi_document
from endcall.server.ratelimit import ChargedOnce, RateLimiter
from endcall.server.readiness import PROBE_ROOM, Readiness
from endcall.server.reconcile import BackgroundReconciler
from endcall.server.settings import Settings

__all__ = ["create_app"]

logger = logging.getLogger("endcall.server")

#: a relay woken for a draft that becomes claimable wakes this much later (clock skew between
#: this host and the database's)
WAKE_MARGIN = 0.25


def _address(request: Request) -> str:
    """The client's address (the proxy's, unless uvicorn trusts its X-Forwarded-For)."""
    return request.client.host if request.client else "unknown"


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def _start_relay(settings: Settings) -> BackgroundRelay | None:
    """With ``settings.relay_outbox``, deliver the reports agents left in that outbox (a killed
    job, a receiver that was down) from a background thread for as long as the app runs."""
    if not settings.relay_outbox:
        return None
    relay = BackgroundRelay(settings.relay_outbox, settings.relay_secrets, poll=settings.relay_poll)
    logger.info("endcall: relaying leftover reports from %s", redact(settings.relay_outbox))
    return relay.start()


def reconciling(settings: Settings) -> bool:
    """Whether the app reconciles finished rooms: it has an outbox, a webhook URL and secrets."""
    return bool(settings.relay_outbox and settings.webhook_url and settings.relay_secrets)


def _start_reconciler(settings: Settings) -> BackgroundReconciler | None:
    """With an outbox, a webhook URL and secrets: reconcile finished rooms in the background."""
    target, url = settings.relay_outbox, settings.webhook_url
    if not (reconciling(settings) and target and url):
        if target:
            logger.warning(
                "endcall: ENDCALL_WEBHOOK_URL is not set: the room ledger is kept, but rooms"
                " without a report get no session.missing event"
            )
        return None
    webhook = Webhook(url=url, secret=settings.relay_secrets)
    logger.info(
        "endcall: reconciling finished rooms with %s after %gs",
        redact(target),
        settings.reconcile_after,
    )
    return BackgroundReconciler(
        target,
        webhook,
        after=settings.reconcile_after,
        live_rooms=_live_rooms(settings),
        sweep=settings.reconcile_sweep,
    ).start()


def _live_rooms(settings: Settings) -> Callable[[Sequence[Room]], set[str]]:
    """ListRooms for the reconciler's sweep, from its thread (a client per call: the
    app's own is bound to the app's event loop)."""

    def live(rooms: Sequence[Room]) -> set[str]:
        async def ask() -> set[str]:
            gateway = RoomGateway(
                settings.livekit_url,
                settings.api_key,
                settings.api_secret,
                timeout=max(settings.livekit_timeout, 10.0),
            )
            try:
                return await gateway.live_rooms(sorted({r.room_name for r in rooms}))
            finally:
                await gateway.aclose()

        return asyncio.run(ask())

    return live


def create_app(
    settings: Settings | None = None, *, gateway: RoomGateway | None = None
) -> Starlette:
    """The fallback server. Without ``settings`` they are read from the environment
    (:meth:`Settings.from_env`), so ``uvicorn --factory endcall.server:create_app`` works.
    ``gateway`` replaces the LiveKit client (for tests of the flow)."""
    if settings is None:
        settings = Settings.from_env()
    lk = gateway or RoomGateway(
        settings.livekit_url,
        settings.api_key,
        settings.api_secret,
        timeout=settings.livekit_timeout,
    )
    flow = EndFlow(lk, settings)
    answers: IdempotencyCache[Answer] = IdempotencyCache(
        ttl=settings.idempotency_ttl, max_entries=settings.idempotency_max_entries
    )
    by_address = RateLimiter(settings.rate_limit_address) if settings.rate_limit_address else None
    by_identity = (
        RateLimiter(settings.rate_limit_identity) if settings.rate_limit_identity else None
    )
    charged = ChargedOnce(settings.idempotency_ttl)
    document = openapi_document()

    def wake_relay(when: float) -> None:
        """A crash draft becomes claimable at ``when`` (LiveKit said its agent left)."""
        relay: BackgroundRelay | None = getattr(app.state, "relay", None)
        if relay is not None:
            relay.wake(max(0.0, when - time.time()) + WAKE_MARGIN)

    livekit_hooks = LiveKitWebhooks(settings, on_release=wake_relay)
    background: dict[str, BackgroundReconciler | None] = {}

    def ensure_reconciler() -> None:
        """Started by the lifespan, or by the first LiveKit webhook when the app is mounted
        in another app (whose lifespan does not run this one's)."""
        if "reconciler" not in background:
            background["reconciler"] = _start_reconciler(settings)

    def limit(limiter: RateLimiter | None, key: str, what: str) -> None:
        if limiter is None:
            return
        wait = limiter.hit(key)
        if wait is not None:
            raise HttpError(
                429,
                f"too many end requests for this {what}; retry later",
                headers=_retry_after(wait),
            )

    async def end(request: Request) -> Response:
        try:
            body = await read_end_body(request, time_limit=settings.idle_timeout)
            principal = authenticate(request, settings, body.room, body.request, body.token)
        except HttpError as exc:
            if exc.status < 500:  # only what never authenticated pays the address's bucket
                limit(by_address, _address(request), "address")
            raise
        paid = (body.room, body.request.id, principal.identity)
        if not answers.known(paid[:2]) and not charged.paid(paid):
            limit(by_identity, f"{body.room}\x00{principal.identity}", "identity")
            charged.add(paid)

        async def compute() -> Answer:
            return await flow.run(body.room, body.request, principal.identity)

        try:
            answer, replayed = await answers.run(
                (body.room, body.request.id), principal.identity, compute
            )
        except IdempotencyConflict as exc:
            raise HttpError(403, str(exc), request_id=body.request.id) from None
        except LiveKitUnavailable as exc:
            logger.warning("LiveKit unreachable while ending %s: %s", body.room, exc)
            raise HttpError(
                502,
                "the LiveKit API could not be reached; retry later",
                headers=_retry_after(settings.retry_after),
                request_id=body.request.id,
            ) from None
        except LiveKitError as exc:
            logger.error("LiveKit refused a call while ending %s: %s", body.room, exc)
            raise HttpError(
                502,
                "the LiveKit API refused the call",
                code="livekit_error",
                headers=_retry_after(settings.retry_after),
                request_id=body.request.id,
            ) from None
        if not replayed:
            logger.info(
                "end %s room=%s identity=%s -> %s",
                body.request.id,
                body.room,
                principal.identity,
                answer.body,
            )
        return JSONResponse(answer.body, status_code=answer.status_code)

    async def counted_end(request: Request) -> Response:
        try:
            response = await end(request)
        except HttpError as exc:
            END_ANSWERS.labels(str(exc.status)).inc()
            raise
        except Exception:
            END_ANSWERS.labels("500").inc()
            raise
        END_ANSWERS.labels(str(response.status_code)).inc()
        return response

    async def livekit_webhook(request: Request) -> Response:
        ensure_reconciler()
        try:
            response, result = await livekit_hooks.handle(request), None
        except HttpError as exc:
            LIVEKIT_WEBHOOKS.labels(webhook_result(exc.status, None)).inc()
            if exc.status == 401:  # a failed verification pays the address's bucket
                limit(by_address, _address(request), "address")
            raise
        if isinstance(response, JSONResponse):
            result = json.loads(bytes(response.body)).get("status")
        LIVEKIT_WEBHOOKS.labels(webhook_result(response.status_code, result)).inc()
        return response

    def loops() -> dict[str, LoopHealth | Literal["disabled"] | None]:
        relay: BackgroundRelay | None = getattr(app.state, "relay", None)
        reconciler = background.get("reconciler")
        return {
            "relay": "disabled"
            if not settings.relay_outbox
            else (relay.health if relay is not None else None),
            "reconcile": "disabled"
            if not reconciling(settings)
            else (reconciler.health if reconciler is not None else None),
        }

    def backlog() -> Backlog:
        return livekit_hooks.ledger().outbox.backlog()

    readiness = Readiness(
        backlog=backlog if settings.relay_outbox else None,
        livekit=lambda: lk.room_exists(PROBE_ROOM),
        loops=loops,
    )
    outbox_gauges = OutboxCollector(readiness.backlog) if settings.relay_outbox else None

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        ok, doc = await readiness.check()
        return JSONResponse(doc, status_code=200 if ok else 503)

    async def metrics_page(request: Request) -> Response:
        text = await asyncio.to_thread(exposition, outbox_gauges)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HttpError)
        return exc.response()

    async def on_starlette_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        return error_response(exc.status_code, code, message, headers=exc.headers)

    async def on_crash(request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error", exc_info=exc)
        return error_response(500, "internal", "internal error")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        relay = _start_relay(settings)
        app.state.relay = relay
        ensure_reconciler()
        try:
            yield
        finally:
            if relay is not None:
                await asyncio.to_thread(relay.stop)
            reconciler = background.pop("reconciler", None)
            if reconciler is not None:
                await asyncio.to_thread(reconciler.stop)
            await asyncio.to_thread(livekit_hooks.close)
            await lk.aclose()

    middleware = []
    if settings.allowed_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.allowed_origins),
                allow_methods=["POST", "GET", "OPTIONS"],
                allow_headers=["authorization", "content-type"],
                max_age=600,
            )
        )
    app = Starlette(
        routes=[
            Route("/v1/end", counted_end, methods=["POST"]),
            Route("/v1/livekit/webhook", livekit_webhook, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
            Route("/readyz", ready, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        middleware=middleware,
        exception_handlers={
            HttpError: on_http_error,
            HTTPException: on_starlette_error,
            Exception: on_crash,
        },
        lifespan=lifespan,
    )
    return app
