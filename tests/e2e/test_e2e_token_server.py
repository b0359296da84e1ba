"""examples/token_server.py: the page's session endpoint for a real LiveKit server."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_helpers import load_example
from livekit import api
from starlette.testclient import TestClient

from endcall.server.tokens import verify_token

KEY, SECRET = "APIkey123", "s" * 40


@pytest.fixture
def token_server(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("LIVEKIT_URL", "wss://example.livekit.cloud")
    monkeypatch.setenv("LIVEKIT_API_KEY", KEY)
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    monkeypatch.setenv("ENDCALL_FALLBACK_URL", "https://backend.example/v1/end")
    return load_example("token_server")


def test_session_mints_a_join_token_with_agent_dispatch_and_an_end_token(token_server: Any) -> None:
    client = TestClient(token_server.create_app(token_server.Config()))
    body = client.get("/api/session?room=interview-7&identity=cand-7").json()
    claims = api.TokenVerifier(KEY, SECRET).verify(body["token"])
    assert (body["mode"], body["url"], body["room"], body["identity"]) == (
        "livekit",
        "wss://example.livekit.cloud",
        "interview-7",
        "cand-7",
    )
    assert claims.identity == "cand-7"
    assert (
        claims.video is not None and claims.video.room_join and claims.video.room == "interview-7"
    )
    assert claims.room_config is not None
    assert [a.agent_name for a in claims.room_config.agents] == ["interview-agent"]
    principal = verify_token(body["endToken"], api_key=KEY, api_secret=SECRET, room="interview-7")
    assert (principal.identity, principal.room, principal.kind) == ("cand-7", "interview-7", "end")
    assert body["fallbackUrl"] == "https://backend.example/v1/end"


def test_fresh_rooms_and_identities_and_missing_settings(
    token_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = TestClient(token_server.create_app(token_server.Config()))
    a, b = client.get("/api/session").json(), client.get("/api/session").json()
    assert a["room"] != b["room"] and a["identity"] != b["identity"]
    monkeypatch.delenv("LIVEKIT_API_SECRET")
    with pytest.raises(SystemExit, match="LIVEKIT_API_SECRET"):
        token_server.Config()


def test_what_the_client_sends_never_reaches_the_token(token_server: Any) -> None:
    """Issue 19: a token's room configuration is readable by the browser, and a route that
    copies the client's `room_config` (LiveKit's React starter) lets the candidate choose the
    agent's job metadata (where the report goes, the ids it is filed under). The example's
    route reads `room` and `identity` only: a client-sent dispatch or metadata is ignored."""
    import json

    client = TestClient(token_server.create_app(token_server.Config()))
    forged = {
        "agents": [
            {
                "agent_name": "interview-agent",
                "metadata": json.dumps({"webhook_url": "https://attacker.example/hook"}),
            },
            {"agent_name": "other-agent"},
        ]
    }
    params = {
        "room": "interview-8",
        "identity": "cand-8",
        "room_config": json.dumps(forged),
        "roomConfig": json.dumps(forged),
        "metadata": json.dumps({"company_id": "c-attacker"}),
        "agent_name": "other-agent",
    }
    body = client.get("/api/session", params=params).json()
    claims = api.TokenVerifier(KEY, SECRET).verify(body["token"])
    assert claims.room_config is not None
    assert [(a.agent_name, a.metadata) for a in claims.room_config.agents] == [
        ("interview-agent", "")
    ]
    assert claims.metadata == "" and claims.attributes == {}
    assert "attacker" not in json.dumps(body) and "c-attacker" not in json.dumps(body)
    # the starter's shape: a POST with the room configuration in its JSON body gets no token
    posted = client.post("/api/session", json={"room_name": "r", "room_config": forged})
    assert posted.status_code == 405
