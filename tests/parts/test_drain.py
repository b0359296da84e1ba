"""`endcall.agent.drain`: the goodbye, the interruption of a customer end, running tool calls."""

from __future__ import annotations

from typing import Any

from parts_fakes import FakeSession, trigger

from endcall.agent.drain import drain
from endcall.agent.end_tool import GoodbyePlan


class Session(FakeSession):
    def __init__(self) -> None:
        super().__init__()
        self.interrupted = 0

    def interrupt(self, *, force: bool = False) -> Any:
        self.interrupted += 1
        return _done()


async def _done() -> None:
    return None


async def _drain(
    session: Session, kind: Any, plan: GoodbyePlan | None, *, closing: bool = False
) -> None:
    await drain(
        session,
        trigger("x-end", kind),
        plan,
        interrupt_on_customer_end=True,
        tool_name="end_call",
        closing=lambda: closing,
    )


async def test_a_customer_end_interrupts_and_says_nothing() -> None:
    session = Session()
    await _drain(session, "customer", None)
    assert session.interrupted == 1 and session.said == []


async def test_an_agent_end_says_its_goodbye_without_interrupting() -> None:
    session = Session()
    await _drain(session, "system", GoodbyePlan(say="Goodbye!"))
    assert session.interrupted == 0 and session.said == ["Goodbye!"]


async def test_no_goodbye_once_the_session_closes() -> None:
    session = Session()
    await _drain(session, "system", GoodbyePlan(say="Goodbye!"), closing=True)
    assert session.said == []
