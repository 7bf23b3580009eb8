"""The gateway's limits, from its config: frames before login, connections per gateway and
per source address, distinct counts per window (the rest in an overflow record); and a
failing auditor plugin, which costs neither the other auditors nor the connection."""

from __future__ import annotations

import socket
import struct

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from gateway_fixtures import GatewayFactory, RunningGateway, one

from kaudit.dev.kafka import KafkaInfo
from kaudit_probe_auditors import FailingAuditor
from support.kafka import create_topic, wait_for
from support.wire import recv_exactly

pytestmark = pytest.mark.kafka


def connect(gw: RunningGateway) -> socket.socket:
    host, port = gw.bootstrap.split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def api_versions(conn: socket.socket) -> bytes:
    """One ApiVersions v0 round trip: the connection is served."""
    request = struct.pack(">hhih", 18, 0, 1, 5) + b"limit"
    conn.sendall(struct.pack(">i", len(request)) + request)
    (size,) = struct.unpack(">i", recv_exactly(conn, 4))
    return recv_exactly(conn, size)


def closed_by_gateway(conn: socket.socket) -> bool:
    try:
        return conn.recv(100) == b""
    except ConnectionResetError:
        return True


def test_a_frame_larger_than_brokers_allow_before_login_closes_the_connection(
    gateway_factory: GatewayFactory, admin_sasl_config: dict[str, str], unique_topic: str
) -> None:
    gw = gateway_factory()  # SASL upstream, default limits
    conn = connect(gw)
    api_versions(conn)
    # 600 KiB announced before any login: more than the 512 KiB a broker allows.
    conn.sendall(struct.pack(">i", 600 * 1024) + struct.pack(">hhi", 0, 9, 2))
    assert closed_by_gateway(conn)
    conn.close()
    # After a login the usual limit applies: a 1 MiB produce request goes through.
    create_topic({**admin_sasl_config}, unique_topic)
    producer = Producer(
        gw.client({**admin_sasl_config, "linger.ms": 50, "message.max.bytes": 4_000_000})
    )
    outcomes: list[object] = []
    producer.produce(unique_topic, b"x" * 1_000_000, on_delivery=lambda e, m: outcomes.append(e))
    assert producer.flush(60) == 0 and outcomes == [None]


def test_connections_beyond_the_limits_are_closed_and_counted(
    gateway_factory: GatewayFactory, kafka: KafkaInfo
) -> None:
    gw = gateway_factory(
        upstream=kafka.bootstrap_servers, gateway={"max_connections_per_address": 2}
    )
    first, second = connect(gw), connect(gw)
    api_versions(first)
    api_versions(second)
    third = connect(gw)
    assert closed_by_gateway(third)
    assert gw.gateway.metrics.connections_refused == 1
    # One leaves: the next one from the address is served.
    first.close()
    wait_for(lambda: len(gw.gateway.shared.connections) == 1, "the first connection gone")
    fourth = connect(gw)
    assert api_versions(fourth)
    for conn in (second, third, fourth):
        conn.close()

    whole = gateway_factory(upstream=kafka.bootstrap_servers, gateway={"max_connections": 1})
    only = connect(whole)
    api_versions(only)
    assert closed_by_gateway(connect(whole))
    assert whole.gateway.metrics.connections_refused == 1
    only.close()


def test_counts_past_the_distinct_key_limit_go_into_an_overflow_record(
    gateway_factory: GatewayFactory, admin_sasl_config: dict[str, str], unique_topic: str
) -> None:
    topics = [f"{unique_topic}-{i}" for i in range(5)]
    for topic in topics:
        create_topic(admin_sasl_config, topic)
    gw = gateway_factory(gateway={"max_window_keys": 2})
    producer = Producer(gw.client(admin_sasl_config))
    for topic in topics:
        for _ in range(10):
            producer.produce(topic, b"v")
        assert producer.flush(30) == 0  # one topic after the other: the first two keyed
    produced = gw.events("records.produced")
    keyed = [e for e in produced if e["resource"]["id"] in topics]
    assert [e["resource"]["id"] for e in keyed] == topics[:2]
    overflow = one(produced, resource__id="*")
    assert overflow["details"]["overflow"] is True
    assert overflow["details"]["max_keys"] == 2
    assert sum(e["details"]["count"] for e in produced) == 50


def test_a_failing_auditor_plugin_is_counted_and_the_others_still_record(
    gateway_factory: GatewayFactory, admin_sasl_config: dict[str, str], unique_topic: str
) -> None:
    FailingAuditor.calls = 0
    gw = gateway_factory(auditors=["kaudit_probe_auditors:FailingAuditor", "recorder"])
    admin = AdminClient(gw.client(admin_sasl_config))
    for name in (unique_topic, unique_topic + "-2"):  # the connection carries on
        assert admin.create_topics([NewTopic(name, 1, 1)])[name].result(timeout=30) is None
    created = gw.events("topic.created")
    assert {e["resource"]["id"] for e in created} == {unique_topic, unique_topic + "-2"}
    assert FailingAuditor.calls >= 2
    assert gw.session.auditor_failures == FailingAuditor.calls
