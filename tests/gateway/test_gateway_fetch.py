"""Fetch responses are summarised in place (records skipped): the summary matches what
kio decodes from the same bytes, however the frame was cut into pieces."""

from __future__ import annotations

import contextlib
import importlib
import io
import struct
import uuid
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kaudit_gateway_frames import batch, split
from kio.index import load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_writer
from kio.static.primitive import i32, i32Timedelta, i64

from kaudit.gateway.codec import FrameDecodeError
from kaudit.gateway.fetch import Pieces, count_records, summarize_fetch_response


def fetch_frame(version: int, topics: list[tuple[Any, list[tuple[int, bytes | None]]]]) -> bytes:
    schema = load_response_schema(1, version)
    # The nested classes live in the same generated module as the response.
    module = importlib.import_module(schema.__module__)
    FetchableTopicResponse = module.FetchableTopicResponse
    PartitionData = module.PartitionData
    body = schema(
        throttle_time=i32Timedelta.parse(timedelta(0)),
        error_code=ErrorCode.none,
        session_id=i32(0),
        responses=tuple(
            FetchableTopicResponse(
                **({"topic_id": ident} if version >= 13 else {"topic": ident}),
                partitions=tuple(
                    PartitionData(
                        partition_index=i32(n),
                        error_code=ErrorCode(code),
                        high_watermark=i64(10),
                        aborted_transactions=None,
                        records=records,
                    )
                    for n, (code, records) in enumerate(parts)
                ),
            )
            for ident, parts in topics
        ),
    )
    out = io.BytesIO()
    out.write(b"\0\0\0\0")
    header_schema = schema.__header_schema__
    header = header_schema(correlation_id=i32(9))
    entity_writer(header_schema)(out, header)
    entity_writer(schema)(out, body)
    data = bytearray(out.getvalue())
    struct.pack_into(">i", data, 0, len(data) - 4)
    return bytes(data)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([7, 11, 12, 13, 15]),
    st.lists(st.integers(0, 10_000), max_size=8),
    st.lists(st.tuples(st.integers(0, 50), st.integers(0, 300)), min_size=1, max_size=4),
)
def test_summary_matches_kio_however_the_frame_is_cut(
    version: int, cuts: list[int], batches: list[tuple[int, int]]
) -> None:
    records = b"".join(batch(n, size) for n, size in batches)
    ident: Any = uuid.uuid4() if version >= 13 else "orders"
    frame = fetch_frame(version, [(ident, [(0, records), (29, None), (0, records[:70])])])
    summary = summarize_fetch_response(split(frame, cuts), version)
    [topic] = summary.topics
    assert topic.topic == ident
    assert topic.error_codes == [0, 29, 0]
    assert topic.records == count_records(records) + count_records(records[:70])
    assert topic.nbytes == len(records) + min(70, len(records))


def test_truncated_and_unsupported_responses_are_decode_errors() -> None:
    frame = fetch_frame(12, [("t", [(0, batch(3, 10))])])
    for pieces, version in (([frame[:30]], 12), ([frame], 16), ([frame], 3)):
        try:
            summarize_fetch_response(pieces, version)
        except FrameDecodeError:
            continue
        raise AssertionError(f"accepted {version}")


@settings(max_examples=200)
@given(st.binary(max_size=300), st.sampled_from([7, 12, 13, 15]))
def test_arbitrary_bytes_are_summarised_or_refused(data: bytes, version: int) -> None:
    with contextlib.suppress(FrameDecodeError):
        summarize_fetch_response([struct.pack(">ii", len(data) + 4, 1) + data], version)


def test_a_negative_length_is_refused_instead_of_moving_the_reader_back() -> None:
    # Taking a negative length used to return b"" and move the position back, so a
    # peer's frame could make the summariser read the same bytes again and again.
    reader = Pieces([b"0123456789"], 6)
    with pytest.raises(FrameDecodeError, match="negative length -4"):
        reader.take(-4)
    assert reader.pos == 6
    assert bytes(reader.take(2)) == b"67"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("version", [4, 11, 12])
def test_a_fetch_response_with_a_negative_topic_name_length_is_refused(version: int) -> None:
    flexible = version >= 12
    body = bytearray(struct.pack(">i", 7))  # correlation id
    if flexible:
        body += b"\x00"  # no tagged fields in the response header
    body += struct.pack(">i", 0)  # throttle_time_ms
    if version >= 7:
        body += struct.pack(">hi", 0, 0)  # error_code, session_id
    if flexible:
        body += b"\xff\xff\xff\xff\x07"  # topics: 2**31 - 1 as a compact array (n + 1)
        body += b"\x00"  # a compact string length of 0 means -1
    else:
        body += struct.pack(">i", 2**31 - 1) + struct.pack(">h", -6)
    body += b"\x01" * 40
    frame = struct.pack(">i", len(body)) + bytes(body)
    with pytest.raises(FrameDecodeError, match="negative length"):
        summarize_fetch_response([frame], version)
