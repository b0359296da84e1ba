"""RPC over the loopback behaves like livekit-rtc: results, error codes, limits, timeouts."""

from __future__ import annotations

import asyncio

import pytest
from livekit import rtc

from endcall.testing import RPC_MAX_PAYLOAD_BYTES, LoopbackRoom, LoopbackServer

AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
Code = rtc.RpcError.ErrorCode


@pytest.fixture
async def rooms() -> tuple[LoopbackServer, LoopbackRoom, LoopbackRoom]:
    hub = LoopbackServer(rpc_ack_timeout=0.3)
    agent = await hub.connect("r", "agent-1", kind=AGENT)
    cand = await hub.connect("r", "cand-1")
    await hub.settle()
    return hub, agent, cand


async def call(room: LoopbackRoom, method: str, payload: str = "", **kw: float) -> str:
    return await room.local_participant.perform_rpc(
        destination_identity="agent-1", method=method, payload=payload, **kw
    )


async def rpc_error(
    room: LoopbackRoom, method: str, payload: str = "", **kw: float
) -> rtc.RpcError:
    with pytest.raises(rtc.RpcError) as info:
        await call(room, method, payload, **kw)
    return info.value


async def test_handler_result_and_invocation_data(rooms: tuple) -> None:
    _, agent, cand = rooms
    seen: list[rtc.RpcInvocationData] = []

    @agent.local_participant.register_rpc_method("endcall.end")
    async def handler(data: rtc.RpcInvocationData) -> str:
        seen.append(data)
        return "ack:" + data.payload

    agent.local_participant.register_rpc_method("sync", lambda data: "sync-ok")
    assert await call(cand, "endcall.end", "{}", response_timeout=10.0) == "ack:{}"
    assert await call(cand, "sync") == "sync-ok"
    (data,) = seen
    assert data.caller_identity == "cand-1" and data.method == "endcall.end"
    assert data.request_id
    # the recipient gets the caller's timeout minus the 0.3 s ACK budget (min 1 s)
    assert data.response_timeout == pytest.approx(9.7)


async def test_none_result_is_empty_string(rooms: tuple) -> None:
    _, agent, cand = rooms
    agent.local_participant.register_rpc_method("none", lambda data: None)
    assert await call(cand, "none") == ""


async def test_unsupported_method_and_unregister(rooms: tuple) -> None:
    _, agent, cand = rooms
    assert (await rpc_error(cand, "nope")).code == Code.UNSUPPORTED_METHOD
    agent.local_participant.register_rpc_method("m", lambda data: "x")
    agent.local_participant.unregister_rpc_method("m")
    err = await rpc_error(cand, "m")
    assert err.code == Code.UNSUPPORTED_METHOD == 1400
    assert err.message == "Method not supported at destination"


async def test_recipient_not_found(rooms: tuple) -> None:
    _, _, cand = rooms
    with pytest.raises(rtc.RpcError) as info:
        await cand.local_participant.perform_rpc(
            destination_identity="ghost", method="m", payload=""
        )
    assert info.value.code == Code.RECIPIENT_NOT_FOUND == 1401


async def test_missing_recipient_as_connection_timeout() -> None:
    hub = LoopbackServer(rpc_ack_timeout=0.05, missing_recipient="connection_timeout")
    cand = await hub.connect("r", "cand-1")
    with pytest.raises(rtc.RpcError) as info:
        await cand.local_participant.perform_rpc(
            destination_identity="ghost", method="m", payload=""
        )
    assert info.value.code == Code.CONNECTION_TIMEOUT


async def test_dropped_requests_time_out_waiting_for_ack(rooms: tuple) -> None:
    hub, agent, cand = rooms
    agent.local_participant.register_rpc_method("m", lambda data: "x")
    hub.drop_rpc_requests("r", "agent-1")
    assert (await rpc_error(cand, "m")).code == Code.CONNECTION_TIMEOUT
    hub.drop_rpc_requests("r", "agent-1", drop=False)
    assert await call(cand, "m") == "x"


async def test_slow_handler_gives_response_timeout(rooms: tuple) -> None:
    _, agent, cand = rooms
    release = asyncio.Event()

    async def slow(data: rtc.RpcInvocationData) -> str:
        await release.wait()
        return "late"

    agent.local_participant.register_rpc_method("slow", slow)
    err = await rpc_error(cand, "slow", response_timeout=0.2)
    assert err.code == Code.RESPONSE_TIMEOUT == 1502
    release.set()


