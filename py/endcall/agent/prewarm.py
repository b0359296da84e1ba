"""`endcall.prewarm` for livekit-agents workers: the reports relay, told by LiveKit whose
crash drafts it may take over early.

`endcall.reports.relay.prewarm` starts a relay for leftover reports in each job process; it
knows nothing of rooms. This adds what only the agent side knows: how to ask LiveKit's
RoomService whether a silent draft's agent has left its room (`livekit_gone_check`), so a job
that was killed has its crash draft delivered within seconds of LiveKit noticing — not when
its 90 s lease runs out (`endcall.reports.owner_watch`). A session's drafts carry the scope
``<room sid>/<agent identity>`` (`draft_scope`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from livekit import api

from endcall.reports.delivery import DeadCallback
from endcall.reports.owner_watch import GoneCheck
from endcall.reports.relay import BackgroundRelay
from endcall.reports.relay import prewarm as relay_prewarm

__all__ = ["draft_scope", "livekit_gone_check", "prewarm"]

logger = logging.getLogger("endcall")

#: one RoomService request's timeout (seconds)
REQUEST_TIMEOUT = 5.0


def draft_scope(room_sid: str | None, identity: str | None) -> str | None:
    """What a session's crash draft belongs to: its room (by sid, which no later room of the
    same name shares) and, inside it, the agent participant (by identity)."""
    if not room_sid:
        return None
    return f"{room_sid}/{identity}" if identity else room_sid


def livekit_gone_check(
    url: str | None = None, api_key: str | None = None, api_secret: str | None = None
) -> GoneCheck | None:
    """A `GoneCheck` asking LiveKit's RoomService (``LIVEKIT_URL``, ``LIVEKIT_API_KEY``,
    ``LIVEKIT_API_SECRET``, as the worker has them): a scope's agent is gone when its room is
    no longer listed, or the room no longer has a participant with that identity. None when
    the credentials are missing (the leases decide then)."""
    url = url or os.environ.get("LIVEKIT_URL")
    api_key = api_key or os.environ.get("LIVEKIT_API_KEY")
    api_secret = api_secret or os.environ.get("LIVEKIT_API_SECRET")
    if not (url and api_key and api_secret):
        logger.info(
            "endcall: no LiveKit credentials for the relay (LIVEKIT_URL, LIVEKIT_API_KEY,"
            " LIVEKIT_API_SECRET): a crashed agent's draft waits for its lease"
        )
        return None

    async def gone(scopes: Sequence[str]) -> list[str]:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        async with api.LiveKitAPI(url, api_key, api_secret, timeout=timeout) as lk:
            listed = await lk.room.list_rooms(api.ListRoomsRequest())
            rooms = {r.sid: r.name for r in listed.rooms}
            members: dict[str, set[str] | None] = {}
            out: list[str] = []
            for scope in scopes:
                sid, _, identity = scope.partition("/")
                name = rooms.get(sid)
                if name is None:
                    out.append(scope)  # the room is gone, and its agents with it
                    continue
                if not identity:
                    continue  # a room still open, and no agent named: the lease decides
                if name not in members:
                    members[name] = await _identities(lk, name)
                present = members[name]
                if present is not None and identity not in present:
                    out.append(scope)
            return out

    return gone


async def _identities(lk: api.LiveKitAPI, room: str) -> set[str] | None:
    """The identities in ``room`` now; None when that cannot be told (it closed meanwhile)."""
    try:
        listed = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
    except api.TwirpError as e:
        logger.debug("endcall: cannot list the participants of %s: %s", room, e)
        return None
    return {p.identity for p in listed.participants}


def prewarm(
    proc: Any = None,
    *,
    secret: str | Sequence[str] | None = None,
    outbox: str | Path | None = None,
    poll: float = 30.0,
    on_dead: DeadCallback | None = None,
    ask_livekit: bool = True,
) -> BackgroundRelay | None:
    """`endcall.reports.relay.prewarm` (see there), whose relay also asks LiveKit whether a
    silent crash draft's agent is gone (``ask_livekit``, on by default; it needs the worker's
    LiveKit credentials in the environment) and then takes the draft over at once."""
    return relay_prewarm(
        proc,
        secret=secret,
        outbox=outbox,
        poll=poll,
        on_dead=on_dead,
        gone=livekit_gone_check() if ask_livekit else None,
    )
