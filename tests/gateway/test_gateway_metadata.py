"""Metadata responses patched in place: for every version, the client sees what decoding
and re-encoding would give, in a time that does not grow with the partitions."""

from __future__ import annotations

import time
import typing
import uuid
from dataclasses import fields, replace
from datetime import timedelta
from typing import Any

import pytest
from kio.index import load_response_schema
from kio.schema.errors import ErrorCode
from kio.static.primitive import i32, i32Timedelta

from kaudit.gateway.codec import METADATA, decode_response, encode_response
from kaudit.gateway.exchange import _empty
from kaudit.gateway.metadata import TopicNames, patch_metadata, topic_ids
from kaudit.gateway.rewrite import BrokerMap, rewrite_metadata


def _entity(schema: type[Any], name: str) -> type[Any]:
    """The entity type of array field `name` of `schema`."""
    hint = typing.get_type_hints(schema)[name]
    return typing.get_args(hint)[0]  # type: ignore[no-any-return]


def metadata_frame(version: int, topics: int, partitions: int) -> bytes:
    schema = load_response_schema(METADATA, version)
    broker_type = _entity(schema, "brokers")
    topic_type = _entity(schema, "topics")
    partition_type = _entity(topic_type, "partitions")
    brokers = tuple(
        replace(
            _empty(broker_type),
            node_id=i32(n),
            host=f"broker-{n}.kafka.internal",
            port=i32(9092 + n),
            **({"rack": f"rack-{n}"} if hasattr(broker_type, "__dataclass_fields__")
               and "rack" in broker_type.__dataclass_fields__ else {}),
        )
        for n in range(3)
    )  # fmt: skip
    names = {f.name for f in fields(partition_type)}
    part = _empty(partition_type)
    made = []
    for t in range(topics):
        parts = tuple(
            replace(
                part,
                partition_index=i32(p),
                leader_id=i32(p % 3),
                replica_nodes=tuple(i32((p + r) % 3) for r in range(3)),
                isr_nodes=tuple(i32((p + r) % 3) for r in range(2)),
                **({"offline_replicas": (i32(2),)} if "offline_replicas" in names else {}),
            )
            for p in range(partitions)
        )
        topic = replace(_empty(topic_type), name=f"topic-{t}", partitions=parts)
        if "topic_id" in topic_type.__dataclass_fields__:
            topic = replace(topic, topic_id=uuid.uuid4())
        made.append(replace(topic, error_code=ErrorCode(0)))
    body = replace(_empty(schema), brokers=brokers, topics=tuple(made))
    if "throttle_time" in schema.__dataclass_fields__:
        body = replace(body, throttle_time=i32Timedelta.parse(timedelta(milliseconds=7)))
    header = schema.__header_schema__(correlation_id=i32(42))
    return encode_response(METADATA, version, header, body)


def gateway_map() -> BrokerMap:
    return BrokerMap("kaudit-gw.example.com", 19093, lambda *_: None)


@pytest.mark.parametrize("version", range(14))
def test_a_patched_response_is_what_re_encoding_would_give(version: int) -> None:
    frame = metadata_frame(version, topics=3, partitions=4)
    patched = patch_metadata(frame, version, gateway_map())
    header, original = decode_response(METADATA, version, memoryview(frame)[4:])  # type: ignore[arg-type]
    expected = encode_response(METADATA, version, header, rewrite_metadata(original, gateway_map()))
    assert patched == expected
    _, body = decode_response(METADATA, version, memoryview(patched)[4:])  # type: ignore[arg-type]
    assert [(int(b.node_id), b.host, int(b.port)) for b in body.brokers] == [
        (n, "kaudit-gw.example.com", 19093 + n) for n in range(3)
    ]
    if version >= 10:
        assert topic_ids(frame, version) == {t.topic_id: t.name for t in original.topics}


def test_real_addresses_are_learned_from_the_patched_response() -> None:
    brokers = gateway_map()
    patch_metadata(metadata_frame(12, 1, 1), 12, brokers)
    assert str(brokers.upstream_of(2)) == "broker-2.kafka.internal:9094"


def test_thirty_thousand_partitions_are_patched_in_well_under_20_ms() -> None:
    frame = metadata_frame(12, topics=300, partitions=100)
    brokers = gateway_map()
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        patch_metadata(frame, 12, brokers)
        timings.append(time.perf_counter() - started)
    assert sorted(timings)[2] < 0.020, f"median {sorted(timings)[2] * 1000:.1f} ms"


def test_topic_names_are_read_from_kept_responses_only_when_an_id_is_unknown() -> None:
    frame = metadata_frame(12, topics=2, partitions=2)
    _, body = decode_response(METADATA, 12, memoryview(frame)[4:])  # type: ignore[arg-type]
    names = TopicNames()
    names.keep(frame, 12)
    assert names.get(uuid.uuid4()) is None  # walks the kept response, finds nothing
    names.keep(frame, 12)
    first = body.topics[0]
    assert names.get(first.topic_id) == first.name
