"""The server wing: the fallback server, LiveKit's webhooks, the room ledger and reconcile.

``POST /v1/end`` ends a call through LiveKit's server API: used by the web client when the
agent cannot be reached over RPC or data, and by ``navigator.sendBeacon`` when a tab closes.
``create_app(Settings.from_env())`` gives a Starlette app (mountable in FastAPI/Starlette);
``endcall serve`` runs it on uvicorn. Next to it: ``livekit_webhooks`` → ``ledger`` →
``reconcile`` (every finished room gets its report or ``session.missing``), ``tokens`` (what
the server accepts, and ``mint_end_token``), ``doctor`` (a host's setup checked). It never
imports the agent wing. See docs/architecture.md.

The public names load lazily, so ``endcall.server.tokens`` does not start Starlette.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from endcall.server.app import create_app
    from endcall.server.flow import Answer
    from endcall.server.gateway import LiveKitError, LiveKitUnavailable, NotFound, RoomGateway
    from endcall.server.intake import MAX_BODY_BYTES
    from endcall.server.openapi import openapi_document
    from endcall.server.settings import Escalation, RateLimit, Settings

_EXPORTS = {
    "MAX_BODY_BYTES": "intake",
    "Answer": "flow",
    "Escalation": "settings",
    "LiveKitError": "gateway",
    "LiveKitUnavailable": "gateway",
    "NotFound": "gateway",
    "RateLimit": "settings",
    "RoomGateway": "gateway",
    "Settings": "settings",
    "create_app": "app",
    "openapi_document": "openapi",
}

__all__ = [
    "MAX_BODY_BYTES",
    "Answer",
    "Escalation",
    "LiveKitError",
    "LiveKitUnavailable",
    "NotFound",
    "RateLimit",
    "RoomGateway",
    "Settings",
    "create_app",
    "openapi_document",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'endcall.server' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"endcall.server.{module}"), name)
    globals()[name] = value
    return value
