"""Test doubles for LiveKit agents: a loopback SFU and scripted model plugins.

`request_end(room, ...)` sends an end request to the agent as a browser would.
Only the SFU and the models are replaced; the rest is the real SDK (``livekit.rtc``
classes are subclassed, ``livekit.agents.AgentSession`` runs unchanged). See
``docs/testing.md``.
"""

from endcall.testing.loopback import (
    RPC_DEFAULT_RESPONSE_TIMEOUT,
    RPC_MAX_PAYLOAD_BYTES,
    RPC_MAX_ROUND_TRIP_LATENCY,
    DataFilter,
    LoopbackLocalParticipant,
    LoopbackRemoteParticipant,
    LoopbackRoom,
    LoopbackServer,
)
from endcall.testing.models import ScriptedLLM, ScriptedSTT, ScriptItem, TimedTTS, ToolCall, Turn
from endcall.testing.requests import request_end
from endcall.testing.roomservice import RoomHub, RoomServiceDouble, TwirpCall

__all__ = [
    "RPC_DEFAULT_RESPONSE_TIMEOUT",
    "RPC_MAX_PAYLOAD_BYTES",
    "RPC_MAX_ROUND_TRIP_LATENCY",
    "DataFilter",
    "LoopbackLocalParticipant",
    "LoopbackRemoteParticipant",
    "LoopbackRoom",
    "LoopbackServer",
    "RoomHub",
    "RoomServiceDouble",
    "ScriptItem",
    "ScriptedLLM",
    "ScriptedSTT",
    "TimedTTS",
    "ToolCall",
    "Turn",
    "TwirpCall",
    "request_end",
]
