"""The pure state machine, the attribute writer and the timers, without a session."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from endcall.agent.attributes import AttributeWriter
from endcall.agent.end_machine import EndMachine, EndState, Trigger, initiator_kind_for, new_end_id
from endcall.agent.timers import MaxDurationTimer
from endcall.protocol import Initiator, encode_ack, is_valid_id, parse_ack


def trig(reason: str = "customer-ended-call", rid: str | None = "r1", **kw: Any) -> Trigger:
    return Trigger(
        reason=reason,
        initiator=Initiator(kind=initiator_kind_for(reason)),
        channel="rpc",
        request_id=rid,
        **kw,
    )


def test_first_accepted_trigger_wins_and_sets_the_record() -> None:
    m = EndMachine(drain_ms=1234, clock=lambda: 100.0)
    assert m.state is EndState.ACTIVE and m.record.reason is None
    v = m.submit(trig(meta={"a": 1}, at=99.0))
    assert v.accepted and v.ack.status == "accepted" and v.ack.drain_ms == 1234
    rec = m.record
    assert (rec.state, rec.reason, rec.request_id, rec.meta) == (
        EndState.ENDING,
        "customer-ended-call",
        "r1",
        {"a": 1},
    )
    assert (rec.requested_at, rec.acked_at, rec.channel) == (99.0, 100.0, "rpc")
    late = m.submit(trig("worker-shutdown", "w1"))
    assert not late.accepted and late.ack.status == "already_ending"
    assert late.ack.reason == "customer-ended-call" and late.ack.end_id == rec.end_id
    assert m.record.reason == "customer-ended-call"
    m.finish()
    assert m.state is EndState.ENDED and m.record.ended_at == 100.0
    assert m.submit(trig(rid="r9")).ack.status == "already_ended"


def test_a_request_id_always_gets_the_same_ack() -> None:
    m = EndMachine(drain_ms=10)
    first = m.submit(trig(rid="dup")).ack
    m.submit(trig(rid="other"))
    m.finish()
    again = m.submit(trig("customer-tab-closed", "dup"))
    assert again.replayed and again.ack == first
    assert encode_ack(again.ack) == encode_ack(first)


def test_triggers_without_request_id_get_a_valid_generated_one() -> None:
    m = EndMachine(drain_ms=0)
    ack = m.submit(trig("exceeded-max-duration", None)).ack
    assert is_valid_id(ack.id) and parse_ack(encode_ack(ack)) == ack


def test_end_id_is_fixed_per_session_and_valid() -> None:
    m = EndMachine(drain_ms=0)
    ids = {m.submit(trig(rid=f"r{i}")).ack.end_id for i in range(5)}
    assert ids == {m.end_id} and is_valid_id(m.end_id)
    assert new_end_id() != new_end_id()
    with pytest.raises(ValueError):
        EndMachine(drain_ms=0, end_id="bad id")
    with pytest.raises(ValueError):
        EndMachine(drain_ms=-1)


def test_note_only_fills_unset_fields() -> None:
    m = EndMachine(drain_ms=0)
    m.submit(trig(error="boom"))
    m.note(error="later", disconnect_reason="CLIENT_INITIATED")
    assert m.record.error == "boom" and m.record.disconnect_reason == "CLIENT_INITIATED"


def test_remembered_acks_are_bounded() -> None:
    m = EndMachine(drain_ms=0, max_remembered=10)
    for i in range(1000):
        m.submit(trig(rid=f"r{i}"))
    assert len(m._acks) == 10
    assert m.submit(trig(rid="r999")).replayed


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["r1", "r2", "r3", None]),
            st.sampled_from(
                ["customer-ended-call", "worker-shutdown", "room-deleted", "agent-error"]
            ),
            st.booleans(),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_any_sequence_has_one_reason_and_stable_acks(
    ops: list[tuple[str | None, str, bool]],
) -> None:
    m = EndMachine(drain_ms=5)
    seen: dict[str, Any] = {}
    accepted = 0
    for rid, reason, finish in ops:
        v = m.submit(trig(reason, rid))
        accepted += v.accepted
        assert v.ack.reason == m.record.reason == ops[0][1]
        if rid is not None:
            assert seen.setdefault(rid, v.ack) == v.ack
        if finish:
            m.finish()
    assert accepted == 1


def test_initiator_kinds() -> None:
    assert initiator_kind_for("customer-tab-closed") == "customer"
    assert initiator_kind_for("assistant-ended-call") == "agent"
    assert initiator_kind_for("room-deleted") == "server"
    assert initiator_kind_for("worker-shutdown") == "system"


class _SlowFailing:
    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.calls: list[dict[str, str]] = []
        self.fail, self.delay = fail, delay

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self.calls.append(dict(attributes))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise PermissionError("no can_update_metadata")


async def test_attribute_writer_never_blocks_and_coalesces() -> None:
    target = _SlowFailing(delay=0.05)
    w = AttributeWriter(target)
    w.update({"endcall.state": "ending"})  # returns at once, merged with what follows
    w.update({"endcall.reason": "customer-ended-call"})
    await asyncio.sleep(0.01)  # the first write is in flight
    w.update({"endcall.request_id": "r1"})
    w.update({"endcall.state": "ended"})
    assert await w.wait_idle(2)
    assert target.calls == [
        {"endcall.state": "ending", "endcall.reason": "customer-ended-call"},
        {"endcall.request_id": "r1", "endcall.state": "ended"},
    ]
    assert w.written == {
        "endcall.state": "ended",
        "endcall.request_id": "r1",
        "endcall.reason": "customer-ended-call",
    }


async def test_attribute_writer_without_permission_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = AttributeWriter(_SlowFailing(fail=True))
    for i in range(5):
        w.update({"endcall.request_id": f"r{i}"})
        await w.wait_idle(1)
    assert sum("cannot set participant attributes" in r.message for r in caplog.records) == 1
    w.close()
    w.update({"x": "y"})  # closed: ignored, no error


async def test_attribute_writer_bounds_a_hanging_call() -> None:
    class Hang:
        async def set_attributes(self, attributes: dict[str, str]) -> None:
            await asyncio.sleep(3600)

    w = AttributeWriter(Hang(), timeout=0.05)
    w.update({"a": "b"})
    assert await w.wait_idle(1)


async def test_max_duration_timer() -> None:
    fired: list[int] = []
    t = MaxDurationTimer(0.05, lambda: fired.append(1))
    t.start()
    t.start()
    await asyncio.sleep(0.15)
    assert fired == [1]
    c = MaxDurationTimer(0.05, lambda: fired.append(2))
    c.start()
    c.cancel()
    await asyncio.sleep(0.1)
    assert fired == [1]
    with pytest.raises(ValueError):
        MaxDurationTimer(0, lambda: None)


@settings(max_examples=300, deadline=None)
@given(
    rid=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    status=st.sampled_from(["accepted", "already_ending", "already_ended"]),
    reason=st.sampled_from(["customer-ended-call", "silence-timed-out", "x.custom-1"]),
    drain_ms=st.integers(min_value=0, max_value=2**53 - 1),
)
def test_channel_ack_template_is_byte_identical_to_encode_ack(
    rid: str, status: str, reason: str, drain_ms: int
) -> None:
    from endcall.agent.channels import Channels
    from endcall.protocol import EndAck

    channels = Channels.__new__(Channels)
    channels._templates = {}
    ack = EndAck(id=rid, status=status, end_id="e_abc", reason=reason, drain_ms=drain_ms)  # type: ignore[arg-type]
    assert channels._encode_ack(ack) == encode_ack(ack)
    other = EndAck(id="zz", status=ack.status, end_id="e_abc", reason=reason, drain_ms=drain_ms)
    assert channels._encode_ack(other) == encode_ack(other)  # from the cached template


def test_a_held_trigger_waits_and_any_other_trigger_replaces_it() -> None:
    m = EndMachine(drain_ms=5, clock=lambda: 100.0)
    left = trig("customer-disconnected", None, disconnect_reason="CLIENT_INITIATED", at=90.0)
    assert m.hold(left)
    assert m.state is EndState.ACTIVE and m.held == left
    # a second tentative one only completes the first
    assert not m.hold(trig("customer-disconnected", None, error="x"))
    assert m.held is not None and m.held.error == "x"
    v = m.submit(trig("customer-tab-closed", "b1", meta={"m": 1}))
    assert v.accepted and v.ack.reason == "customer-tab-closed" and v.ack.drain_ms == 5
    rec = m.record
    assert (rec.reason, rec.request_id, rec.meta) == ("customer-tab-closed", "b1", {"m": 1})
    assert rec.disconnect_reason == "CLIENT_INITIATED"  # kept from the leave
    assert m.take_held() is None and m.held is None
    assert not m.hold(left)  # not active any more


def test_a_held_trigger_is_accepted_when_taken_back() -> None:
    m = EndMachine(drain_ms=0, clock=lambda: 100.0)
    left = trig("customer-disconnected", None, disconnect_reason="CLIENT_INITIATED", at=90.0)
    assert m.hold(left)
    held = m.take_held()
    assert held == left and m.held is None
    v = m.submit(held)
    assert v.accepted and m.record.requested_at == 90.0 and m.record.acked_at == 100.0
    assert m.record.disconnect_reason == "CLIENT_INITIATED"
