"""Deleting the call's own room, and never another one that took its name.

LiveKit deletes rooms by name. After the room was deleted under the agent (the fallback
server's escalation, an admin), a reloaded page may join a *new* room with the same name; an
end path that still deletes "the room" by name would end that next interview. So:

- while the agent is connected, the room of that name is its own: delete it;
- when the agent was disconnected because the room is gone (`ROOM_DELETED`, `ROOM_CLOSED`):
  never delete by name;
- when the agent left for another reason (the job shut down first): ask RoomService for the
  room of that name and delete it only when its sid is the call's (`delete_if_same_room`). If
  that cannot be checked, the room is left alone: it closes by itself once everyone left
  (livekit-server's `departure_timeout`), which loses nothing; deleting someone else's
  interview would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from livekit import api, rtc
from livekit.api.room_service import RoomService

__all__ = ["GONE_REASONS", "Outcome", "delete_own_room", "room_now"]

logger = logging.getLogger("endcall")

Outcome = Literal["deleted", "gone", "replaced", "unverified"]

#: the agent's disconnect reasons that mean the room itself no longer exists
GONE_REASONS = frozenset({rtc.DisconnectReason.ROOM_DELETED, rtc.DisconnectReason.ROOM_CLOSED})

#: how long the room's sid and the RoomService check may take
CHECK_TIMEOUT = 3.0


async def room_now(rooms: RoomService, name: str, sid: str) -> Literal["same", "gone", "replaced"]:
    """What RoomService lists under ``name`` now: the room with ``sid`` (``same``), none
    (``gone``), or a new room that took the name (``replaced``)."""
    listed = await rooms.list_rooms(api.ListRoomsRequest(names=[name]))
    current = [r for r in listed.rooms if r.name == name]
    if not current:
        return "gone"
    return "same" if current[0].sid == sid else "replaced"


async def delete_own_room(
    ctx: Any,
    *,
    connected: bool,
    disconnect_reason: int | None,
    delete: Callable[[], Awaitable[Any]],
) -> Outcome:
    """Delete the job's room with ``delete()`` if it is still the call's own (see the module
    docstring)."""
    if connected:
        await delete()
        return "deleted"
    if disconnect_reason in GONE_REASONS:
        return "gone"
    try:
        sid = await asyncio.wait_for(ctx.room.sid, CHECK_TIMEOUT)
        now = await asyncio.wait_for(room_now(ctx.api.room, ctx.room.name, sid), CHECK_TIMEOUT)
    except Exception as e:
        logger.info("endcall: could not check that the room is still ours (%s); not deleted", e)
        return "unverified"
    if now == "replaced":
        logger.warning(
            "endcall: room %s is a new room now (another session took the name); not deleted",
            ctx.room.name,
        )
        return "replaced"
    if now == "gone":
        return "gone"
    await delete()
    return "deleted"
