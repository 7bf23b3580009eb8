"""A length declared in a frame never reaches kio's native reader unchecked.

kio's reader reserves memory for a declared array length before reading the array, so a
frame declaring billions of items aborted the gateway (SIGABRT, nothing to catch). Now
every declared length is checked against the bytes left first, and such a frame is a
FrameDecodeError naming the API, version and field. Hostile bytes are decoded in a
child process (`kaudit_decode_child`): a regression fails these tests, naming the frame,
instead of killing the test run.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kaudit_decode_child import REQUEST, RESPONSE, DecodeChild
from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import Records

from kaudit.gateway.audit_apis import MAPPERS
from kaudit.gateway.bounds import frame_check
from kaudit.gateway.codec import (
    API_KEYS,
    FrameDecodeError,
    api_name,
    decode_request,
    decode_response,
    parsable_versions,
)
from kaudit.gateway.rewrite import REWRITTEN

# Record batches are opaque bytes to the codec.
st.register_type_strategy(Records, st.binary(max_size=64))

HUGE_VARINT = b"\xff\xff\xff\xff\x7f"  # 2**35 - 1: a compact array of 2**35 - 2 items
HUGE_INT32 = struct.pack(">i", 2**31 - 1)
HUGE_INT16 = struct.pack(">h", 2**15 - 1)


def versions(key: int) -> range:
    low, high = parsable_versions(key) or (0, -1)
    return range(low, high + 1)


# Every API and version the gateway decodes: each one kio reads (what ApiVersions
# advertises to clients is clamped to these).
ALL = [
    (direction, key, version)
    for key in sorted(API_KEYS.values())
    for version in versions(key)
    for direction in (REQUEST, RESPONSE)
]


@pytest.fixture(scope="module")
def child() -> Iterator[DecodeChild]:
    decoder = DecodeChild()
    yield decoder
    assert decoder.close() == 0


def request(key: int, version: int, body: bytes, client_id: bytes = b"test") -> bytes:
    """A request frame (no size prefix): a real header for `key` v`version`, then `body`."""
    header = struct.pack(">hhih", key, version, 7, len(client_id)) + client_id
    flexible = load_request_schema(key, version).__header_schema__.__flexible__
    return header + (b"\0" if flexible else b"") + body


def response(key: int, version: int, body: bytes) -> bytes:
    """A response frame (no size prefix): a real header, then `body`."""
    flexible = load_response_schema(key, version).__header_schema__.__flexible__
    return struct.pack(">i", 7) + (b"\0" if flexible else b"") + body


DELETE_RECORDS = API_KEYS["DeleteRecords"]
CREATE_TOPICS = API_KEYS["CreateTopics"]
SASL_AUTHENTICATE = API_KEYS["SaslAuthenticate"]
METADATA = API_KEYS["Metadata"]
API_VERSIONS = API_KEYS["ApiVersions"]
PRODUCE = API_KEYS["Produce"]
TIMEOUT = struct.pack(">i", 30000)

# (direction, key, version, frame, the field named in the error)
CRAFTED = [
    # Arrays, legacy and compact, at the top and nested in an array's item.
    (REQUEST, DELETE_RECORDS, 1, request(DELETE_RECORDS, 1, HUGE_INT32), "topics"),
    (REQUEST, DELETE_RECORDS, 2, request(DELETE_RECORDS, 2, HUGE_VARINT), "topics"),
    (
        REQUEST,
        DELETE_RECORDS,
        0,
        request(DELETE_RECORDS, 0, struct.pack(">ih", 1, 1) + b"t" + HUGE_INT32),
        "topics[0].partitions",
    ),
    (
        REQUEST,
        DELETE_RECORDS,
        2,
        request(DELETE_RECORDS, 2, b"\x02\x02t" + HUGE_VARINT),
        "topics[0].partitions",
    ),
    (
        RESPONSE,
        METADATA,
        12,
        # throttle, no brokers, null cluster id, controller, one topic: error, name "t",
        # topic id, is_internal, then its partitions.
        response(METADATA, 12, b"\0" * 4 + b"\x01\x00" + b"\0" * 4 + b"\x02\0\0\x02t")
        + b"\0" * 17
        + HUGE_VARINT,
        "topics[0].partitions",
    ),
    (RESPONSE, METADATA, 1, response(METADATA, 1, HUGE_INT32), "brokers"),
    # Strings, legacy and compact, in the body and in the request header.
    (
        REQUEST,
        CREATE_TOPICS,
        4,
        request(CREATE_TOPICS, 4, struct.pack(">i", 1) + HUGE_INT16),
        "topics[0].name",
    ),
    (REQUEST, CREATE_TOPICS, 7, request(CREATE_TOPICS, 7, b"\x02" + HUGE_VARINT), "topics[0].name"),
    (
        REQUEST,
        DELETE_RECORDS,
        2,
        struct.pack(">hhi", DELETE_RECORDS, 2, 7) + HUGE_INT16,
        "client_id",
    ),
    # Bytes, legacy and compact.
    (REQUEST, SASL_AUTHENTICATE, 0, request(SASL_AUTHENTICATE, 0, HUGE_INT32), "auth_bytes"),
    (REQUEST, SASL_AUTHENTICATE, 2, request(SASL_AUTHENTICATE, 2, HUGE_VARINT), "auth_bytes"),
    # Tagged fields: an array inside a known tag (kio reads it by its schema, whatever
    # the tag's size says), and the size of an unknown one.
    (
        RESPONSE,
        API_VERSIONS,
        3,
        # error, no api keys, throttle; one tagged field: tag 0, 5 bytes, the array.
        response(API_VERSIONS, 3, b"\0\0\x01" + b"\0" * 4 + b"\x01\x00\x05" + HUGE_VARINT),
        "supported_features",
    ),
    (
        RESPONSE,
        PRODUCE,
        10,
        # no responses, throttle; tag 0 (node_endpoints), 5 bytes, the array.
        response(PRODUCE, 10, b"\x01" + b"\0" * 4 + b"\x01\x00\x05" + HUGE_VARINT),
        "node_endpoints",
    ),
    (
        REQUEST,
        DELETE_RECORDS,
        2,
        request(DELETE_RECORDS, 2, b"\x01" + TIMEOUT + b"\x01\x09" + HUGE_VARINT),
        "tag 9",
    ),
]


def test_frames_declaring_more_than_they_hold_are_frame_decode_errors_naming_the_field() -> None:
    child = DecodeChild()
    for direction, key, version, frame, field in CRAFTED:
        # Room for the items around the huge length, so that it is the one refused.
        answer = child.decode(direction, key, version, frame + bytes(64))
        kind = "request" if direction == REQUEST else "response"
        assert answer.startswith(f"FrameDecodeError {api_name(key)} v{version} {kind}: "), answer
        assert f"{field} declares " in answer, answer
    assert child.close() == 0


def test_the_error_says_how_much_was_declared_and_how_much_is_left() -> None:
    child = DecodeChild()
    frame = request(DELETE_RECORDS, 2, b"\x02\x02t" + HUGE_VARINT + b"\0" * 10)
    assert child.decode(REQUEST, DELETE_RECORDS, 2, frame) == (
        "FrameDecodeError DeleteRecords v2 request: DeleteRecordsRequest.topics[0].partitions "
        f"declares {2**35 - 2} items of at least 13 bytes but only 10 bytes are left"
    )
    assert child.close() == 0


# Lengths near the limits of each encoding, for the arbitrary bytes to be built from too.
LENGTHS = [HUGE_VARINT, b"\xff\xff\xff\x7f", b"\x80\x80\x80\x80\x08", HUGE_INT32, HUGE_INT16]


@st.composite
def hostile_frames(draw: st.DrawFn) -> tuple[int, int, int, bytes]:
    """Any API and version the gateway decodes, then arbitrary bytes (some built with
    huge lengths in them): for a request after a whole header, after its api key and
    version, or from the start (any api key and version)."""
    direction, key, version = draw(st.sampled_from(ALL))
    pieces = st.one_of(st.binary(max_size=40), st.sampled_from(LENGTHS))
    data = draw(st.binary(max_size=400) | st.lists(pieces, max_size=12).map(b"".join))
    if direction == RESPONSE:
        return direction, key, version, data
    start = draw(st.sampled_from(["header", "api", "none"]))
    if start == "header":
        return direction, key, version, request(key, version, data)
    if start == "api":
        return direction, key, version, struct.pack(">hh", key, version) + data
    return direction, key, version, data


@settings(
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(hostile_frames())
def test_arbitrary_bytes_for_any_api_decode_or_fail_only_as_frame_decode_error(
    child: DecodeChild, case: tuple[int, int, int, bytes]
) -> None:
    answer = child.decode(*case)
    assert answer == "ok" or answer.startswith("FrameDecodeError "), answer


# -- valid frames decode as before --------------------------------------------------------


def encode(schema: type[Any], header: Any, body: Any) -> bytes:
    out = io.BytesIO()
    entity_writer(schema.__header_schema__)(out, header)
    entity_writer(schema)(out, body)
    return out.getvalue()


def kio_alone(schema: type[Any], frame: bytes) -> tuple[Any, Any, int] | str:
    """What kio's readers make of a frame without the check: (header, body, bytes read),
    or the error (on frames kio's writer made, which never abort)."""
    try:
        header, size = entity_reader(schema.__header_schema__)(frame, 0)
        body, body_size = entity_reader(schema)(frame, size)
    except Exception as exc:
        return repr(exc)
    return header, body, size + body_size


MAPPED = sorted({*MAPPERS, *REWRITTEN, SASL_AUTHENTICATE, API_KEYS["SaslHandshake"]})
OTHERS = sorted(set(API_KEYS.values()) - set(MAPPED))


@pytest.mark.parametrize("key", MAPPED, ids=api_name)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_valid_frames_of_the_mapped_apis_decode_to_what_was_encoded(
    key: int, data: st.DataObject
) -> None:
    round_trip(key, data)


@pytest.mark.parametrize("key", OTHERS, ids=api_name)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_valid_frames_of_every_other_api_decode_to_what_was_encoded(
    key: int, data: st.DataObject
) -> None:
    round_trip(key, data)


def round_trip(key: int, data: st.DataObject) -> None:
    """A frame kio's writer made from any value of any version of `key`, request or
    response, decodes as kio alone decodes it, and the check ends where kio ends."""
    version = data.draw(st.sampled_from(versions(key)), label="version")
    if data.draw(st.booleans(), label="request"):
        schema = load_request_schema(key, version)
        header = replace(
            data.draw(st.from_type(schema.__header_schema__)),
            request_api_key=key,
            request_api_version=version,
        )
    else:
        schema = load_response_schema(key, version)
        header = data.draw(st.from_type(schema.__header_schema__))
    body = data.draw(st.from_type(schema))
    frame = encode(schema, header, body)
    before = kio_alone(schema, frame)
    if isinstance(before, str):  # kio cannot read back what it wrote: still an error
        with pytest.raises(FrameDecodeError):
            decode(schema, frame)
        return
    assert before[:2] == (header, body)
    assert decode(schema, frame) == decode_as_kio_did(schema, before)
    # The check walks exactly the bytes kio reads.
    assert frame_check(schema.__header_schema__, schema)(frame, []) == before[2] == len(frame)


def decode(schema: type[Any], frame: bytes) -> tuple[Any, Any]:
    """(client id, body) of a request or (header, body) of a response, by the codec (from
    a memoryview, as the connection calls it)."""
    if schema.__name__.endswith("Request"):
        decoded = decode_request(memoryview(frame))
        return decoded.client_id, decoded.body
    return decode_response(schema.__api_key__, schema.__version__, memoryview(frame))


def decode_as_kio_did(schema: type[Any], read: tuple[Any, Any, int]) -> tuple[Any, Any]:
    header, body, _ = read
    return (header.client_id if schema.__name__.endswith("Request") else header), body
