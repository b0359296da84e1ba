"""Early takeover of a crash draft on LiveKit's word (issue 21): `release_scope` and the
running owner's heartbeat (`renew_draft`), on SQLite and PostgreSQL, on the database's clock.

A draft may be claimed before its lease runs out only when its scope was released (LiveKit
said the agent left) *and* its owner has not renewed it for ``quiet`` seconds; a live owner's
heartbeat keeps it, and a final report always wins."""

from __future__ import annotations

from conftest import Clock

from endcall.reports.outbox.sql import SqlOutbox

URL = "https://receiver.example/end"
A, RELAY = "host-a:1:job", "host-b:2:relay"
LEASE, QUIET = 90.0, 15.0


def draft(outbox: SqlOutbox, end_id: str, scope: str | None = "RM_1") -> None:
    assert outbox.save_draft(end_id, URL, b'{"complete":false}', owner=A, lease=LEASE, scope=scope)


def claimed(outbox: SqlOutbox) -> list[str]:
    return [r.end_id for r in outbox.claim(RELAY, limit=10, lease=300)]


def test_a_released_draft_is_claimable_once_its_owner_was_quiet(
    outbox: SqlOutbox, clock: Clock
) -> None:
    t0 = clock.now
    draft(outbox, "e_1")
    draft(outbox, "e_2", scope="RM_2")  # another room: untouched
    clock.now = t0 + 5
    assert outbox.release_scope("RM_1", QUIET) == t0 + QUIET  # last renewal + quiet
    clock.now = t0 + 14
    assert claimed(outbox) == []
    clock.now = t0 + 15
    assert claimed(outbox) == ["e_1.draft"]
    clock.now = t0 + 60
    assert claimed(outbox) == []  # e_2 keeps its 90 s lease
    clock.now = t0 + 91
    assert claimed(outbox) == ["e_2.draft"]


def test_an_owner_silent_for_long_is_claimable_at_once(outbox: SqlOutbox, clock: Clock) -> None:
    t0 = clock.now
    draft(outbox, "e_1")
    clock.now = t0 + 40
    assert outbox.release_scope("RM_1", QUIET) == t0 + 40
    assert claimed(outbox) == ["e_1.draft"]


def test_a_live_owner_keeps_its_draft_with_its_heartbeat(outbox: SqlOutbox, clock: Clock) -> None:
    """LiveKit says the agent left (its signalling was cut), but the job lives and renews."""
    t0 = clock.now
    draft(outbox, "e_1")
    clock.now = t0 + 5
    outbox.release_scope("RM_1", QUIET)
    for t in (10, 15, 20, 25):  # heartbeats every 5 s
        clock.now = t0 + t
        assert outbox.renew_draft("e_1", A, LEASE)
        assert claimed(outbox) == []
    assert not outbox.renew_draft("e_1", RELAY, LEASE)  # only its owner renews it


def test_the_final_report_wins_and_nothing_is_left_to_release(
    outbox: SqlOutbox, clock: Clock
) -> None:
    draft(outbox, "e_1")
    assert outbox.store("e_1", URL, b'{"complete":true}', owner=A, lease=LEASE) == "stored"
    assert outbox.release_scope("RM_1", QUIET) is None
    assert not outbox.renew_draft("e_1", A, LEASE)  # no draft any more
    clock.now += 200
    assert claimed(outbox) == ["e_1"]  # the final report, never a draft


def test_a_taken_draft_is_not_renewed_and_the_final_report_still_goes(
    outbox: SqlOutbox, clock: Clock
) -> None:
    """The agent was only stalled: it comes back after the takeover."""
    t0 = clock.now
    draft(outbox, "e_1")
    clock.now = t0 + 30
    outbox.release_scope("RM_1", QUIET)
    assert claimed(outbox) == ["e_1.draft"]
    assert not outbox.renew_draft("e_1", A, LEASE)
    assert not outbox.save_draft("e_1", URL, b"{}", owner=A, lease=LEASE, scope="RM_1")
    assert outbox.store("e_1", URL, b'{"complete":true}', owner=A, lease=0) == "stored"
    assert "e_1" in claimed(outbox)  # receivers keep the final one (protocol.md §6)


def test_scope_is_kept_when_a_checkpoint_names_none(outbox: SqlOutbox, clock: Clock) -> None:
    draft(outbox, "e_1")
    draft(outbox, "e_1", scope=None)
    clock.now += 30
    assert outbox.release_scope("RM_1", QUIET) is not None


def test_releasing_a_room_releases_its_agents_and_an_agent_only_itself(
    outbox: SqlOutbox, clock: Clock
) -> None:
    """Scopes nest with "/": the agent's drafts are "<room sid>/<identity>"; a participant_left
    releases that agent's, a room_finished (or a room RoomService no longer lists) the room's."""
    t0 = clock.now
    draft(outbox, "e_1", scope="RM_1/agent-AJ_1")
    draft(outbox, "e_2", scope="RM_1/agent-AJ_2")  # a second agent in the same room
    draft(outbox, "e_3", scope="RM_10/agent-AJ_3")  # a room whose sid starts alike
    clock.now = t0 + 40
    assert outbox.release_scope("RM_1/agent-AJ_1", QUIET) == t0 + 40
    assert claimed(outbox) == ["e_1.draft"]
    assert outbox.release_scope("RM_1/agent-AJ", QUIET) is None  # a prefix, not a scope
    assert outbox.release_scope("RM_1", QUIET) == t0 + 40
    assert claimed(outbox) == ["e_2.draft"]  # never RM_10's
    clock.now = t0 + 91
    assert claimed(outbox) == ["e_3.draft"]


def test_silent_scopes_name_only_held_drafts_whose_owner_stopped_renewing(
    outbox: SqlOutbox, clock: Clock
) -> None:
    """What a relay without LiveKit's webhooks asks RoomService about: the drafts of dead or
    stalled owners — never a live one (it renews every 5 s), a finished one, or one without
    a scope."""
    t0 = clock.now
    draft(outbox, "e_live", scope="RM_1/agent-live")
    draft(outbox, "e_dead", scope="RM_2/agent-dead")
    draft(outbox, "e_old", scope="RM_3/agent-old")
    draft(outbox, "e_none", scope=None)
    draft(outbox, "e_done", scope="RM_4/agent-done")
    assert outbox.store("e_done", URL, b'{"complete":true}', owner=A, lease=LEASE) == "stored"
    clock.now = t0 + 2
    draft(outbox, "e_old", scope=None)  # a checkpoint: silent from t0 + 2 on, scope kept
    assert outbox.silent_scopes(QUIET) == []
    for t in (5, 10, 15, 20):
        clock.now = t0 + t
        assert outbox.renew_draft("e_live", A, LEASE)
    assert outbox.silent_scopes(QUIET) == ["RM_2/agent-dead", "RM_3/agent-old"]
    assert outbox.silent_scopes(QUIET, limit=1) == ["RM_2/agent-dead"]  # the longest silent
    clock.now = t0 + 95  # past the lease: the relays claim it anyway, nothing to ask
    assert outbox.renew_draft("e_live", A, LEASE)
    assert outbox.silent_scopes(QUIET) == []
