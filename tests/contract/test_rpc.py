"""Contract: RPC between participants — results, error codes, timeouts, payload limits."""

from __future__ import annotations

import asyncio

import pytest
from conftest import WAIT, Backend, Peer
from livekit import rtc

Code = rtc.RpcError.ErrorCode
LIMIT = 15_360


async def pair(backend: Backend) -> tuple[Peer, Peer]:
    room = backend.new_room()
    agent = await backend.connect(room, "agent-1", kind="agent")
    caller = await backend.connect(room, "caller-1")
    await agent.events.wait("participant_connected", lambda p: p.identity == "caller-1")
    return agent, caller


async def call(caller: Peer, method: str, payload: str = "", **options: float) -> str:
    return await asyncio.wait_for(
        caller.local.perform_rpc(
            destination_identity="agent-1", method=method, payload=payload, **options
        ),
        WAIT + 20,
    )


async def rpc_error(caller: Peer, method: str, payload: str = "", **options: float) -> rtc.RpcError:
    with pytest.raises(rtc.RpcError) as info:
        await call(caller, method, payload, **options)
    return info.value


async def test_success_returns_the_handler_result(backend: Backend) -> None:
    agent, caller = await pair(backend)
    seen: list[rtc.RpcInvocationData] = []

    async def echo(data: rtc.RpcInvocationData) -> str:
        seen.append(data)
        return "echo:" + data.payload

    agent.local.register_rpc_method("echo", echo)
    agent.local.register_rpc_method("sync", lambda data: "sync ok")
    assert await call(caller, "echo", "héllo") == "echo:héllo"
    assert await call(caller, "sync") == "sync ok"
    assert len(seen) == 1
    assert (seen[0].caller_identity, seen[0].method, seen[0].payload) == (
        "caller-1",
        "echo",
        "héllo",
    )
    assert seen[0].request_id and seen[0].response_timeout > 0


async def test_unsupported_method_is_1400(backend: Backend) -> None:
    agent, caller = await pair(backend)
    agent.local.register_rpc_method("other", lambda data: "")
    err = await rpc_error(caller, "missing")
    assert err.code == Code.UNSUPPORTED_METHOD == 1400
    assert err.message == "Method not supported at destination"


async def test_unregistered_method_is_1400(backend: Backend) -> None:
    agent, caller = await pair(backend)
    agent.local.register_rpc_method("gone", lambda data: "here")
    assert await call(caller, "gone") == "here"
    agent.local.unregister_rpc_method("gone")
    assert (await rpc_error(caller, "gone")).code == Code.UNSUPPORTED_METHOD


async def test_application_errors_keep_code_message_and_data(backend: Backend) -> None:
    agent, caller = await pair(backend)

    async def refuse(data: rtc.RpcInvocationData) -> str:
        raise rtc.RpcError(4403, "only the customer may end", '{"code":"forbidden"}')

    async def refuse_bare(data: rtc.RpcInvocationData) -> str:
        raise rtc.RpcError(2001, "no data")

    agent.local.register_rpc_method("refuse", refuse)
    agent.local.register_rpc_method("bare", refuse_bare)
    err = await rpc_error(caller, "refuse")
    assert (err.code, err.message, err.data) == (
        4403,
        "only the customer may end",
        '{"code":"forbidden"}',
    )
    bare = await rpc_error(caller, "bare")
    assert (bare.code, bare.message) == (2001, "no data")
    assert not bare.data  # unset data arrives empty


async def test_handler_exception_is_1500(backend: Backend) -> None:
    agent, caller = await pair(backend)

    async def boom(data: rtc.RpcInvocationData) -> str:
        raise ValueError("secret detail")

    agent.local.register_rpc_method("boom", boom)
    err = await rpc_error(caller, "boom")
    assert err.code == Code.APPLICATION_ERROR == 1500
    assert err.message == "Application error in method handler"
    assert "secret detail" not in f"{err.message}{err.data}"


async def missing_recipient_error(caller: Peer) -> rtc.RpcError:
    with pytest.raises(rtc.RpcError) as info:
        await asyncio.wait_for(
            caller.local.perform_rpc(
                destination_identity="ghost",
                method="end",
                payload="{}",
                max_round_trip_latency=1.0,
            ),
            WAIT,
        )
    return info.value