async def test_handler_past_its_own_deadline_answers_response_timeout(rooms: tuple) -> None:
    hub, agent, cand = rooms
    hub.rpc_ack_timeout = 7.0  # recipient deadline = max(8 - 7, 1) = 1 s
    cancelled = asyncio.Event()

    async def stuck(data: rtc.RpcInvocationData) -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    agent.local_participant.register_rpc_method("stuck", stuck)
    err = await rpc_error(cand, "stuck", response_timeout=8.0)
    assert err.code == Code.RESPONSE_TIMEOUT
    assert cancelled.is_set()  # the SDK's chain cancelled the handler at its deadline


async def test_payload_limits(rooms: tuple) -> None:
    _, agent, cand = rooms
    agent.local_participant.register_rpc_method("echo", lambda data: data.payload)
    agent.local_participant.register_rpc_method("big", lambda data: "x" * 15_361)
    ok = "é" * (RPC_MAX_PAYLOAD_BYTES // 2)  # exactly the limit in UTF-8 bytes
    assert await call(cand, "echo", ok) == ok
    err = await rpc_error(cand, "echo", ok + "x")
    assert err.code == Code.REQUEST_PAYLOAD_TOO_LARGE == 1402
    assert (await rpc_error(cand, "big")).code == Code.RESPONSE_PAYLOAD_TOO_LARGE == 1504


async def test_errors_from_handlers(rooms: tuple) -> None:
    _, agent, cand = rooms

    def custom(data: rtc.RpcInvocationData) -> str:
        raise rtc.RpcError(4001, "already_ending", '{"end_id":"e1"}')

    def no_data(data: rtc.RpcInvocationData) -> str:
        raise rtc.RpcError(4002, "nope")

    def crash(data: rtc.RpcInvocationData) -> str:
        raise ValueError("boom")

    lp = agent.local_participant
    lp.register_rpc_method("custom", custom)
    lp.register_rpc_method("no_data", no_data)
    lp.register_rpc_method("crash", crash)
    err = await rpc_error(cand, "custom")
    assert (err.code, err.message, err.data) == (4001, "already_ending", '{"end_id":"e1"}')
    err = await rpc_error(cand, "no_data")
    assert (err.code, err.message, err.data) == (4002, "nope", "")  # unset data arrives as ""
    err = await rpc_error(cand, "crash")
    assert err.code == Code.APPLICATION_ERROR == 1500
    assert err.message == "Application error in method handler"


async def test_recipient_leaving_mid_call(rooms: tuple) -> None:
    _, agent, cand = rooms
    started = asyncio.Event()

    async def slow(data: rtc.RpcInvocationData) -> str:
        started.set()
        await asyncio.sleep(30)
        return "late"

    agent.local_participant.register_rpc_method("slow", slow)
    pending = asyncio.create_task(call(cand, "slow"))
    await started.wait()
    await agent.disconnect()
    with pytest.raises(rtc.RpcError) as info:
        await pending
    assert info.value.code == Code.RECIPIENT_DISCONNECTED == 1503


async def test_rpc_latency_is_applied(rooms: tuple) -> None:
    hub, agent, cand = rooms
    hub.set_rpc_delay(0.05)
    agent.local_participant.register_rpc_method("m", lambda data: "x")
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await call(cand, "m") == "x"
    assert loop.time() - start >= 0.1  # request and response each take the latency
    hub.set_rpc_delay(0.2)  # round trip 0.4 s > 0.3 s ACK budget
    assert (await rpc_error(cand, "m")).code == Code.CONNECTION_TIMEOUT


async def test_interceptors_see_calls_both_ways(rooms: tuple) -> None:
    _, agent, cand = rooms
    seen: list[str] = []

    class Tap(rtc.RpcInterceptor):
        async def intercept_outgoing(self, call_info, next):  # type: ignore[no-untyped-def]
            seen.append("out:" + call_info.method)
            return await next(call_info)

        async def intercept_incoming(self, invocation, next):  # type: ignore[no-untyped-def]
            seen.append("in:" + invocation.method)
            return await next(invocation)

    cand.local_participant.add_rpc_interceptor(Tap())
    agent.local_participant.add_rpc_interceptor(Tap())
    agent.local_participant.register_rpc_method("m", lambda data: "x")
    assert await call(cand, "m") == "x"
    assert seen == ["out:m", "in:m"]


async def test_rpc_from_a_disconnected_room_fails(rooms: tuple) -> None:
    _, agent, cand = rooms
    agent.local_participant.register_rpc_method("m", lambda data: "x")
    await cand.disconnect()
    assert (await rpc_error(cand, "m")).code == Code.SEND_FAILED
