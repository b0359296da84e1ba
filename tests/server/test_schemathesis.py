"""Schemathesis against the served app, with every check (the CLI's ``--checks all``).

The app runs on real uvicorn on 127.0.0.1, behind ``endcall serve``'s edge, with the Twirp
double as LiveKit and an outbox for the room ledger. Requests come from the OpenAPI document
the server serves (positive and negative data); a request for ``/v1/end`` whose body names a
room gets a valid token for that room (and for its ``initiator`` when it has one) half the
time, so that both the authentication and what comes after it are reached. Bounded: at most
``MAX_EXAMPLES`` requests per operation, about a minute in all on a small machine.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from edge_support import ThreadedServers
from hypothesis import HealthCheck, settings
from server_support import API_KEY, API_SECRET, livekit_token

from endcall.server import Settings, create_app
from endcall.server.edge import edge_options
from endcall.server.openapi import openapi_document
from endcall.testing import LoopbackServer, RoomServiceDouble

MAX_EXAMPLES = 150
WH_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

schema = schemathesis.openapi.from_dict(openapi_document())
schema.config.checks.update(included_check_names=["all"])  # what `--checks all` does


@schemathesis.serializer("text/plain")
def _as_json_text(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    """The server reads a text/plain body as JSON (what sendBeacon sends for a string)."""
    if isinstance(value, bytes):
        return value
    return json.dumps(value).encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    servers = ThreadedServers()
    try:
        double = RoomServiceDouble(LoopbackServer(), api_key=API_KEY, api_secret=API_SECRET)
        lk_url = servers.serve(double)
        outbox: Path = tmp_path_factory.mktemp("schemathesis") / "outbox.sqlite3"
        settings = Settings(
            livekit_url=lk_url,
            api_key=API_KEY,
            api_secret=API_SECRET,
            ack_timeout=0.3,
            rate_limit_identity=None,
            rate_limit_address=None,
            relay_outbox=str(outbox),
            relay_secrets=(WH_SECRET,),
            idle_timeout=5.0,
        )
        yield servers.serve(create_app(settings), **edge_options(settings.idle_timeout))
    finally:
        servers.close()


def test_the_served_document_is_the_one_tested(served: str) -> None:
    assert httpx.get(served + "/openapi.json").json() == json.loads(json.dumps(openapi_document()))


def _authorize(case: schemathesis.Case[Any]) -> None:
    body = case.body
    if case.path != "/v1/end" or not isinstance(body, dict):
        return
    room, initiator = body.get("room"), body.get("initiator")
    if not isinstance(room, str) or zlib.crc32(json.dumps(body, sort_keys=True).encode()) % 2:
        return
    identity = initiator if isinstance(initiator, str) and initiator else "cust"
    try:
        token = livekit_token(identity, room)
    except (ValueError, UnicodeError):
        return
    case.headers["Authorization"] = f"Bearer {token}"


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_server_does_what_its_document_says(served: str, case: schemathesis.Case[Any]) -> None:
    _authorize(case)
    case.call_and_validate(base_url=served, timeout=10)
