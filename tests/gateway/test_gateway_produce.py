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
from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.static.primitive import i16, i32, i32Timedelta, i64

from kaudit.gateway.codec import (
    FrameDecodeError,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from kaudit.gateway.fetch import count_records
from kaudit.gateway.produce import (
    produce_head,
    summarize_produce_request,
    summarize_produce_response,
)


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


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([9, 10, 12, 13]),
    st.lists(st.tuples(st.integers(0, 50), st.integers(0, 300)), min_size=1, max_size=4),
    st.integers(1, 200),
    st.sampled_from(["orders", "o" * 200]),  # a name of 127+ bytes has a longer length
)
def test_a_request_in_one_piece_reads_as_in_many(
    version: int, batches: list[tuple[int, int]], cut: int, name: str
) -> None:
    records = b"".join(batch(n, size) for n, size in batches)
    ident: Any = uuid.uuid4() if version >= 13 else name
    frame = produce_frame(version, -1, [(ident, [records, records[:90]]), (ident, [None])])
    whole = summarize_produce_request([frame], version)  # read in place
    pieces = summarize_produce_request(split(frame, [cut, cut * 7]), version)
    assert whole == pieces


def produce_response_frame(
    version: int,
    codes: list[list[int]],
    messages: bool,
    new_leader: bool = False,
    name: str = "t",
) -> tuple[bytes, list[Any]]:
    schema = load_response_schema(0, version)
    module = importlib.import_module(schema.__module__)
    idents: list[Any] = [uuid.uuid4() if version >= 13 else f"{name}{n}" for n in range(len(codes))]
    extra: dict[str, Any] = {}
    if version >= 8 and messages:
        errors = (
            module.BatchIndexAndErrorMessage(batch_index=i32(1), batch_index_error_message="bad"),
        )
        extra = {"record_errors": errors, "error_message": "because"}
    elif version >= 8:
        extra = {"record_errors": ()}
    if version >= 10 and new_leader:
        extra["current_leader"] = module.LeaderIdAndEpoch(leader_id=i32(2), leader_epoch=i32(4))
    body = schema(
        responses=tuple(
            module.TopicProduceResponse(
                **({"topic_id": ident} if version >= 13 else {"name": ident}),
                partition_responses=tuple(
                    module.PartitionProduceResponse(
                        index=i32(n), error_code=ErrorCode(code), base_offset=i64(7), **extra
                    )
                    for n, code in enumerate(part_codes)
                ),
            )
            for ident, part_codes in zip(idents, codes, strict=True)
        ),
        throttle_time=i32Timedelta.parse(timedelta(0)),
    )
    header = schema.__header_schema__(correlation_id=i32(3))
    return encode_response(0, version, header, body), idents


@settings(max_examples=80, deadline=None)
@given(
    st.integers(3, 13),
    st.lists(st.lists(st.sampled_from([0, 0, 6, 19, 29]), max_size=3), max_size=3),
    st.booleans(),
    st.sampled_from(["t", "t" * 200]),  # a name of 127+ bytes has a longer length
)
def test_produce_responses_are_read_in_place_as_kio_reads_them(
    version: int, codes: list[list[int]], messages: bool, name: str
) -> None:
    frame, idents = produce_response_frame(version, codes, messages, name=name)
    result = summarize_produce_response(frame, version)
    assert result is not None
    expected = {
        ident: next((c for c in part_codes if c), 0)
        for ident, part_codes in zip(idents, codes, strict=True)
    }
    assert result.codes == expected
    _, decoded = decode_response(0, version, memoryview(frame)[4:])  # type: ignore[arg-type]
    assert len(decoded.responses) == len(result.codes)


def test_a_produce_response_naming_a_new_leader_is_left_to_kio() -> None:
    frame, _ = produce_response_frame(12, [[6]], messages=False, new_leader=True)
    assert summarize_produce_response(frame, 12) is None
