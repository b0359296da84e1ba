"""Access tokens for the real livekit-server of `test_live*.py` (the `live` fixture is in
conftest.py). Run inside ``scripts/in-netns``; never skipped."""

from __future__ import annotations

from livekit import api

from endcall.testing.livekit_server import ServerInfo


def live_token(info: ServerInfo, room: str, identity: str, *, agent: bool = False) -> str:
    tok = (
        api.AccessToken(info.api_key, info.api_secret)
        .with_identity(identity)
        .with_grants(api.VideoGrants(room_join=True, room=room, can_update_own_metadata=True))
    )
    if agent:
        tok = tok.with_kind("agent")
    return tok.to_jwt()
