"""Token endpoint + static host for the example page against a real LiveKit server.

``GET /api/session`` answers what the page (``examples/web``) needs to join: the LiveKit URL, an
access token for a fresh candidate identity (with an agent dispatch of ``interview-agent`` in
the token's room configuration, so the example agent joins), an endcall end token for the
fallback server and the tab-close beacon, and the fallback URL. Everything else is the built
page (``examples/web/dist``).

Only ``room`` and ``identity`` are read from the request; nothing else the client sends (a
``room_config``, an agent dispatch, ``metadata``, a body) ever goes into the token. A token's
room configuration is readable by the browser that holds it, and a route that copies the
client's ``room_config`` into the token (LiveKit's React starter's does) lets the candidate
choose the agent's job metadata: where their report goes, and the ids it is filed under. So the
dispatch here carries no metadata at all; anything private goes in a server-side dispatch
(``CreateAgentDispatchRequest`` with ``endcall.dispatch_metadata(...)``, README "Against your
LiveKit").

    LIVEKIT_URL=wss://… LIVEKIT_API_KEY=… LIVEKIT_API_SECRET=… \\
    ENDCALL_FALLBACK_URL=http://127.0.0.1:8787/v1/end \\
    python examples/token_server.py --port 8080

Run the agent (``python examples/interview_agent.py dev``) and the fallback server
(``endcall serve --port 8787`` with ``ENDCALL_ALLOWED_ORIGINS=http://127.0.0.1:8080``) next to
it. ``endcall demo`` serves the same ``/api/session`` contract for the loopback instead.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from livekit import api
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from endcall.server.tokens import mint_end_token

__all__ = ["Config", "create_app", "main"]

DIST = Path(__file__).resolve().parent / "web" / "dist"


class Config:
    """Settings from the environment (``LIVEKIT_*``, ``ENDCALL_FALLBACK_URL``, ``AGENT_NAME``)."""

    def __init__(self) -> None:
        self.url = os.environ.get("LIVEKIT_URL", "")
        self.api_key = os.environ.get("LIVEKIT_API_KEY", "")
        self.api_secret = os.environ.get("LIVEKIT_API_SECRET", "")
        self.fallback_url = os.environ.get("ENDCALL_FALLBACK_URL") or None
        self.agent_name = os.environ.get("AGENT_NAME", "interview-agent")
        self.ttl = float(os.environ.get("ENDCALL_TOKEN_TTL", "7200"))
        missing = [
            name
            for name, value in (
                ("LIVEKIT_URL", self.url),
                ("LIVEKIT_API_KEY", self.api_key),
                ("LIVEKIT_API_SECRET", self.api_secret),
            )
            if not value
        ]
        if missing:
            raise SystemExit(f"set {', '.join(missing)}")


def create_app(config: Config, dist: Path = DIST) -> Starlette:
    async def session(request: Request) -> Response:
        room = request.query_params.get("room") or f"interview-{secrets.token_hex(4)}"
        identity = request.query_params.get("identity") or f"candidate-{secrets.token_hex(3)}"
        token = (
            api.AccessToken(config.api_key, config.api_secret)
            .with_identity(identity)
            .with_name(identity)
            .with_ttl(timedelta(seconds=config.ttl))
            .with_grants(
                api.VideoGrants(room_join=True, room=room, can_publish=True, can_publish_data=True)
            )
            # the agent by name, no metadata: the browser reads this (module doc)
            .with_room_config(
                api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name=config.agent_name)])
            )
            .to_jwt()
        )
        end_token = mint_end_token(
            room, identity, config.ttl, api_key=config.api_key, api_secret=config.api_secret
        )
        return JSONResponse(
            {
                "mode": "livekit",
                "url": config.url,
                "token": token,
                "room": room,
                "identity": identity,
                "fallbackUrl": config.fallback_url,
                "endToken": end_token if config.fallback_url else None,
                "answerBox": False,
                "beaconReason": "customer-tab-closed",
                "stayForReportMs": 60_000,
                "title": "Mock interview",
            },
            headers={"Cache-Control": "no-store"},
        )

    routes: list[BaseRoute] = [Route("/api/session", session, methods=["GET"])]
    if (dist / "index.html").is_file():
        routes.append(Mount("/", StaticFiles(directory=str(dist), html=True)))
    return Starlette(routes=routes)


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="token endpoint + example page for LiveKit")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    config = Config()
    if not (DIST / "index.html").is_file():
        print("note: examples/web is not built (cd examples/web && npm ci && npm run build)")
    print(f"open http://{args.host}:{args.port}/")
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
