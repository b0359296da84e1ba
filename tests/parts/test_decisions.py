"""`endcall.agent.decisions`: triggers to the machine, authorization, what an accepted end does."""

from __future__ import annotations

import pytest
from parts_fakes import make_call

from endcall.agent.decisions import Decisions, trigger_from_code
from endcall.agent.durable_end import DurableEnd
from endcall.agent.end_machine import EndState, Trigger
from endcall.agent.end_tool import GoodbyePlan
from endcall.protocol import EndRequest, Initiator, ProtocolError


def _decisions(allow: object = None) -> tuple[Decisions, list[Trigger]]:
    call = make_call()
    accepted: list[Trigger] = []

    def on_accepted(t: Trigger, _plan: GoodbyePlan | None) -> None:
        accepted.append(t)

    d = Decisions(
        call,
        sink=object(),
        durable=DurableEnd(),
        allow=allow,  # type: ignore[arg-type]
        customer=lambda: "cand",
        minimal_draft=lambda: b"{}",
        on_accepted=on_accepted,
    )
    return d, accepted


def _request(rid: str = "r1") -> EndRequest:
    return EndRequest(id=rid, reason="customer-ended-call")


async def test_the_customer_may_end_the_call() -> None:
    d, accepted = _decisions()
    ack = d.decide(_request(), origin="client", channel="rpc", caller="cand")
    assert ack.status == "accepted" and ack.id == "r1"
    assert accepted[0].initiator == Initiator(kind="customer", identity="cand")


async def test_someone_else_is_forbidden() -> None:
    d, accepted = _decisions()
    with pytest.raises(ProtocolError) as err:
        d.decide(_request(), origin="client", channel="rpc", caller="intruder")
    assert err.value.code == "forbidden" and accepted == []


async def test_an_allow_policy_that_raises_refuses() -> None:
    def allow(_caller: str, _request: EndRequest) -> bool:
        raise RuntimeError("boom")

    d, _ = _decisions(allow)
    with pytest.raises(ProtocolError):
        d.decide(_request(), origin="client", channel="data", caller="cand")


async def test_only_the_first_trigger_is_accepted() -> None:
    d, accepted = _decisions()
    d.trigger("silence-timed-out", "system", "timer")
    d.trigger("agent-error", "system", "job", error="late")
    assert [t.reason for t in accepted] == ["silence-timed-out"]
    assert d._call.machine.state is EndState.ENDING


async def test_a_failing_submit_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    d, _ = _decisions()

    def broken(_t: Trigger, _p: GoodbyePlan | None) -> None:
        raise RuntimeError("broken")

    d._on_accepted = broken
    d.trigger("agent-error", "system", "job")
    assert "failed to submit agent-error" in caplog.text


def test_trigger_from_code_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="invalid reason"):
        trigger_from_code("Not A Reason", initiator=None, request_id=None, meta=None)
    with pytest.raises(ValueError, match="request_id"):
        trigger_from_code("server-ended-call", initiator=None, request_id="no spaces", meta=None)
    t = trigger_from_code("server-ended-call", initiator="agent", request_id="x1", meta=None)
    assert t.initiator.kind == "agent" and t.channel == "api"
    assert trigger_from_code("customer-ended-call", initiator=None, request_id=None, meta=None)
