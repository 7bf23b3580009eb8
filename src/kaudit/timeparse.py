"""How people write times, durations and months, read in one place.

- A duration: a number of seconds, or a number with a unit `s`, `m`, `h`, `d` or `w`
  (`30m`, `24h`, `7d`, `2w`): `parse_duration`.
- A time: an ISO 8601 time or date, UTC when it names no offset (`parse_iso`), or a
  duration back from now. `parse_time` reads what `kaudit search` and `kaudit report`
  take (`--since 7d`); `parse_when` the looser form `kaudit verify --since` takes.
- A month: `YYYY-MM`, as the range of time it covers: `parse_period`.

Errors are `TimeFormatError`s (a `SearchError`) whose message says what is accepted;
`parse_iso` alone raises the plain `ValueError` of `datetime.fromisoformat`, because it
also reads the timestamps of events, where a bad one is a bad event, not a bad request.
This module imports nothing of kaudit's but its errors.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Final

from kaudit.errors import TimeFormatError

DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
"""Seconds per unit of a duration."""

_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")


def parse_duration(text: str) -> float:
    """Seconds: a number with a unit (`7d`, `1.5h`, `30m`, `0s`) or without (seconds)."""
    text = text.strip()
    try:
        if text and text[-1] in DURATION_UNITS:
            seconds = float(text[:-1]) * DURATION_UNITS[text[-1]]
        else:
            seconds = float(text)
    except ValueError:
        seconds = math.nan
    # float() also reads "nan", "inf" and "1e400"; none of them is a span of time.
    if not math.isfinite(seconds):
        raise TimeFormatError(
            f"{text!r} is not a duration; use a number with s, m, h, d or w (e.g. 7d)"
        )
    return seconds


def _back_from(now: datetime | None, seconds: float, named: str) -> datetime:
    """`seconds` before `now` (or now), refused when that is outside the calendar; `named`
    is the value as the error names it."""
    try:
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    except OverflowError:
        raise TimeFormatError(
            f"{named} reaches outside the years 1 to 9999; give a shorter duration or a "
            "date (e.g. 90d, 2026-01-01)"
        ) from None


def parse_iso(text: str) -> datetime:
    """An ISO 8601 time or date (`2026-11-22T10:15:00Z`, `2026-11-22`), UTC when it names
    no offset; `ValueError` when it is not one."""
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_time(text: str, *, now: datetime | None = None, what: str = "time") -> datetime:
    """An ISO 8601 time or date (UTC when no offset is given), or a duration back from
    now, with its unit: `30m`, `24h`, `7d`, `2w`. `what` names the value in the error."""
    text = text.strip()
    if text and text[-1] in DURATION_UNITS:
        try:
            seconds = parse_duration(text)
        except TimeFormatError:
            pass
        else:
            if seconds >= 0:
                return _back_from(now, seconds, f"{what} {text!r}")
    try:
        return parse_iso(text)
    except ValueError:
        raise TimeFormatError(
            f"{what} {text!r} is neither a time nor a duration; accepted: an ISO 8601 time "
            "or date (2026-11-22T10:15:00Z, 2026-11-22) or a duration back from now "
            "(30m, 24h, 7d, 2w)"
        ) from None


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """What `kaudit verify --since/--until` reads: an ISO 8601 time (a `Z` reads as
    `+00:00`; UTC when no offset is given), else any duration `parse_duration` reads,
    back from now (a bare number is seconds; a negative one is ahead of now).

    Looser than `parse_time`, and its error is `parse_duration`'s; kept as it is so that
    what each command accepts, and what it says when it does not, stays the same."""
    try:
        return parse_iso(text.replace("Z", "+00:00"))
    except ValueError:
        return _back_from(now, parse_duration(text), repr(text))


def parse_period(text: str) -> tuple[datetime, datetime]:
    """`YYYY-MM` as [first day 00:00 UTC, first day of the next month)."""
    m = _PERIOD.match(text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise TimeFormatError(f"period {text!r} is not a month; accepted: YYYY-MM (e.g. 2026-11)")
    year, month = int(m.group(1)), int(m.group(2))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end
