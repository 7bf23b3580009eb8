"""Tagged fields no schema knows are skipped and noted, as the broker skips them (KIP-482):
a request or response with extra tagged fields, anywhere a flexible entity has tagged
fields, decodes to the same value and gives the same audit records as without, the tags
noted in each record's details."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.index import load_request_schema, load_response_schema
from kio.static.primitive import Records, i16, i32

from kaudit.auditor import AuditEvent, RequestContext, to_audit_events
from kaudit.gateway.audit_apis import MAPPERS
from kaudit.gateway.audit_map import map_exchange
from kaudit.gateway.codec import (
    API_KEYS,
    API_NAMES,
    FrameDecodeError,
    decode_request,
    decode_response_noting,
)
from kaudit.gateway.rewrite import offered_versions
from kaudit.gateway.tagged import UnknownTag, without_unknown_tags
from support.tagging import Extra, frame_with_tags, known_tags, no_tags, write_with_tags

NOTE = "unknown_tagged_fields"
# Record batches as opaque bytes, as test_gateway_declared_lengths registers them (the
# same registration, so the order the modules load in does not matter).
st.register_type_strategy(Records, st.binary(max_size=64))
# Every version of every API is a case of its own: a few examples each keep the run short.
EVERY_VERSION = settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
MAPPED = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def offered(keys: Any) -> list[tuple[int, int]]:
    """(api key, version) for every version the gateway offers of `keys`."""
    pairs = []
    for key in sorted(keys):
        versions = offered_versions(key)
        if versions is not None:
            pairs += [(key, v) for v in range(versions[0], versions[1] + 1)]
    return pairs


def label(pair: tuple[int, int]) -> str:
    return f"{API_NAMES[pair[0]]}-v{pair[1]}"


def random_tags(data: st.DataObject) -> tuple[Extra, list[int]]:
    """An `Extra` drawing up to two unknown tagged fields per entity, and the tag numbers
    it chose."""
    chosen: list[int] = []

    def extra(entity_type: type[Any]) -> list[tuple[int, bytes]]:
        known = known_tags(entity_type)
        fields = data.draw(
            st.lists(
                st.tuples(
                    st.integers(0, 2**31 - 1).filter(lambda t: t not in known),
                    st.binary(max_size=12),
                ),
                max_size=2,
                unique_by=lambda entry: entry[0],
            )
        )
        chosen.extend(tag for tag, _ in fields)
        return fields

    return extra, chosen


def request_frame(key: int, version: int, body: Any, extra: Extra) -> bytes:
    schema = type(body)
    header = schema.__header_schema__(
        request_api_key=i16(key),
        request_api_version=i16(version),
        correlation_id=i32(7),
        client_id="tagger",
    )
    return frame_with_tags(header, body, extra)


def response_frame(body: Any, extra: Extra) -> bytes:
    header = type(body).__header_schema__(correlation_id=i32(7))
    return frame_with_tags(header, body, extra)


@pytest.mark.parametrize("pair", offered(API_NAMES), ids=label)
@EVERY_VERSION
@given(data=st.data())
def test_a_request_at_every_offered_version_decodes_with_or_without_unknown_tags(
    pair: tuple[int, int], data: st.DataObject
) -> None:
    key, version = pair
    body = data.draw(st.from_type(load_request_schema(key, version)))
    extra, chosen = random_tags(data)
    tagged_frame = request_frame(key, version, body, extra)
    plain = decoded_or_error(decode_request, request_frame(key, version, body, no_tags)[4:])
    if isinstance(plain, str):  # a value kio cannot read back (a duration past 2**63 µs)
        assert decoded_or_error(decode_request, tagged_frame[4:]) == plain
        assert "tag" not in plain
        return
    tagged = decode_request(tagged_frame[4:])

    assert tagged.body == plain.body
    assert (tagged.client_id, tagged.correlation_id) == ("tagger", 7)
    assert plain.unknown_tags == ()
    assert tagged.unknown_tags == tuple(sorted(set(chosen)))


def decoded_or_error(decode: Callable[..., Any], *args: Any) -> Any:
    """What `decode` returns, or the FrameDecodeError it raises, as text."""
    try:
        return decode(*args)
    except FrameDecodeError as exc:
        return str(exc)


def _audit_records(key: int, version: int, req: Any, resp: Any, tags: tuple[int, ...]) -> Any:
    """The records the gateway makes of one exchange, or the error mapping it raised."""
    ctx = RequestContext(
        api_key=key, api_name=API_NAMES[key], api_version=version, unknown_tagged_fields=tags
    )
    try:
        call = map_exchange(key, req, resp, str)
    except (AttributeError, TypeError, ValueError) as exc:  # the gateway's fallback
        return type(exc)
    assert call is not None
    return to_audit_events(call.event, ctx, call.auth)


def _without_note(record: AuditEvent) -> AuditEvent:
    return replace(record, details={k: v for k, v in record.details.items() if k != NOTE})


@pytest.mark.parametrize("pair", offered(MAPPERS), ids=label)
@MAPPED
@given(data=st.data())
def test_unknown_tags_change_no_audit_record_of_a_mapped_api_but_are_noted(
    pair: tuple[int, int], data: st.DataObject
) -> None:
    key, version = pair
    req = data.draw(st.from_type(load_request_schema(key, version)))
    resp = data.draw(st.from_type(load_response_schema(key, version)))
    extra, chosen = random_tags(data)
    frames = (request_frame(key, version, req, extra), response_frame(resp, extra))
    plain_req = decoded_or_error(decode_request, request_frame(key, version, req, no_tags)[4:])
    if isinstance(plain_req, str):  # a value kio cannot read back: refused either way
        assert decoded_or_error(decode_request, frames[0][4:]) == plain_req
        return
    plain_frame = response_frame(resp, no_tags)[4:]
    plain_answer = decoded_or_error(decode_response_noting, key, version, plain_frame)
    if isinstance(plain_answer, str):
        assert decoded_or_error(decode_response_noting, key, version, frames[1][4:]) == (
            plain_answer
        )
        return
    plain_resp = plain_answer[1]
    tagged_req = decode_request(frames[0][4:])
    _, tagged_resp, resp_tags = decode_response_noting(key, version, frames[1][4:])
    tags = tuple(sorted({*tagged_req.unknown_tags, *resp_tags}))
    assert tags == tuple(sorted(set(chosen)))

    plain = _audit_records(key, version, plain_req.body, plain_resp, ())
    tagged = _audit_records(key, version, tagged_req.body, tagged_resp, tags)

    if isinstance(plain, type):
        assert tagged is plain
        return
    assert [_without_note(r) for r in tagged] == plain
    for record in tagged:
        if tags and record.event_type != "access.denied":
            assert record.details[NOTE] == list(tags)


def test_the_flagship_changes_decode_with_a_tag_the_broker_would_skip() -> None:
    """The issue's examples: one extra tagged field on each no longer hides it."""
    for name in ("DeleteTopics", "CreateAcls", "AlterConfigs", "AlterUserScramCredentials",
                 "SaslAuthenticate"):  # fmt: skip
        key = API_KEYS[name]
        versions = offered_versions(key)
        assert versions is not None
        body = _example(load_request_schema(key, versions[1]))
        frame = request_frame(key, versions[1], body, lambda t: [(4242, b"x")])
        decoded = decode_request(frame[4:])
        assert decoded.unknown_tags == (4242,), name
        plain = decode_request(request_frame(key, versions[1], body, no_tags)[4:])
        assert decoded.body == plain.body


def _example(schema: type[Any]) -> Any:
    found: list[Any] = []

    @settings(max_examples=1, database=None)
    @given(st.from_type(schema))
    def pick(value: Any) -> None:
        found.append(value)

    pick()
    return found[0]


def test_a_count_written_in_two_bytes_shrinks_to_one_when_the_tags_are_cut() -> None:
    # 130 unknown tags: their count takes two varint bytes, the count left (0) one.
    out = io.BytesIO()
    write_with_tags(out, _example(load_request_schema(API_KEYS["DeleteTopics"], 6)),
                    lambda t: [(1000 + n, bytes([n])) for n in range(130)])  # fmt: skip
    frame = out.getvalue()
    section = frame.index(bytes([0x82, 0x01]))  # uvarint 130
    unknown, at = [], section + 2
    for n in range(130):
        tag = 1000 + n
        size = len(bytes([0x80 | (tag & 0x7F), tag >> 7])) + 2
        unknown.append(UnknownTag(section, tag, at, at + size))
        at += size
    assert at == len(frame)
    assert without_unknown_tags(frame, unknown) == frame[:section] + b"\0"
