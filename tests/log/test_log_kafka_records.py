"""How a batch's lines become the Kafka log's records (kaudit.log.kafka.records): one
partition's lines in order, bounded in lines and bytes, joined by single newlines."""

from __future__ import annotations

import zlib

from kaudit.log.kafka.records import RECORD_BYTES, RECORD_LINES, record_value, records


def test_a_resource_keeps_its_partition_and_its_order_in_bounded_records() -> None:
    keys = [f"topic:t{i % 7}".encode() for i in range(3000)]
    lines = [b'{"n":%d}\n' % i for i in range(3000)]
    seen: dict[int, list[int]] = {}
    for partition, chunk in records(lines, keys, list(range(3000)), 6):
        assert 0 < len(chunk) <= RECORD_LINES
        assert all(zlib.crc32(keys[i]) % 6 == partition for i in chunk)
        seen.setdefault(partition, []).extend(chunk)
    for indexes in seen.values():
        assert indexes == sorted(indexes)
    assert sorted(i for indexes in seen.values() for i in indexes) == list(range(3000))


def test_large_lines_are_split_by_bytes_and_a_larger_line_is_a_record_of_its_own() -> None:
    big = b"x" * (RECORD_BYTES // 3) + b"\n"
    lines = [big] * 7 + [b"y" * (RECORD_BYTES + 10) + b"\n", big]
    chunks = [chunk for _, chunk in records(lines, None, list(range(9)), 1)]
    assert chunks == [[0, 1], [2, 3], [4, 5], [6], [7], [8]]


def test_a_value_is_its_lines_joined_by_one_newline_with_or_without_their_own() -> None:
    assert record_value([b"a\n", b"b\n"]) == b"a\nb"
    assert record_value([b"a\n"]) == b"a"
    assert record_value([b"a", b"b\n", b"c"]) == b"a\nb\nc"
    assert record_value([b"a\n", b"b"]) == b"a\nb"