async def test_missing_recipient_times_out_waiting_for_the_ack(backend: Backend) -> None:
    """Nobody acknowledges a request to an identity that is not in the room: the caller gets
    CONNECTION_TIMEOUT after ``max_round_trip_latency``; the server never answers
    RECIPIENT_NOT_FOUND. The double does this with ``missing_recipient="connection_timeout"``."""
    if backend.hub is not None:
        backend.hub.missing_recipient = "connection_timeout"
    caller = await backend.connect(backend.new_room(), "caller-1")
    assert (await missing_recipient_error(caller)).code == Code.CONNECTION_TIMEOUT == 1501


@pytest.mark.differs_on_loopback(
    "LoopbackServer's default missing_recipient='not_found' answers 1401 at once"
)
async def test_missing_recipient_by_default(backend: Backend) -> None:
    caller = await backend.connect(backend.new_room(), "caller-1")
    assert (await missing_recipient_error(caller)).code == Code.CONNECTION_TIMEOUT


async def test_slow_handler_is_a_response_timeout(backend: Backend) -> None:
    agent, caller = await pair(backend)
    release = asyncio.Event()

    async def slow(data: rtc.RpcInvocationData) -> str:
        await release.wait()
        return "too late"

    agent.local.register_rpc_method("slow", slow)
    try:
        err = await rpc_error(caller, "slow", response_timeout=2.0)
    finally:
        release.set()
    assert err.code == Code.RESPONSE_TIMEOUT == 1502
    # the connection still works afterwards
    agent.local.register_rpc_method("fast", lambda data: "ok")
    assert await call(caller, "fast") == "ok"


async def test_recipient_leaving_during_the_call_is_1503(backend: Backend) -> None:
    agent, caller = await pair(backend)
    started = asyncio.Event()

    async def hang(data: rtc.RpcInvocationData) -> str:
        started.set()
        await asyncio.Event().wait()
        return ""

    agent.local.register_rpc_method("hang", hang)
    pending = asyncio.ensure_future(call(caller, "hang", response_timeout=20.0))
    await asyncio.wait_for(started.wait(), WAIT)
    await agent.room.disconnect()
    with pytest.raises(rtc.RpcError) as info:
        await pending
    assert info.value.code == Code.RECIPIENT_DISCONNECTED == 1503


def unlimited(backend: Backend) -> None:
    """The double without the RPC v1 payload limit (peers with data-stream RPC)."""
    if backend.hub is not None:
        backend.hub.rpc_payload_limit = None


async def test_large_payloads_are_carried(backend: Backend) -> None:
    """livekit 1.1.x peers send RPC over data streams: no 15,360-byte limit either way."""
    unlimited(backend)
    agent, caller = await pair(backend)
    agent.local.register_rpc_method("size", lambda data: str(len(data.payload.encode())))
    agent.local.register_rpc_method("big", lambda data: "é" * int(data.payload))
    assert await call(caller, "size", "x" * (LIMIT + 1)) == str(LIMIT + 1)
    assert await call(caller, "size", "é" * 100_000) == "200000"
    assert await call(caller, "big", "100000") == "é" * 100_000


@pytest.mark.differs_on_loopback(
    "LoopbackServer enforces the RPC v1 limit of 15,360 bytes by default (rpc_payload_limit)"
)
async def test_request_over_15360_bytes_by_default(backend: Backend) -> None:
    agent, caller = await pair(backend)
    agent.local.register_rpc_method("size", lambda data: str(len(data.payload.encode())))
    try:
        answer = await call(caller, "size", "x" * (LIMIT + 1))
    except rtc.RpcError as err:
        pytest.fail(f"refused with {err.code}")
    assert answer == str(LIMIT + 1)


@pytest.mark.differs_on_loopback(
    "LoopbackServer enforces the RPC v1 limit of 15,360 bytes by default (rpc_payload_limit)"
)
async def test_response_over_15360_bytes_by_default(backend: Backend) -> None:
    agent, caller = await pair(backend)
    agent.local.register_rpc_method("big", lambda data: "y" * int(data.payload))
    try:
        answer = await call(caller, "big", str(LIMIT + 1))
    except rtc.RpcError as err:
        pytest.fail(f"refused with {err.code}")
    assert len(answer) == LIMIT + 1
