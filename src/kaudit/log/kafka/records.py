"""How the lines of a batch become the Kafka log's records.

A record holds lines of one partition, in sequence order, joined by newlines: at most
`RECORD_LINES` lines and about `RECORD_BYTES` bytes. A producer then makes a few records
per batch instead of one per event (the largest cost of writing was produce() per event,
and the broker's work per record). A key goes to the partition librdkafka's default
partitioner would give it (CRC32 of the key), so one resource's events stay in order in
one partition; lines without a key are spread over the partitions.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence

RECORD_LINES = 256
RECORD_BYTES = 256 * 1024


def records(
    lines: Sequence[bytes], keys: Sequence[bytes] | None, todo: list[int], partitions: int
) -> Iterator[tuple[int, list[int]]]:
    """(partition, indexes of the lines of one record) for the lines `todo` (indexes
    into `lines`, in order) over a topic of `partitions` partitions."""
    by_partition: dict[int, list[int]] = {}
    if keys is not None:
        crc32 = zlib.crc32
        for i in todo:
            partition = crc32(keys[i]) % partitions
            indexes = by_partition.get(partition)
            if indexes is None:
                by_partition[partition] = [i]
            else:
                indexes.append(i)
    else:
        for n, i in enumerate(todo):
            by_partition.setdefault(n % partitions, []).append(i)
    size_of = lines.__getitem__
    for partition, indexes in by_partition.items():
        start = 0
        while start < len(indexes):
            chunk = indexes[start : start + RECORD_LINES]
            if sum(map(len, map(size_of, chunk))) > RECORD_BYTES:
                chunk = _first_bytes(chunk, lines)
            yield partition, chunk
            start += len(chunk)


def _first_bytes(chunk: list[int], lines: Sequence[bytes]) -> list[int]:
    """The first lines of `chunk` that fit in `RECORD_BYTES` (at least one)."""
    size = 0
    for n, i in enumerate(chunk):
        size += len(lines[i])
        if n and size > RECORD_BYTES:
            return chunk[:n]
    return chunk


def record_value(lines: list[bytes]) -> bytes:
    """One record's value: its lines joined by newlines, without a newline at the end.
    The recorder's lines each end in one, so they are joined as they are, all but the
    last: one copy of the record instead of one per line. (`lines` is the caller's
    list of this record's lines, which this may change.)"""
    last = lines[-1]
    if last[-1:] == b"\n":
        lines[-1] = last[:-1]
    value = b"".join(lines)
    if value.count(b"\n") == len(lines) - 1:
        return value
    # Some line ended without a newline (JSON lines hold none inside): join them by one.
    lines[-1] = last
    return b"\n".join(line[:-1] if line[-1:] == b"\n" else line for line in lines)
