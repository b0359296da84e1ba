"""The fallback server: ``POST /v1/end`` ends a call through LiveKit's server API.

Used by the web client when the agent cannot be reached over RPC or data, and by
``navigator.sendBeacon`` when a tab closes. ``create_app(Settings.from_env())`` gives a Starlette
app (mountable in FastAPI/Starlette); ``endcall serve`` runs it on uvicorn.
"""

from __future__ import annotations

from .app import create_app
from .flow import Answer
from .gateway import LiveKitError, LiveKitUnavailable, NotFound, RoomGateway
from .intake import MAX_BODY_BYTES
from .openapi import openapi_document
from .settings import Escalation, RateLimit, Settings

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
