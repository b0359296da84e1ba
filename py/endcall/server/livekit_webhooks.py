"""``POST /v1/livekit/webhook``: LiveKit's own webhooks into the room ledger.

LiveKit (Cloud project settings, or the server's ``webhook.urls``) posts every room event with
``Content-Type: application/webhook+json`` and a JWT in ``Authorization`` signed with an API key
of the project; it is checked as livekit-api's ``WebhookReceiver`` does (signature, issuer,
expiry, and the body's SHA-256 in the token), but in steps: the token is checked before a byte
of the body is read, then the body (at most 1 MiB of it) against the token's hash, and only then
is it parsed. Answers, each with a JSON body:

- 200 ``{"status": "recorded" | "duplicate" | "ignored"}`` — stored; a retried event (same id);
  an event the ledger does not keep (tracks, egress…);
- 401 ``unauthorized`` — no token, a forged or expired one, a body that does not match it, or a
  token already used (a replayed request); nothing is recorded;
- 400 ``bad_request`` — a signed body that is not a LiveKit event (not JSON, nested deeper
  than 64 levels, no room sid); 413 (over 1 MiB: never more is read), 408 (the body took longer
  than ``ENDCALL_IDLE_TIMEOUT``), 415 (another content type);
- 503 ``not_configured`` — the server has no outbox (``ENDCALL_OUTBOX``) to keep the ledger in;
- 500 ``internal`` — the database failed; LiveKit retries.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from google.protobuf.json_format import Parse
from livekit import api
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from endcall.protocol.validation import nests_deeper_than
from endcall.reports.outbox.sql import SqlOutbox
from endcall.reports.redact import redact
from endcall.server.errors import HttpError
from endcall.server.intake import read_limited
from endcall.server.ledger import EVENTS, Ledger, LedgerEvent
from endcall.server.settings import Settings

__all__ = ["MAX_WEBHOOK_BYTES", "LiveKitWebhooks", "ledger_event"]

MAX_WEBHOOK_BYTES = 1024 * 1024
MAX_WEBHOOK_DEPTH = 64
_TYPES = ("application/webhook+json", "application/json")

logger = logging.getLogger("endcall.server")


def _kind(value: int) -> str:
    try:
        return str(api.ParticipantInfo.Kind.Name(value)).lower()
    except ValueError:
        return f"kind_{value}"


def agent_gone(entry: LedgerEvent) -> bool:
    """LiveKit's word that a room's agent is gone: it left, or the room finished."""
    return entry.event == "room_finished" or (
        entry.event == "participant_left" and entry.kind == "agent"
    )


def ledger_event(event: Any, received_at: float) -> LedgerEvent | None:
    """The ledger's view of a verified LiveKit ``WebhookEvent`` (None: not kept)."""
    if event.event not in EVENTS:
        return None
    room = event.room
    if not room.sid:
        raise HttpError(400, f"the {event.event} event names no room sid")
    at = float(event.created_at) if event.created_at else received_at
    p = event.participant if event.HasField("participant") else None
    if event.event == "participant_joined" and p is not None and p.joined_at_ms:
        at = p.joined_at_ms / 1000.0
    return LedgerEvent(
        event_id=event.id or f"{event.event}:{room.sid}:{p.sid if p else ''}:{at}",
        event=event.event,
        room_sid=room.sid,
        room_name=room.name or room.sid,
        at=at,
        identity=(p.identity or None) if p is not None else None,
        participant_sid=(p.sid or None) if p is not None else None,
        kind=_kind(p.kind) if p is not None else None,
        received_at=received_at,
    )


