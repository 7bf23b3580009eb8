"""Kafka bytes for the gateway's tests: frames, record batches, frames cut into pieces."""

from __future__ import annotations

import itertools
import struct


def frame(payload: bytes) -> bytes:
    """`payload` as a Kafka frame (its 4-byte size first)."""
    return struct.pack(">i", len(payload)) + payload


def batch(records: int, payload: int | bytes) -> bytes:
    """A v2 record batch header (61 bytes) with `records` as its count, then `payload`
    (those bytes, or that many)."""
    body = payload if isinstance(payload, bytes) else b"p" * payload
    length = 49 + len(body)
    head = struct.pack(">qiib", 0, length, 0, 2) + b"\0" * 40 + struct.pack(">i", records)
    return head + body


def split(frame: bytes, cuts: list[int]) -> list[bytes]:
    """`frame` cut at the offsets `cuts` (modulo its length) into non-empty pieces."""
    points = sorted({0, len(frame), *(c % len(frame) for c in cuts)})
    return [frame[a:b] for a, b in itertools.pairwise(points) if b > a]
