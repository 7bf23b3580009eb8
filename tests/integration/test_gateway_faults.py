"""Failure policy and bad input at the gateway: fail_closed holds or refuses responses;
malformed frames, vanishing clients and brokers close one connection and nothing else."""

from __future__ import annotations

import socket
import struct
import time
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from gateway_fixtures import GatewayFactory, RunningGateway, one
from kio.schema.create_topics.v5.request import CreatableTopic, CreateTopicsRequest
from kio.schema.request_header.v2.header import RequestHeader
from kio.static.primitive import i16, i32, i32Timedelta

from kaudit.dev.kafka import KafkaInfo
from kaudit.gateway.codec import encode_request

pytestmark = pytest.mark.kafka


def create(gw: RunningGateway, config: dict[str, str], topic: str) -> Any:
    admin = AdminClient(gw.client(config))
    try:
        return admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    except KafkaException as exc:
        return exc


def test_fail_closed_answers_after_the_record_is_durable(
    gateway_factory: GatewayFactory, admin_sasl_config: dict[str, str], unique_topic: str
) -> None:
    gw = gateway_factory(audit={"failure_policy": "fail_closed"})
    assert create(gw, admin_sasl_config, unique_topic) is None
    # Read the segment files as they are, without flushing: the record is already there.
    assert unique_topic.encode() in gw.log_bytes()
    one(gw.events("topic.created"), resource__id=unique_topic)


def raw_connection(gw: RunningGateway) -> socket.socket:
    host, port = gw.bootstrap.split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_malformed_and_oversized_frames_close_only_that_connection(
    gateway_factory: GatewayFactory, admin_sasl_config: dict[str, str], unique_topic: str
) -> None:
    gw = gateway_factory(gateway={"max_frame_bytes": 1024})
    for bad in (struct.pack(">i", -5) + b"junk", struct.pack(">i", 4096) + b"\0" * 100):
        conn = raw_connection(gw)
        conn.sendall(bad)
        assert conn.recv(100) == b""  # closed by the gateway
        conn.close()
    # A frame too short for a header is refused too.
    conn = raw_connection(gw)
    conn.sendall(struct.pack(">i", 3) + b"abc")
    assert conn.recv(100) == b""
    conn.close()
    # Everyone else carries on.
    assert create(gw, admin_sasl_config, unique_topic) is None
    one(gw.events("topic.created"), resource__id=unique_topic)


def test_unknown_api_key_is_refused_and_recorded(
    gateway_factory: GatewayFactory, kafka: KafkaInfo, unique_topic: str
) -> None:
    gw = gateway_factory(upstream=kafka.bootstrap_servers)  # PLAINTEXT: no SASL first
    conn = raw_connection(gw)
    header = struct.pack(">hhih", 999, 0, 42, 4) + b"test"
    conn.sendall(struct.pack(">i", len(header)) + header)
    # Never offered, so never forwarded: no response can be written for an API no one
    # knows, so the gateway closes the connection, as the broker does.
    assert conn.recv(100) == b""
    conn.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = [e for e in gw.events("kafka.request") if e["context"]["api"]["key"] == 999]
        if events:
            break
        time.sleep(0.2)
    [event] = events
    assert event["details"] == {
        "api": "Api999", "decoded": False, "refused": True,
        "reason": "Api999 is not an API the gateway offers",
    }  # fmt: skip
    assert event["action"]["result"] == "failure"
    assert event["actor"]["client_id"] == "test"


def test_a_client_that_vanishes_mid_request_still_gets_its_request_audited(
    gateway_factory: GatewayFactory, kafka: KafkaInfo, unique_topic: str
) -> None:
    gw = gateway_factory(upstream=kafka.bootstrap_servers)  # PLAINTEXT super user
    body = CreateTopicsRequest(
        topics=(
            CreatableTopic(
                name=unique_topic,
                num_partitions=i32(1),
                replication_factor=i16(1),
                assignments=(),
                configs=(),
            ),
        ),
        timeout=i32Timedelta.parse(timedelta(seconds=30)),
        validate_only=False,
    )
    frame = encode_request(
        RequestHeader(
            request_api_key=i16(19),
            request_api_version=i16(5),
            correlation_id=i32(7),
            client_id="vanishing",
        ),
        body,
    )
    conn = raw_connection(gw)
    # One round trip first, so the gateway's broker connection is up.
    versions = struct.pack(">hhih", 18, 0, 1, 9) + b"vanishing"
    conn.sendall(struct.pack(">i", len(versions)) + versions)
    assert len(conn.recv(65536)) > 8
    conn.sendall(frame)
    conn.close()  # gone before the broker answers
    deadline = time.monotonic() + 20
    created: list[dict[str, Any]] = []
    while not created and time.monotonic() < deadline:
        created = [e for e in gw.events("topic.created") if e["resource"]["id"] == unique_topic]
        time.sleep(0.2)
    assert len(created) == 1
    assert created[0]["action"]["result"] == "success"
    assert created[0]["actor"]["client_id"] == "vanishing"


def test_a_broker_that_goes_away_closes_the_connection_with_a_reason(
    gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # An upstream that accepts, then closes: the gateway closes the client, logs why,
    # and keeps serving.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.getsockname()[1]
    gw = gateway_factory(upstream=f"127.0.0.1:{port}")
    with caplog.at_level("WARNING", logger="kaudit.gateway"):
        for _ in range(2):
            conn = raw_connection(gw)
            upstream, _ = listener.accept()
            upstream.close()
            assert conn.recv(100) == b""
            conn.close()
    listener.close()
    assert any("broker connection lost" in r.getMessage() for r in caplog.records)
    assert gw.thread._thread.is_alive()
