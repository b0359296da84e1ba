"""The OpenAPI 3.1 description of the fallback server, served at ``/openapi.json``.

The schemas here are what the property tests generate requests from and check answers against,
so they are kept exact: every status the server can answer is listed with its body.
"""

from __future__ import annotations

from typing import Any

from endcall.protocol import MAX_META_BYTES
from endcall.server.intake import MAX_BODY_BYTES, MAX_ROOM_BYTES, MAX_TOKEN_CHARS

__all__ = ["openapi_document"]

_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
_REASON = {"type": "string", "pattern": "^[a-z0-9][a-z0-9.-]{0,63}$"}

END_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["type", "v", "id", "room"],
    "properties": {
        "type": {"const": "end.request"},
        "v": {"const": 1},
        "id": _ID,
        "reason": {
            "type": "string",
            "pattern": "^customer-[a-z0-9.-]{0,54}$",
            "description": "A client may only send reasons starting with customer-.",
        },
        "initiator": {
            "type": "string",
            "minLength": 1,
            "description": "Informational; must equal the token's identity when present.",
        },
        "sent_at": {"type": "integer", "minimum": 0, "maximum": 2**53 - 1},
        "meta": {
            "type": "object",
            "description": f"At most {MAX_META_BYTES} bytes serialized; copied into the report.",
        },
        "room": {"type": "string", "minLength": 1, "maxLength": MAX_ROOM_BYTES // 4},
        "token": {
            "type": "string",
            "maxLength": MAX_TOKEN_CHARS,
            "description": "For sendBeacon, which cannot set headers.",
        },
    },
}

ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["id", "status"],
    "properties": {
        "id": _ID,
        "status": {"enum": ["accepted", "already_ending", "already_ended"]},
        "acked_by": {"enum": ["agent", "server"]},
        "end_id": {"oneOf": [_ID, {"type": "null"}]},
        "reason": _REASON,
        "escalated": {"enum": ["delete_room", "none"]},
    },
}

ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$"},
        "message": {"type": "string", "maxLength": 1024},
        "id": _ID,
    },
}


def _error(description: str, *headers: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if headers:
        response["headers"] = {
            h: {"schema": {"type": "integer" if h == "Retry-After" else "string"}} for h in headers
        }
    return response


def openapi_document(*, server_url: str | None = None) -> dict[str, Any]:
    answer_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Answer"}}}
    body_ref = {"$ref": "#/components/schemas/EndBody"}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "endcall fallback server",
            "version": "1",
            "description": (
                "Ends a LiveKit voice-agent call from the server side when the agent cannot be "
                "reached over RPC or data (and for sendBeacon when a tab closes). See "
                "protocol.md §4, server channel."
            ),
        },
        "paths": {
            "/v1/end": {
                "post": {
                    "operationId": "end",
                    "summary": "End the caller's call",
                    "security": [{"bearer": []}, {}],
                    "requestBody": {
                        "required": True,
                        "description": f"At most {MAX_BODY_BYTES} bytes.",
                        "content": {
                            "application/json": {"schema": body_ref},
                            "text/plain": {"schema": body_ref},
                        },
                    },
                    "responses": {
                        "200": {"description": "The room was already gone.", "content": answer_ref},
                        "202": {
                            "description": "The agent acknowledged, or the server escalated.",
                            "content": answer_ref,
                        },
                        "400": _error("Malformed request (protocol code in `code`)."),
                        "401": _error("Missing, invalid or expired token.", "WWW-Authenticate"),
                        "403": _error(
                            "Token for another room or identity, "
                            "or a reason only the server side may send."
                        ),
                        "413": _error(f"Body over {MAX_BODY_BYTES} bytes."),
                        "415": _error("Content-Type is not application/json or text/plain."),
                        "429": _error("Rate limited (per identity, per address).", "Retry-After"),
                        "502": _error("LiveKit API unreachable.", "Retry-After"),
                    },
                }
            },
            "/v1/livekit/webhook": {
                "post": {
                    "operationId": "livekitWebhook",
                    "summary": "LiveKit's own webhooks into the room ledger",
                    "description": (
                        "Verified with livekit-api's WebhookReceiver (the raw JWT in "
                        "Authorization). See README, 'Every finished room is accounted for'."
                    ),
                    "requestBody": {
                        "required": True,
                        "description": "A LiveKit WebhookEvent, at most 1 MiB.",
                        "content": {"application/webhook+json": {"schema": {"type": "object"}}},
                    },
                    "responses": {
                        "200": {
                            "description": "recorded, duplicate (a retried event) or ignored.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["status"],
                                        "properties": {
                                            "status": {
                                                "enum": ["recorded", "duplicate", "ignored"]
                                            },
                                            "event": {"type": "string"},
                                        },
                                    }
                                }
                            },
                        },
                        "400": _error("Not a LiveKit event about a room (no room sid)."),
                        "401": _error("No token, a forged or expired one, or a replayed one."),
                        "413": _error("Body over 1 MiB."),
                        "415": _error("Content-Type is not application/webhook+json."),
                        "500": _error("The ledger could not be written; LiveKit retries."),
                        "503": _error("No outbox configured (ENDCALL_OUTBOX)."),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "responses": {
                        "200": {
                            "description": "The server is up.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["status"],
                                        "properties": {"status": {"const": "ok"}},
                                    }
                                }
                            },
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "responses": {"200": {"description": "This document."}},
                }
            },
        },
        "components": {
            "schemas": {"EndBody": END_BODY, "Answer": ANSWER, "Error": ERROR},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT (LiveKit access token or endcall end token)",
                }
            },
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
