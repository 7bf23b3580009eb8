"""Broker addresses are rewritten to the gateway's ports; ApiVersions is clamped."""

from __future__ import annotations

import uuid
from datetime import timedelta

from kio.schema.api_versions.v3.response import ApiVersion, ApiVersionsResponse
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12.response import (
    MetadataResponse,
    MetadataResponseBroker,
    MetadataResponseTopic,
)
from kio.schema.response_header.v1.header import ResponseHeader
from kio.schema.types import BrokerId, TopicName
from kio.static.primitive import i16, i32, i32Timedelta

from kaudit.gateway.codec import decode_response, encode_response, parsable_versions
from kaudit.gateway.rewrite import BrokerMap, clamp_api_versions, rewrite_metadata


def test_metadata_brokers_point_at_the_gateway_and_ports_open_for_new_brokers() -> None:
    opened: list[tuple[int, str, int]] = []
    brokers = BrokerMap("gw.example", 20000, lambda *args: opened.append(args))
    body = MetadataResponse(
        throttle_time=i32Timedelta.parse(timedelta(0)),
        brokers=tuple(
            MetadataResponseBroker(node_id=BrokerId(n), host=f"b{n}.kafka", port=i32(9092))
            for n in (1, 2)
        ),
        cluster_id="c1",
        controller_id=BrokerId(1),
        topics=(
            MetadataResponseTopic(
                error_code=ErrorCode.none,
                name=TopicName("orders"),
                topic_id=uuid.uuid4(),
                partitions=(),
            ),
        ),
    )
    out = rewrite_metadata(body, brokers)
    assert [(b.host, b.port) for b in out.brokers] == [("gw.example", 20001), ("gw.example", 20002)]
    assert opened == [(1, "b1.kafka", 9092), (2, "b2.kafka", 9092)]
    assert out.topics == body.topics
    # Known brokers do not reopen; a moved broker is noted.
    rewrite_metadata(body, brokers)
    assert len(opened) == 2
    assert str(brokers.upstream_of(2)) == "b2.kafka:9092"
    # The rewritten response encodes and decodes back to the same value.
    frame = encode_response(3, 12, ResponseHeader(correlation_id=i32(5)), out)
    header, decoded = decode_response(3, 12, memoryview(frame)[4:])
    assert header.correlation_id == 5 and decoded == out


def test_api_versions_are_clamped_to_what_the_gateway_parses() -> None:
    produce = parsable_versions(0)
    assert produce is not None
    body = ApiVersionsResponse(
        error_code=ErrorCode.none,
        api_keys=(
            ApiVersion(api_key=i16(0), min_version=i16(0), max_version=i16(produce[1] + 5)),
            ApiVersion(api_key=i16(4), min_version=i16(0), max_version=i16(7)),  # gone in 4.x
            ApiVersion(api_key=i16(3), min_version=i16(0), max_version=i16(12)),
        ),
        throttle_time=i32Timedelta.parse(timedelta(0)),
    )
    out = clamp_api_versions(body)
    assert [(int(a.api_key), int(a.min_version), int(a.max_version)) for a in out.api_keys] == [
        (0, produce[0], produce[1]),
        (3, 0, 12),
    ]


def test_coordinator_and_cluster_descriptions_point_at_the_gateway() -> None:
    from kio.schema.describe_cluster.v1.response import (
        DescribeClusterBroker,
        DescribeClusterResponse,
    )
    from kio.schema.find_coordinator.v3.response import FindCoordinatorResponse as Fc3
    from kio.schema.find_coordinator.v4.response import Coordinator
    from kio.schema.find_coordinator.v4.response import FindCoordinatorResponse as Fc4

    from kaudit.gateway.rewrite import rewrite_describe_cluster, rewrite_find_coordinator

    opened: list[tuple[int, str, int]] = []
    brokers = BrokerMap("gw", 30000, lambda *args: opened.append(args))
    zero = i32Timedelta.parse(timedelta(0))
    v3 = Fc3(throttle_time=zero, error_code=ErrorCode.none, error_message=None,
             node_id=BrokerId(3), host="b3", port=i32(9092))  # fmt: skip
    assert (
        rewrite_find_coordinator(v3, brokers).host,
        rewrite_find_coordinator(v3, brokers).port,
    ) == ("gw", 30003)
    v4 = Fc4(throttle_time=zero, coordinators=(
        Coordinator(key="g", node_id=BrokerId(4), host="b4", port=i32(9092),
                    error_code=ErrorCode.none, error_message=None),
        Coordinator(key="h", node_id=BrokerId(-1), host="", port=i32(-1),
                    error_code=ErrorCode.coordinator_not_available, error_message=None),
    ))  # fmt: skip
    out = rewrite_find_coordinator(v4, brokers).coordinators
    assert [(c.host, c.port) for c in out] == [("gw", 30004), ("", -1)]
    cluster = DescribeClusterResponse(
        throttle_time=zero, error_code=ErrorCode.none, error_message=None, cluster_id="c",
        controller_id=BrokerId(5), cluster_authorized_operations=i32(0),
        brokers=(DescribeClusterBroker(broker_id=BrokerId(5), host="b5", port=i32(9093)),),
    )  # fmt: skip
    [broker] = rewrite_describe_cluster(cluster, brokers).brokers
    assert (broker.host, broker.port) == ("gw", 30005)
    assert [node for node, _, _ in opened] == [3, 4, 5]
