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

from hypothesis import given, settings
from hypothesis import strategies as st
from kaudit_gateway_frames import batch, split
from kio.index import load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_writer
from kio.static.primitive import i32, i32Timedelta, i64

from kaudit.gateway.codec import FrameDecodeError
from kaudit.gateway.fetch import count_records, summarize_fetch_response


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
