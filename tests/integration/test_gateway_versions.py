"""The gateway accepts only what it offered in ApiVersions (rewrite.offered_versions),
against the run's real broker: share-group consumption, which the broker offers, is left
out (ShareFetch and ShareAcknowledge responses name brokers), so Kafka's share consumer
fails at once through the gateway; a request at a version not offered is answered with
UNSUPPORTED_VERSION (or, where no answer can be written, the connection is closed),
never forwarded, and recorded as refused."""

from __future__ import annotations

import socket
import struct
import uuid
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from gateway_fixtures import GatewayFactory, one
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.delete_topics.v6.request import DeleteTopicsRequest, DeleteTopicState
from kio.schema.fetch.v16.request import FetchRequest
from kio.schema.types import TopicName
from kio.static.primitive import i16, i32, i32Timedelta

from kaudit.auditor import error_name
from kaudit.dev.kafka import KafkaInfo
from kaudit.gateway.codec import API_KEYS, API_NAMES, decode_response, encode_request
from support.kafka import KafkaTool, create_topic
from support.wire import recv_exactly

pytestmark = pytest.mark.kafka
SHARE_CONSUMPTION = {"ShareGroupHeartbeat", "ShareFetch", "ShareAcknowledge"}
UNSUPPORTED_VERSION = 35
API_VERSIONS = API_KEYS["ApiVersions"]
SHARE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleShareConsumer"


