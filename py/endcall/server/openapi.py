"""The OpenAPI 3.1 description of the fallback server, served at ``/openapi.json``.

The schemas here are what the property tests (and schemathesis, with all its checks) generate
requests from and check answers against, so they are kept exact: what they accept the server
accepts, what they refuse it refuses, and every status the server can answer is listed with its
body. Two rules JSON Schema cannot say are in the descriptions: sizes in UTF-8 bytes (a whole
body, an IDENTITY, ``meta``) and nesting depth.
"""

from __future__ import annotations

from typing import Any

from endcall.protocol import MAX_DEPTH, MAX_IDENTITY_BYTES, MAX_META_BYTES
from endcall.server.intake import MAX_BODY_BYTES, MAX_TOKEN_CHARS
from endcall.server.livekit_webhooks import MAX_WEBHOOK_BYTES, MAX_WEBHOOK_DEPTH

__all__ = ["openapi_document"]

_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
_REASON = {"type": "string", "pattern": "^[a-z0-9][a-z0-9.-]{0,63}$"}
_NULL = {"type": "null"}
IDENTITY: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_IDENTITY_BYTES,
    "pattern": r"^[^\u0000-\u001f\u007f]*$",
    "description": (
        f"protocol.md IDENTITY: at most {MAX_IDENTITY_BYTES} bytes as UTF-8 (so at most "
        f"{MAX_IDENTITY_BYTES} characters), no control character (U+0000-U+001F, U+007F)."
    ),
}


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field: ``null`` means the same as leaving it out (protocol.md §1)."""
    return {"oneOf": [schema, _NULL]}


END_BODY: dict[str, Any] = {
    "type": "object",
    "description": (
        f"An end.request (protocol.md §2.1) plus room and token: at most {MAX_BODY_BYTES} bytes,"
        f" at most {MAX_DEPTH} levels of arrays/objects, finite numbers, well-formed Unicode;"
        " other fields are ignored (but count in the sizes)."
    ),
    "required": ["type", "v", "id", "room"],
    "properties": {
        "type": {"const": "end.request"},
        "v": {"const": 1},
        "id": _ID,
        "reason": _optional(
            {
                "type": "string",
                "pattern": "^customer-[a-z0-9.-]{0,55}$",
                "description": "A client may only send reasons starting with customer- (another"
                " well-formed reason gets 403).",
            }
        ),
        "initiator": _optional(
            {**IDENTITY, "description": "Must equal the token's identity (else 403)."}
        ),
        "sent_at": _optional({"type": "integer", "minimum": 0, "maximum": 2**53 - 1}),
        "meta": _optional(
            {
                "type": "object",
                "description": f"At most {MAX_META_BYTES} bytes serialized; copied into the"
                " report.",
            }
        ),
        "room": IDENTITY,
        "token": _optional(
            {
                "type": "string",
                "maxLength": MAX_TOKEN_CHARS,
                "description": "For sendBeacon, which cannot set headers: a JWT, used when no"
                " Authorization header is sent (another string is an invalid token: 401).",
            }
        ),
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
                        "408": _error(
                            "The body did not arrive within ENDCALL_IDLE_TIMEOUT seconds."
                        ),
                        "413": _error(
                            f"Body (or its Content-Length) over {MAX_BODY_BYTES} bytes; no more"
                            " is read."
                        ),
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
                        "Verified as livekit-api's WebhookReceiver does (the JWT in "
                        "Authorization, the body's SHA-256 in it). See README, 'Every finished "
                        "room is accounted for'."
                    ),
                    "security": [{"livekitWebhook": []}],
                    "requestBody": {
                        "required": True,
                        "description": (
                            f"A LiveKit WebhookEvent, at most {MAX_WEBHOOK_BYTES} bytes and"
                            f" {MAX_WEBHOOK_DEPTH} levels deep."
                        ),
                        "content": {
                            "application/webhook+json": {"schema": {"type": "object"}},
                            "application/json": {"schema": {"type": "object"}},
                        },
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
                        "400": _error(
                            "A correctly signed body that is not a LiveKit event about a room"
                            " (not JSON, too deep, no room sid)."
                        ),
                        "401": _error(
                            "No token, a forged or expired one, one whose hash does not match"
                            " the body, or a replayed one."
                        ),
                        "408": _error(
                            "The body did not arrive within ENDCALL_IDLE_TIMEOUT seconds."
                        ),
                        "413": _error(
                            f"Body (or its Content-Length) over {MAX_WEBHOOK_BYTES} bytes; no"
                            " more is read."
                        ),
                        "415": _error(
                            "Content-Type is not application/webhook+json or application/json."
                        ),
                        "429": _error(
                            "Too many failed verifications from this address.", "Retry-After"
                        ),
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
            "/readyz": {
                "get": {
                    "operationId": "ready",
                    "description": "Readiness, part by part: outbox, livekit, relay, reconcile"
                    " (each {ok, ...} or {enabled: false}), and the backlog (informational).",
                    "responses": {
                        code: {
                            "description": what,
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["status", "parts"],
                                        "properties": {
                                            "status": {"const": status},
                                            "parts": {
                                                "type": "object",
                                                "additionalProperties": {"type": "object"},
                                            },
                                        },
                                    }
                                }
                            },
                        }
                        for code, what, status in (
                            ("200", "Every enabled part can do its job.", "ready"),
                            ("503", "A part cannot: see its error.", "not_ready"),
                        )
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "description": "Prometheus text exposition (endcall_* series).",
                    "responses": {
                        "200": {
                            "description": "The metrics.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "responses": {
                        "200": {
                            "description": "This document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
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
                },
                "livekitWebhook": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "LiveKit's webhook JWT (raw or after Bearer), signed with"
                    " the project's API key, with the body's SHA-256 in its claims.",
                },
            },
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
