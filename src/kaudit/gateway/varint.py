"""Kafka's unsigned varints and tagged-field sections, read in place by the readers that
work on a frame's bytes without kio (produce requests and responses, Metadata).

Both raise ValueError on a varint longer than five bytes, and IndexError when the data
ends first; the callers turn either into FrameDecodeError."""

from __future__ import annotations

from kaudit.gateway.framing import Chunk


def read_uvarint(data: Chunk, pos: int) -> tuple[int, int]:
    """(value, offset after it) of the unsigned varint at `pos`."""
    byte = data[pos]
    if byte < 0x80:  # the common case: one byte
        return byte, pos + 1
    result, shift = byte & 0x7F, 7
    while True:
        pos += 1
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos + 1
        shift += 7
        if shift > 28:
            raise ValueError("varint longer than five bytes")


def skip_tagged_fields(data: Chunk, pos: int) -> int:
    """The offset after the tagged-field section at `pos` (a count, then tag, size and
    bytes of each field)."""
    if data[pos] == 0:
        return pos + 1
    count, pos = read_uvarint(data, pos)
    for _ in range(count):
        _, pos = read_uvarint(data, pos)
        size, pos = read_uvarint(data, pos)
        pos += size
    return pos
