"""The offset-reset rule (gateway.offsets) on its own: where a commit moves a group,
judged by what the committing client consumed and what the group had committed. The
real clients and tools are in tests/integration/test_gateway_offsets.py."""

from __future__ import annotations

from kaudit.gateway.offsets import ConsumptionPositions

CONSUMER = ("User:app", "10.0.0.5", "orders-reader")
ADMIN = ("User:ops", "10.0.0.9", "adminclient-1")


def test_commits_within_what_was_consumed_are_ordinary() -> None:
    positions = ConsumptionPositions()
    positions.reached(CONSUMER, "orders", 0, 0)  # fetch from 0
    positions.reached(CONSUMER, "orders", 0, 500)  # batches delivered up to 499
    assert positions.reset_reason(CONSUMER, "g", "orders", 0, 300)[0] is None
    positions.committed("g", "orders", 0, 300)
    assert positions.reset_reason(CONSUMER, "g", "orders", 0, 500)[0] is None
    # Re-committing where the group already is moves nothing, whoever does it.
    assert positions.reset_reason(ADMIN, "g", "orders", 0, 300)[0] is None


def test_moving_the_group_away_is_a_reset_with_its_reason() -> None:
    positions = ConsumptionPositions()
    positions.reached(CONSUMER, "orders", 0, 500)
    positions.committed("g", "orders", 0, 400)
    assert positions.reset_reason(ADMIN, "g", "orders", 0, 0) == ("not_consumed", 400, None)
    assert positions.reset_reason(CONSUMER, "g", "orders", 0, 900) == (
        "ahead_of_consumption",
        400,
        500,
    )
    assert positions.reset_reason(CONSUMER, "g", "orders", 0, 100) == (
        "behind_committed",
        400,
        500,
    )
    # Another partition, or the same partition of another client, was never consumed.
    assert positions.reset_reason(CONSUMER, "g", "orders", 1, 5)[0] == "not_consumed"


def test_positions_only_move_forward_and_the_tables_are_bounded() -> None:
    positions = ConsumptionPositions(limit=2)
    positions.reached(CONSUMER, "t", 0, 50)
    positions.reached(CONSUMER, "t", 0, 10)  # an older fetch answered late
    assert positions.reset_reason(CONSUMER, "g", "t", 0, 50)[0] is None
    positions.reached(CONSUMER, "t", 1, 1)
    positions.reached(CONSUMER, "t", 2, 1)  # the least recently used (t-0) is forgotten
    assert positions.reset_reason(CONSUMER, "g", "t", 0, 50)[0] == "not_consumed"
    positions.committed("g", "t", 0, -1)  # "no committed offset" in an OffsetFetch answer
    assert positions.reset_reason(CONSUMER, "g", "t", 2, 1)[1] is None


def test_a_member_whose_consumption_was_not_seen_is_judged_by_the_committed_offset() -> None:
    """Its fetches may have gone through another gateway instance; an admin tool is never
    a member of the group."""
    positions = ConsumptionPositions()
    positions.committed("g", "orders", 0, 400)
    assert positions.reset_reason(CONSUMER, "g", "orders", 0, 450, member=True)[0] is None
    assert positions.reset_reason(CONSUMER, "g", "orders", 0, 100, member=True)[0] == (
        "behind_committed"
    )
    assert positions.reset_reason(CONSUMER, "g", "orders", 0, 450)[0] == "not_consumed"
