"""A request the gateway cannot read is refused, not forwarded, when its API changes
state (DESIGN: nothing changes the cluster unaudited): a DeleteTopics request with one
tagged field kio does not know, which the broker itself accepts (it skips unknown tagged
fields) and acts on; a read-only request the gateway cannot read is still forwarded."""

from __future__ import annotations

import socket
import struct
import uuid
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from gateway_fixtures import GatewayFactory, one
from kio.schema.delete_topics.v6.request import DeleteTopicsRequest, DeleteTopicState
from kio.schema.describe_configs.v4.request import (
    DescribeConfigsRequest,
    DescribeConfigsResource,
)
from kio.schema.request_header.v2.header import RequestHeader
from kio.schema.types import TopicName
from kio.static.primitive import i8, i16, i32, i32Timedelta

from kaudit.dev.kafka import KafkaInfo
from kaudit.gateway.codec import API_KEYS, decode_response, encode_request
from support.kafka import create_topic, wait_for
from support.wire import recv_exactly

pytestmark = pytest.mark.kafka
DELETE_TOPICS = API_KEYS["DeleteTopics"]
DESCRIBE_CONFIGS = API_KEYS["DescribeConfigs"]
INVALID_REQUEST = 42
UNKNOWN_TAG = 4242  # no DeleteTopics / DescribeConfigs version has a tagged field 4242


def with_unknown_tag(frame: bytes) -> bytes:
    """A flexible request frame written by kio (its body's tagged fields: none, the last
    byte) with one tagged field no schema knows added to the body: `4242 = "x"`."""
    assert frame[-1] == 0
    tag = bytes([0x80 | (UNKNOWN_TAG & 0x7F), UNKNOWN_TAG >> 7])  # uvarint 4242
    body = frame[4:-1] + b"\x01" + tag + b"\x01" + b"x"
    return struct.pack(">i", len(body)) + body


def header(key: int, version: int, correlation_id: int) -> RequestHeader:
    return RequestHeader(
        request_api_key=i16(key),
        request_api_version=i16(version),
        correlation_id=i32(correlation_id),
        client_id="tagger",
    )


def delete_topics_frame(topic: str, correlation_id: int) -> bytes:
    body = DeleteTopicsRequest(
        topics=(DeleteTopicState(name=TopicName(topic), topic_id=uuid.UUID(int=0)),),
        timeout=i32Timedelta.parse(timedelta(seconds=30)),
    )
    return with_unknown_tag(encode_request(header(DELETE_TOPICS, 6, correlation_id), body))


def exchange(address: str, frame: bytes, key: int, version: int) -> Any:
    """Send one request frame, return the decoded response body."""
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(frame)
        size = struct.unpack(">i", recv_exactly(conn, 4))[0]
        _, body = decode_response(key, version, recv_exactly(conn, size))
        return body


def topic_exists(admin_config: dict[str, str], topic: str) -> bool:
    return topic in AdminClient(admin_config).list_topics(timeout=30).topics


def test_an_unreadable_delete_topics_is_refused_and_recorded_not_forwarded(
    gateway_factory: GatewayFactory,
    kafka: KafkaInfo,
    admin_config: dict[str, str],
    unique_topic: str,
) -> None:
    create_topic(admin_config, unique_topic)
    gw = gateway_factory(upstream=kafka.bootstrap_servers)  # PLAINTEXT: the super user

    response = exchange(gw.bootstrap, delete_topics_frame(unique_topic, 7), DELETE_TOPICS, 6)

    # The client got DeleteTopics' own error, and the topic is still there.
    assert [int(r.error_code) for r in response.responses] == [INVALID_REQUEST]
    assert "cannot read" in str(response.responses[0].error_message)
    assert topic_exists(admin_config, unique_topic)
    event = one(gw.events("kafka.request"), context__api__key=DELETE_TOPICS)
    assert event["action"]["result"] == "failure"
    assert event["action"]["error"] == "INVALID_REQUEST"
    assert event["actor"]["client_id"] == "tagger"
    assert event["context"]["api"]["version"] == 6
    assert event["details"]["refused"] is True
    assert event["details"]["decoded"] is False
    assert "DeleteTopics v6 request" in event["details"]["reason"]

    # The same frame straight to the broker deletes the topic: the broker accepts it.
    direct = exchange(
        kafka.bootstrap_servers, delete_topics_frame(unique_topic, 8), DELETE_TOPICS, 6
    )
    assert [int(r.error_code) for r in direct.responses] == [0]
    wait_for(lambda: not topic_exists(admin_config, unique_topic), "the topic deleted")


def test_an_unreadable_read_only_request_is_still_forwarded(
    gateway_factory: GatewayFactory,
    kafka: KafkaInfo,
    admin_config: dict[str, str],
    unique_topic: str,
) -> None:
    create_topic(admin_config, unique_topic, config={"retention.ms": "3600000"})
    gw = gateway_factory(upstream=kafka.bootstrap_servers)
    body = DescribeConfigsRequest(
        resources=(
            DescribeConfigsResource(
                resource_type=i8(2), resource_name=unique_topic, configuration_keys=None
            ),
        ),
        include_synonyms=False,
        include_documentation=False,
    )
    frame = with_unknown_tag(encode_request(header(DESCRIBE_CONFIGS, 4, 9), body))

    response = exchange(gw.bootstrap, frame, DESCRIBE_CONFIGS, 4)

    # The broker's own answer: the topic's configuration.
    [result] = response.results
    assert int(result.error_code) == 0
    assert result.resource_name == unique_topic
    assert {c.name: c.value for c in result.configs}["retention.ms"] == "3600000"
    event = one(gw.events("kafka.request"), context__api__key=DESCRIBE_CONFIGS)
    assert event["details"] == {"api": "DescribeConfigs", "decoded": False}
    assert event["action"]["result"] == "success"
