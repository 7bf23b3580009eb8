"""The one backoff policy: doubling waits, capped, jittered within [d/2, d] when asked."""

from __future__ import annotations

import pytest

from kaudit.retry import Backoff


def test_waits_double_up_to_the_cap_and_reset_starts_over() -> None:
    backoff = Backoff(0.25, 2.0)
    assert [backoff.next_wait() for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    backoff.reset()
    assert backoff.next_wait() == 0.25


def test_jittered_waits_stay_within_half_and_whole_step() -> None:
    backoff = Backoff(0.2, 30.0, jitter=True)
    steps = []
    for _ in range(12):
        step = backoff.step_s
        wait = backoff.next_wait()
        assert step / 2 <= wait <= step
        steps.append(step)
    assert steps[-1] == 30.0


@pytest.mark.parametrize(("first", "most"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_a_backoff_that_cannot_grow_is_refused(first: float, most: float) -> None:
    with pytest.raises(ValueError, match="0 < first_s <= max_s"):
        Backoff(first, most)