class LiveKitWebhooks:
    """The endpoint; the outbox and its ledger are opened on first use."""

    def __init__(
        self, settings: Settings, on_release: Callable[[float], None] | None = None
    ) -> None:
        self.settings = settings
        self.on_release = on_release
        self.verifier = api.TokenVerifier(settings.api_key, settings.api_secret)
        self._ledger: Ledger | None = None
        self._lock = threading.Lock()

    def ledger(self) -> Ledger:
        with self._lock:
            if self._ledger is None:
                from endcall.reports.outbox import open_outbox

                target = self.settings.relay_outbox
                assert target is not None
                outbox = open_outbox(target)
                if not isinstance(outbox, SqlOutbox):  # pragma: no cover - always SQL
                    raise RuntimeError("the room ledger needs an SQLite or PostgreSQL outbox")
                self._ledger = Ledger(outbox)
            return self._ledger

    def close(self) -> None:
        with self._lock:
            if self._ledger is not None:
                self._ledger.outbox.close()
                self._ledger = None

    def release(self, ledger: Ledger, entry: LedgerEvent) -> None:
        """The agent left the room (or the room is gone): the crash drafts of that room may be
        taken over once their owner has been silent for ``settings.takeover_quiet`` seconds,
        instead of when their lease runs out; the relay is woken for that moment."""
        # an agent's drafts are scoped "<room sid>/<identity>": the one that left, or the room
        scope = entry.room_sid
        if entry.event == "participant_left" and entry.identity:
            scope = f"{entry.room_sid}/{entry.identity}"
        when = ledger.outbox.release_scope(scope, self.settings.takeover_quiet)
        if when is None:
            return
        logger.info(
            "endcall: the agent left room %s (%s): its crash draft may be taken over in %.1f s",
            entry.room_name,
            entry.event,
            max(0.0, when - time.time()),
        )
        if self.on_release is not None:
            self.on_release(when)

    def claims(self, auth: str) -> Any:
        """The token's claims (signature, issuer, expiry), before any byte of the body is
        read; 401 otherwise."""
        try:
            claims = self.verifier.verify(auth)
        except Exception as e:
            raise HttpError(401, f"not a valid LiveKit webhook: {e}") from None
        if not claims.sha256:
            raise HttpError(401, "not a valid LiveKit webhook: no sha256 in the token")
        return claims

    def event(self, body: bytes, claims: Any) -> Any:
        """The body the token vouches for (its SHA-256 in the claims, else 401) as a LiveKit
        ``WebhookEvent`` (else 400): what livekit-api's ``WebhookReceiver.receive`` does, with
        an answer for each step."""
        try:
            expected = base64.b64decode(claims.sha256)
        except ValueError:
            expected = b""
        if hashlib.sha256(body).digest() != expected:
            raise HttpError(401, "not a valid LiveKit webhook: the body does not match its token")
        try:
            text = body.decode("utf-8")
            if nests_deeper_than(text, MAX_WEBHOOK_DEPTH):
                raise ValueError(f"nested deeper than {MAX_WEBHOOK_DEPTH} levels")
            return Parse(text, api.WebhookEvent(), ignore_unknown_fields=True)
        except Exception as e:
            raise HttpError(400, f"a signed body that is not a LiveKit event: {e}") from None

    async def handle(self, request: Request) -> Response:
        if not self.settings.relay_outbox:
            raise HttpError(
                503,
                "this server keeps no room ledger: set ENDCALL_OUTBOX (the agents' outbox)",
                code="not_configured",
            )
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in _TYPES:
            raise HttpError(415, "LiveKit webhooks are application/webhook+json")
        auth = request.headers.get("authorization", "").strip()
        if auth.lower().startswith("bearer "):
            auth = auth[7:].strip()
        if not auth:
            raise HttpError(401, "no LiveKit webhook token in Authorization")
        claims = self.claims(auth)
        body = await read_limited(request, MAX_WEBHOOK_BYTES, time_limit=self.settings.idle_timeout)
        event = self.event(body, claims)
        token_hash = hashlib.sha256(auth.encode()).hexdigest()
        received = time.time()
        entry = ledger_event(event, received)
        if entry is None:
            return JSONResponse({"status": "ignored", "event": event.event})
        try:
            ledger = await asyncio.to_thread(self.ledger)
            # A token seen before signs the same body (its SHA-256 is in the token): the same
            # event, already recorded — LiveKit sends each webhook to every URL of its list, so
            # every replica of a fleet gets the same token. A duplicate, never charged.
            fresh = await asyncio.to_thread(ledger.record, entry, token_hash)
        except HttpError:
            raise
        except Exception as e:
            logger.error("endcall: cannot record a LiveKit webhook: %s", redact(str(e)))
            raise HttpError(500, "the room ledger could not be written; retry") from None
        if fresh and agent_gone(entry):
            try:
                await asyncio.to_thread(self.release, ledger, entry)
            except Exception as e:  # the lease still runs out: later, not lost
                logger.warning("endcall: could not release the drafts of %s: %s", entry.room_sid, e)
        return JSONResponse({"status": "recorded" if fresh else "duplicate", "event": entry.event})
