"""Produce requests are summarised in place (records skipped): the summary matches what
kio decodes from the same bytes, however the frame was cut into pieces."""

from __future__ import annotations

import contextlib
import importlib
import struct
import uuid
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from kaudit_gateway_frames import batch, split
from kio.index import load_request_schema
from kio.static.primitive import i16, i32, i32Timedelta

from kaudit.gateway.codec import FrameDecodeError, decode_request, encode_request
from kaudit.gateway.fetch import count_records
from kaudit.gateway.produce import produce_head, summarize_produce_request


def produce_frame(version: int, acks: int, topics: list[tuple[Any, list[bytes | None]]]) -> bytes:
    schema = load_request_schema(0, version)
    module = importlib.import_module(schema.__module__)
    header_schema = schema.__header_schema__
    header = header_schema(
        request_api_key=i16(0),
        request_api_version=i16(version),
        correlation_id=i32(5),
        client_id="svc-a",
    )
    body = schema(
        transactional_id="tx-1" if version % 2 else None,
        acks=i16(acks),
        timeout=i32Timedelta.parse(timedelta(seconds=30)),
        topic_data=tuple(
            module.TopicProduceData(
                **({"topic_id": ident} if version >= 13 else {"name": ident}),
                partition_data=tuple(
                    module.PartitionProduceData(index=i32(n), records=records)
                    for n, records in enumerate(parts)
                ),
            )
            for ident, parts in topics
        ),
    )
    return encode_request(header, body)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([3, 8, 9, 12, 13]),
    st.sampled_from([0, 1, -1]),
    st.lists(st.integers(0, 10_000), max_size=8),
    st.lists(st.tuples(st.integers(0, 50), st.integers(0, 300)), min_size=1, max_size=4),
)
def test_summary_matches_kio_however_the_frame_is_cut(
    version: int, acks: int, cuts: list[int], batches: list[tuple[int, int]]
) -> None:
    records = b"".join(batch(n, size) for n, size in batches)
    ident: Any = uuid.uuid4() if version >= 13 else "orders"
    frame = produce_frame(version, acks, [(ident, [records, None, records[:70]])])
    pieces = split(frame, cuts)
    summary = summarize_produce_request(pieces, version)
    decoded = decode_request(frame[4:])
    assert summary.client_id == decoded.client_id == "svc-a"
    assert summary.acks == acks == int(decoded.body.acks)
    assert summary.transactional_id == decoded.body.transactional_id
    [topic] = summary.topics
    assert topic.topic == ident
    assert topic.records == count_records(records) + count_records(records[:70])
    assert topic.nbytes == len(records) + min(70, len(records))
    assert produce_head(pieces, version) == ("svc-a", acks)


def test_a_head_that_has_not_arrived_is_a_decode_error() -> None:
    frame = produce_frame(9, 1, [("t", [batch(3, 10)])])
    for version, pieces in ((9, [frame[:14]]), (2, [frame]), (14, [frame])):
        try:
            produce_head(pieces, version)
        except FrameDecodeError:
            continue
        raise AssertionError(f"accepted v{version} {len(pieces[0])} bytes")


@settings(max_examples=200)
@given(st.binary(max_size=300), st.sampled_from([3, 9, 13]))
def test_arbitrary_bytes_are_summarised_or_refused(data: bytes, version: int) -> None:
    frame = struct.pack(">ihhi", len(data) + 8, 0, version, 1) + data
    with contextlib.suppress(FrameDecodeError):
        summarize_produce_request([frame], version)
