"""Small stand-ins for a job context and a session, for the parts' unit tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from endcall.agent.call import Call
from endcall.agent.end_machine import EndMachine, Trigger
from endcall.protocol import Initiator


class FakeSession:
    """Records what the parts ask of an AgentSession."""

    def __init__(self, *, linked: str | None = "cand", close_on_disconnect: bool = True) -> None:
        participant = SimpleNamespace(identity=linked) if linked else None
        self.room_io = SimpleNamespace(
            linked_participant=participant,
            _options=SimpleNamespace(close_on_disconnect=close_on_disconnect),
        )
        self.user_state = "listening"
        self.said: list[str] = []
        self.shutdowns = 0
        self.handlers: dict[str, list[Callable[..., None]]] = {}
        self.commits: list[dict[str, Any]] = []

    def on(self, event: str, cb: Callable[..., None]) -> None:
        self.handlers.setdefault(event, []).append(cb)

    def say(self, text: str, *, allow_interruptions: bool = True) -> Any:
        self.said.append(text)
        return None

    def shutdown(self, *, drain: bool = True) -> None:
        self.shutdowns += 1

    def commit_user_turn(self, **kwargs: Any) -> None:
        self.commits.append(kwargs)


@dataclass
class FakeRoom:
    name: str = "interview-1"
    remote_participants: dict[str, Any] = field(default_factory=dict)
    connected: bool = True
    local_participant: Any = field(default_factory=lambda: SimpleNamespace(identity="agent"))

    def isconnected(self) -> bool:
        return self.connected


class FakeCtx:
    def __init__(self) -> None:
        self.room = FakeRoom()
        self.job = SimpleNamespace(room=SimpleNamespace(name="interview-1"))
        self.shutdowns: list[str] = []
        self.deleted = 0

    def shutdown(self, reason: str = "") -> None:
        self.shutdowns.append(reason)

    async def delete_room(self) -> None:
        self.deleted += 1

    def make_session_report(self) -> Any:
        raise RuntimeError("no session report in a fake job")


def make_call(session: FakeSession | None = None) -> Call:
    return Call(FakeCtx(), session or FakeSession(), EndMachine(drain_ms=1000))


def trigger(reason: str, kind: Any = "customer", identity: str | None = None) -> Trigger:
    return Trigger(reason=reason, initiator=Initiator(kind=kind, identity=identity), channel="api")
