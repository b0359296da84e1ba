"""Contract suite fixtures: one real livekit-server per session, and a ``backend`` per test
that is either the loopback double or that server, behind one interface.

Every contract test runs twice, ``[loopback]`` and ``[real]``. A behaviour in which the
double knowingly differs (documented in docs/testing.md, "Known differences from
livekit-server") is marked ``@pytest.mark.differs_on_loopback("why")``: the loopback run then
becomes a strict xfail, so it fails the day the double is fixed. Nothing here skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from livekit import api, rtc

from endcall.testing import LoopbackServer, RoomServiceDouble
from endcall.testing.livekit_server import ServerInfo, ServerUnavailable, server_for_tests
from endcall.testing.stack import Served, serve

WAIT = 10.0
"""Upper bound (seconds) of every wait for an event: behaviour is asserted, never speed."""

EVENTS = (
    "participant_connected",
    "participant_disconnected",
    "participant_attributes_changed",
    "participant_metadata_changed",
    "participant_name_changed",
    "data_received",
    "connection_state_changed",
    "disconnected",
)

_KINDS = {
    "standard": rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
    "agent": rtc.ParticipantKind.PARTICIPANT_KIND_AGENT,
    "sip": rtc.ParticipantKind.PARTICIPANT_KIND_SIP,
    "ingress": rtc.ParticipantKind.PARTICIPANT_KIND_INGRESS,
    "egress": rtc.ParticipantKind.PARTICIPANT_KIND_EGRESS,
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "differs_on_loopback(reason): a documented difference of the double; the loopback "
        "run is a strict xfail",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("differs_on_loopback")
        callspec = getattr(item, "callspec", None)
        if marker is None or callspec is None or callspec.params.get("backend") != "loopback":
            continue
        reason = marker.args[0] if marker.args else marker.kwargs["reason"]
        item.add_marker(
            pytest.mark.xfail(
                strict=True,
                # only a failed assertion counts as the difference, never a crash of the test
                raises=(AssertionError, pytest.fail.Exception),
                reason=f"known difference: {reason}",
            )
        )


class Events:
    """Every event of interest a room emits, in order, with bounded waits on them."""

    def __init__(self, room: rtc.Room) -> None:
        self.log: list[tuple[str, tuple[Any, ...]]] = []
        self._grew = asyncio.Event()
        for name in EVENTS:
            room.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self.log.append((name, args))
            self._grew.set()

        return record

    def find(self, name: str, where: Callable[..., bool] = lambda *a: True) -> int | None:
        """Index in :attr:`log` of the first ``name`` event whose arguments match."""
        for i, (event, args) in enumerate(self.log):
            if event == name and where(*args):
                return i
        return None

    async def wait(
        self, name: str, where: Callable[..., bool] = lambda *a: True, timeout: float = WAIT
    ) -> tuple[Any, ...]:
        """The arguments of the first ``name`` event matching ``where`` (already recorded or
        coming); fails the test after ``timeout`` seconds."""

        async def first() -> tuple[Any, ...]:
            while True:
                index = self.find(name, where)
                if index is not None:
                    return self.log[index][1]
                self._grew.clear()
                await self._grew.wait()

        try:
            return await asyncio.wait_for(first(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {name!r} event within {timeout} s; saw {self.log}") from None

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for event, args in self.log if event == name]

    def data(self, topic: str | None = None) -> list[rtc.DataPacket]:
        return [
            args[0]
            for event, args in self.log
            if event == "data_received" and (topic is None or args[0].topic == topic)
        ]


@dataclass
class Peer:
    """A connected participant: its ``rtc.Room`` and the events that room emitted."""

    room: rtc.Room
    events: Events

    @property
    def local(self) -> rtc.LocalParticipant:
        return self.room.local_participant

    @property
    def identity(self) -> str:
        return self.room.local_participant.identity


@dataclass
class Backend:
    """Loopback double or real server: connect participants by token, call the server API."""

    name: str
    info: ServerInfo
    api: api.LiveKitAPI
    hub: LoopbackServer | None = None
    peers: list[Peer] = field(default_factory=list)

    @staticmethod
    def new_room() -> str:
        return f"contract-{uuid.uuid4().hex[:10]}"

    def token(
        self,
        room: str,
        identity: str,
        *,
        kind: str = "standard",
        attributes: dict[str, str] | None = None,
        can_update_metadata: bool = True,
    ) -> str:
        token = (
            api.AccessToken(self.info.api_key, self.info.api_secret)
            .with_identity(identity)
            .with_kind(kind)  # type: ignore[arg-type]
            .with_grants(
                api.VideoGrants(
                    room_join=True, room=room, can_update_own_metadata=can_update_metadata
                )
            )
        )
        if attributes:
            token = token.with_attributes(attributes)
        return token.to_jwt()

    async def connect_token(self, token: str) -> Peer:
        """Join with an access token: ``rtc.Room().connect`` on the real server; on the
        loopback, ``hub.connect`` with what the (verified) token grants."""
        if self.hub is None:
            room = rtc.Room()
            events = Events(room)
            await asyncio.wait_for(room.connect(self.info.url, token), WAIT)
        else:
            claims = api.TokenVerifier(self.info.api_key, self.info.api_secret).verify(token)
            grant = claims.video
            assert grant is not None and grant.room_join and grant.room
            room = await self.hub.connect(
                grant.room,
                claims.identity,
                kind=_KINDS[claims.kind or "standard"],
                attributes=claims.attributes or {},
                name=claims.name,
                metadata=claims.metadata,
                can_update_metadata=bool(grant.can_update_own_metadata),
            )
            events = Events(room)
        peer = Peer(room, events)
        self.peers.append(peer)
        return peer

    async def connect(self, room: str, identity: str, **token_options: Any) -> Peer:
        return await self.connect_token(self.token(room, identity, **token_options))

    async def participants(self, room: str) -> dict[str, Any]:
        """ListParticipants: identity → ``ParticipantInfo``."""
        listing = await self.api.room.list_participants(api.ListParticipantsRequest(room=room))
        return {p.identity: p for p in listing.participants}


@pytest.fixture(scope="session")
def real_server() -> Iterator[ServerInfo]:
    """A livekit-server for the whole session (``LIVEKIT_URL`` & co. when set). Fails, never
    skips, when none can be started."""
    try:
        info, server = server_for_tests()
    except ServerUnavailable as exc:
        pytest.fail(
            f"the contract suite needs a real livekit-server and none could start: {exc}\n"
            "(build it with `make livekit-server`; run the suite inside `scripts/in-netns`)",
            pytrace=False,
        )
    try:
        yield info
    finally:
        if server is not None:
            server.stop()


@pytest.fixture(params=["loopback", "real"])
async def backend(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Backend]:
    served: Served | None = None
    hub: LoopbackServer | None = None
    if request.param == "real":
        info: ServerInfo = request.getfixturevalue("real_server")
        client = api.LiveKitAPI(info.http_url, info.api_key, info.api_secret)
    else:
        hub = LoopbackServer()
        key, secret = "APIcontract", "contract-secret-long-enough-for-hs256-0123456789"
        served = await serve(RoomServiceDouble(hub, api_key=key, api_secret=secret))
        info = ServerInfo(served.url.replace("http://", "ws://"), key, secret, "loopback")
        client = api.LiveKitAPI(served.url, key, secret)
    backend = Backend(request.param, info, client, hub)
    try:
        yield backend
    finally:
        for peer in backend.peers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(peer.room.disconnect(), WAIT)
        await client.aclose()
        if hub is not None:
            await hub.aclose()
        if served is not None:
            await served.stop()