class Wire:
    """A raw connection: request frames out, response bodies back."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.conn = socket.create_connection((host, int(port)), timeout=30)

    def send(self, frame: bytes) -> None:
        self.conn.sendall(frame)

    def receive(self, key: int, version: int) -> tuple[Any, Any]:
        size = struct.unpack(">i", recv_exactly(self.conn, 4))[0]
        return decode_response(key, version, recv_exactly(self.conn, size))

    def closed_by_peer(self) -> bool:
        return self.conn.recv(1) == b""

    def close(self) -> None:
        self.conn.close()


def request(body: Any, key: int, version: int, correlation_id: int) -> bytes:
    header = type(body).__header_schema__(
        request_api_key=i16(key),
        request_api_version=i16(version),
        correlation_id=i32(correlation_id),
        client_id="versions",
    )
    return encode_request(header, body)


def api_versions(address: str) -> dict[str, tuple[int, int]]:
    wire = Wire(address)
    try:
        body = ApiVersionsRequest(client_software_name="t", client_software_version="1")
        wire.send(request(body, API_VERSIONS, 3, 1))
        _, answer = wire.receive(API_VERSIONS, 3)
    finally:
        wire.close()
    return {
        API_NAMES.get(int(a.api_key), str(a.api_key)): (int(a.min_version), int(a.max_version))
        for a in answer.api_keys
    }


def test_share_group_consumption_the_broker_offers_is_not_offered_through_the_gateway(
    gateway_factory: GatewayFactory,
    kafka: KafkaInfo,
    kafka_tool: KafkaTool,
    admin_config: dict[str, str],
    unique_topic: str,
) -> None:
    gw = gateway_factory(upstream=kafka.bootstrap_servers)
    direct, through = api_versions(kafka.bootstrap_servers), api_versions(gw.bootstrap)
    assert set(direct) >= SHARE_CONSUMPTION  # the broker offers share groups...
    assert not SHARE_CONSUMPTION & set(through)  # ...the gateway does not
    assert through["Fetch"][1] == 15 < direct["Fetch"][1]
    assert "ShareGroupDescribe" in through  # an admin API naming no broker stays

    create_topic(admin_config, unique_topic)
    producer = Producer(admin_config)
    producer.produce(unique_topic, b"shared")
    producer.flush(30)
    group = f"share-{uuid.uuid4().hex[:8]}"
    kafka_tool(
        "kafka.admin.ConfigCommand", "--alter", "--entity-type", "groups",
        "--entity-name", group, "--add-config", "share.auto.offset.reset=earliest",
    )  # fmt: skip

    def share_consume(bootstrap: str) -> Any:
        return kafka_tool(
            SHARE_CONSUMER, "--topic", unique_topic, "--group", group,
            "--max-messages", "1", "--timeout-ms", "30000",
            bootstrap=bootstrap, check=False,
        )  # fmt: skip

    # Kafka's share consumer fails at once through the gateway...
    refused = share_consume(gw.bootstrap)
    assert "does not support the share group protocol" in refused.stdout + refused.stderr
    assert "Processed a total of 0 messages" in refused.stdout + refused.stderr
    # ...and reads the record straight from the broker.
    consumed = share_consume(kafka.bootstrap_servers)
    assert consumed.stdout.splitlines()[0] == "shared", consumed.stdout + consumed.stderr


def test_a_fetch_at_a_version_not_offered_is_answered_unsupported_and_recorded(
    gateway_factory: GatewayFactory, kafka: KafkaInfo
) -> None:
    gw = gateway_factory(upstream=kafka.bootstrap_servers)
    body = FetchRequest(
        max_wait=i32Timedelta.parse(timedelta(0)),
        min_bytes=i32(1),
        topics=(),
        forgotten_topics_data=(),
    )
    wire = Wire(gw.bootstrap)
    try:
        wire.send(request(body, API_KEYS["Fetch"], 16, 5))
        header, answer = wire.receive(API_KEYS["Fetch"], 16)
    finally:
        wire.close()
    assert int(header.correlation_id) == 5
    assert int(answer.error_code) == UNSUPPORTED_VERSION
    event = one(gw.events("kafka.request"), context__api__key=API_KEYS["Fetch"])
    assert event["action"]["error"] == error_name(UNSUPPORTED_VERSION)
    assert event["details"]["refused"] is True
    assert "Fetch v16 is not a version the gateway offers" in event["details"]["reason"]


def test_a_delete_topics_at_a_version_no_one_can_read_is_not_forwarded(
    gateway_factory: GatewayFactory,
    kafka: KafkaInfo,
    admin_config: dict[str, str],
    unique_topic: str,
) -> None:
    create_topic(admin_config, unique_topic)
    gw = gateway_factory(upstream=kafka.bootstrap_servers)
    body = DeleteTopicsRequest(
        topics=(DeleteTopicState(name=TopicName(unique_topic), topic_id=uuid.UUID(int=0)),),
        timeout=i32Timedelta.parse(timedelta(seconds=30)),
    )
    # A v6 body under a version number kio knows no schema for: no answer can be
    # written at that version, so the gateway closes the connection, as the broker does.
    wire = Wire(gw.bootstrap)
    try:
        wire.send(request(body, API_KEYS["DeleteTopics"], 99, 6))
        assert wire.closed_by_peer()
    finally:
        wire.close()
    event = one(gw.events("kafka.request"), context__api__key=API_KEYS["DeleteTopics"])
    assert event["action"]["error"] == error_name(UNSUPPORTED_VERSION)
    assert event["details"]["refused"] is True
    assert unique_topic in AdminClient(admin_config).list_topics(timeout=30).topics


def test_api_versions_at_a_version_not_offered_is_answered_at_v0_and_the_client_retries(
    gateway_factory: GatewayFactory, kafka: KafkaInfo
) -> None:
    gw = gateway_factory(upstream=kafka.bootstrap_servers)
    body = ApiVersionsRequest(client_software_name="t", client_software_version="1")
    broker = Wire(kafka.bootstrap_servers)
    try:
        broker.send(request(body, API_VERSIONS, 99, 1))
        _, broker_answer = broker.receive(API_VERSIONS, 0)
    finally:
        broker.close()
    wire = Wire(gw.bootstrap)
    try:
        wire.send(request(body, API_VERSIONS, 99, 1))
        header, answer = wire.receive(API_VERSIONS, 0)
        assert int(header.correlation_id) == 1
        # The broker's own answer: UNSUPPORTED_VERSION and ApiVersions' versions only.
        assert int(answer.error_code) == int(broker_answer.error_code) == UNSUPPORTED_VERSION
        [entry] = answer.api_keys
        [broker_entry] = broker_answer.api_keys
        assert int(entry.api_key) == int(broker_entry.api_key) == API_VERSIONS
        assert int(entry.min_version) == 0
        assert int(entry.max_version) <= int(broker_entry.max_version)
        # The connection carries on: the client retries at a version it was offered.
        wire.send(request(body, API_VERSIONS, int(entry.max_version), 2))
        _, retried = wire.receive(API_VERSIONS, int(entry.max_version))
        assert int(retried.error_code) == 0
        assert API_KEYS["Metadata"] in {int(a.api_key) for a in retried.api_keys}
    finally:
        wire.close()
    # A negotiation, not a failure of the client's action: `--result failure` skips it.
    events = gw.events("kafka.request")
    refused = one(events, context__api__key=API_VERSIONS, details__refused=True)
    assert refused["action"]["result"] == "success"
    assert refused["details"]["routine"] == error_name(UNSUPPORTED_VERSION)
