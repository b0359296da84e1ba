"""Early takeover, as properties (issue 21): whatever the order of heartbeats, LiveKit's word
(`release_scope`, right or wrong), the relays' claims, the final report and the clock — a live
owner's draft is never claimed, a stored final report is never overtaken by its draft, and a
dead owner's draft is claimed on LiveKit's word after the quiet, or after its lease without it."""

from __future__ import annotations

import itertools
from pathlib import Path

from conftest import Clock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from endcall.reports.outbox import SqliteOutbox

URL = "https://receiver.example/end"
OWNER, RELAY = "host-a:1:job", "host-b:2:relay"
LEASE, QUIET, HEARTBEAT = 90.0, 15.0, 5.0
SCOPE = "RM_1/agent-a"

#: what can happen between two looks: time passes (at most one heartbeat while the owner lives),
#: LiveKit says the agent left (true or not: its signalling may just be cut), the owner dies
#: or stalls (stops renewing), comes back, or stores its final report; a relay tries to claim
Step = tuple[str, float]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.floats(0.0, HEARTBEAT)),
        st.tuples(st.just("long_wait"), st.floats(HEARTBEAT, 120.0)),
        st.tuples(
            st.sampled_from(["livekit_says_gone", "die", "come_back", "final", "claim"]),
            st.just(0.0),
        ),
    ),
    max_size=40,
)

_n = itertools.count()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps)
def test_takeover_never_overtakes_a_live_owner_or_a_final_report(
    tmp_path: Path, script: list[Step]
) -> None:
    clock = Clock()
    outbox = SqliteOutbox(tmp_path / f"p{next(_n)}.sqlite3", clock=clock)
    try:
        assert outbox.save_draft(
            "e_1", URL, b'{"complete":false}', owner=OWNER, lease=LEASE, scope=SCOPE
        )
        alive, final, taken = True, False, False
        last_renewal = clock.now
        released_at: float | None = None  # when LiveKit last said the agent left
        for action, dt in script:
            if action in ("wait", "long_wait"):
                if alive and dt > HEARTBEAT:
                    continue  # a live owner renews at least every heartbeat: not this step
                clock.now += dt
            elif action == "livekit_says_gone":
                outbox.release_scope(SCOPE.split("/")[0], QUIET)
                released_at = clock.now
            elif action == "die":
                alive = False
            elif action == "come_back" and not alive:
                alive = True  # a stalled owner: its first heartbeat is due at once
                if not final and not taken and outbox.renew_draft("e_1", OWNER, LEASE):
                    last_renewal = clock.now
                elif not final and not taken:
                    taken = True  # a relay claimed it while the owner stalled
            elif action == "final" and alive and not final:
                outbox.store("e_1", URL, b'{"complete":true}', owner=OWNER, lease=LEASE)
                final = True
            elif action == "claim":
                got = [r.end_id for r in outbox.claim(RELAY, limit=5, lease=300)]
                for end_id in got:  # a relay that claims sends, and records it
                    outbox.mark_delivered(end_id, RELAY, 200)
                if "e_1.draft" in got:
                    assert not final, "a draft was sent after its final report was stored"
                    assert clock.now - last_renewal >= min(QUIET, LEASE), "a live owner lost it"
                    taken = True
                silent = clock.now - last_renewal
                due_by_lease = silent >= LEASE
                due_by_word = released_at is not None and released_at >= last_renewal
                due_by_word = due_by_word and silent >= QUIET
                if not final and not taken and (due_by_lease or due_by_word):
                    raise AssertionError(f"a dead owner's draft was not claimed ({silent:.1f} s)")
            # the heartbeat: due every 5 s, so a live owner is silent for less than 10 s
            if alive and clock.now - last_renewal >= HEARTBEAT:
                if not final and not taken:
                    assert outbox.renew_draft("e_1", OWNER, LEASE)
                    last_renewal = clock.now
                elif taken:
                    assert not outbox.renew_draft("e_1", OWNER, LEASE)  # taken: never renewed
    finally:
        outbox.close()
