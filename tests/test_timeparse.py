"""How people write times and durations: what is read, and what is refused with a message
that says what is accepted (never a traceback from float() or datetime arithmetic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kaudit.errors import TimeFormatError
from kaudit.timeparse import parse_duration, parse_time, parse_when

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e400", "nand", "infh", "1e400s"])
def test_a_duration_that_is_not_finite_is_refused(text: str) -> None:
    with pytest.raises(TimeFormatError, match="is not a duration; use a number with"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["99999999999d", "-99999999999d", "1e15"])
def test_a_time_outside_the_calendar_is_refused_with_what_to_give(text: str) -> None:
    with pytest.raises(TimeFormatError, match="outside the years 1 to 9999; give a shorter"):
        parse_when(text, now=NOW)
    if not text.startswith("-"):
        with pytest.raises(
            TimeFormatError, match=r"--since .* reaches outside the years 1 to 9999"
        ):
            parse_time(text if text[-1].isalpha() else text + "s", now=NOW, what="--since")


def test_ordinary_durations_and_times_still_read() -> None:
    assert parse_duration("1.5h") == 5400
    assert parse_when("-5", now=NOW) == NOW + timedelta(seconds=5)
    assert parse_time("7d", now=NOW) == NOW - timedelta(days=7)
    assert parse_time("2026-11-22", now=NOW) == datetime(2026, 11, 22, tzinfo=UTC)
