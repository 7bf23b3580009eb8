"""Event ids and timestamps, made on the writer thread so the caller only reads a clock.

Event ids are `evt_` + a ULID: 26 characters of Crockford base32 over 48 bits of
milliseconds and 80 random bits, incremented within one millisecond (ULID's monotonic
mode), so ids are unique and sort in log order. Timestamps are RFC 3339 UTC with
milliseconds (`2026-11-22T10:15:30.123Z`), as in the OSO seed.
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Two base32 characters per lookup (10 bits): a fraction of the cost of a per-bit loop.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_MASK80 = (1 << 80) - 1


def _encode_time(ms: int) -> str:
    p = _PAIRS
    return (
        p[(ms >> 40) & 1023]
        + p[(ms >> 30) & 1023]
        + p[(ms >> 20) & 1023]
        + p[(ms >> 10) & 1023]
        + p[ms & 1023]
    )


def _encode_random(n: int) -> str:
    p = _PAIRS
    return "".join(
        (
            p[(n >> 70) & 1023],
            p[(n >> 60) & 1023],
            p[(n >> 50) & 1023],
            p[(n >> 40) & 1023],
            p[(n >> 30) & 1023],
            p[(n >> 20) & 1023],
            p[(n >> 10) & 1023],
            p[n & 1023],
        )
    )


class Stamper:
    """Makes event ids and timestamps; one per writer thread (not thread-safe)."""

    __slots__ = ("_ms", "_ms_prefix", "_random", "_rng", "_second", "_second_prefix")

    def __init__(self) -> None:
        # Ids need uniqueness, not secrecy: a seeded PRNG avoids a getrandom() syscall
        # per millisecond on the writer thread.
        self._rng = random.Random(os.urandom(16))
        self._second = -1
        self._second_prefix = ""
        self._ms = -1
        self._ms_prefix = ""
        self._random = 0

    def timestamp(self, time_ns: int) -> str:
        second, ms = divmod(time_ns // 1_000_000, 1000)
        if second != self._second:
            self._second = second
            self._second_prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._second_prefix}.{ms:03d}Z"

    def event_id(self, time_ns: int) -> str:
        ms = time_ns // 1_000_000
        if ms > self._ms:
            self._ms = ms
            self._ms_prefix = "evt_" + _encode_time(ms)
            self._random = self._rng.getrandbits(80)
        else:
            # Same (or, after a clock step back, an earlier) millisecond: stay monotonic.
            self._random = (self._random + 1) & _MASK80
        return self._ms_prefix + _encode_random(self._random)
