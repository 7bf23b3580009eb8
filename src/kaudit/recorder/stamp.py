"""Event ids and timestamps, made on the writer thread so the caller only reads a clock.

Event ids are `evt_` + a ULID: 26 characters of Crockford base32 over 48 bits of
milliseconds and 80 random bits, incremented within one millisecond (ULID's monotonic
mode), so ids are unique and sort in log order. Timestamps are RFC 3339 UTC with
milliseconds (`2026-11-22T10:15:30.123Z`), as in the OSO seed.

A writer stamps a batch at once (`Stamper.stamps`): the bytes of each event's timestamp
and id, made once per millisecond where they repeat, in one loop.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from datetime import UTC, datetime

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Two base32 characters per lookup (10 bits): a fraction of the cost of a per-bit loop.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_PAIR_BYTES = [pair.encode() for pair in _PAIRS]
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

    def __init__(self, seed: bytes | None = None) -> None:
        # Ids need uniqueness, not secrecy: a seeded PRNG avoids a getrandom() syscall
        # per millisecond on the writer thread. (`seed` is for tests that compare ids.)
        self._rng = random.Random(os.urandom(16) if seed is None else seed)
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

    def stamps(self, times_ns: Sequence[int]) -> tuple[list[bytes], list[bytes]]:
        """The timestamps and event ids, as bytes, of events that happened at `times_ns`,
        in order: what `timestamp` and `event_id` give one at a time. Events a few
        microseconds apart share their millisecond, so what only changes with it is made
        once; within one millisecond an id only counts up, so its last 20 bits are the
        only part encoded again (the first 60 when they carry)."""
        pairs = _PAIR_BYTES
        timestamps: list[bytes] = []
        ids: list[bytes] = []
        add_timestamp, add_id = timestamps.append, ids.append
        stamp_ms, stamp = -1, b""
        id_ms, rnd = self._ms, self._random
        high, id_head = -1, b""  # the random part's first 60 bits, and the id up to their end
        for time_ns in times_ns:
            ms = time_ns // 1_000_000
            if ms != stamp_ms:
                stamp_ms, stamp = ms, self.timestamp(time_ns).encode()
            add_timestamp(stamp)
            if ms > id_ms:
                id_ms, rnd, high = ms, self._rng.getrandbits(80), -1
            else:
                rnd = (rnd + 1) & _MASK80
            if rnd >> 20 != high:
                high = rnd >> 20
                id_head = b"".join(
                    (
                        b"evt_",
                        _encode_time(id_ms).encode(),
                        pairs[(rnd >> 70) & 1023],
                        pairs[(rnd >> 60) & 1023],
                        pairs[(rnd >> 50) & 1023],
                        pairs[(rnd >> 40) & 1023],
                        pairs[(rnd >> 30) & 1023],
                        pairs[(rnd >> 20) & 1023],
                    )
                )
            add_id(id_head + pairs[(rnd >> 10) & 1023] + pairs[rnd & 1023])
        if id_ms != self._ms:
            self._ms, self._ms_prefix = id_ms, "evt_" + _encode_time(id_ms)
        self._random = rnd
        return timestamps, ids
