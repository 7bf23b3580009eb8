"""The gateway in production: broker ports that listen from start-up (a static broker
map, a Metadata call at start), a restart under running clients (librdkafka, Kafka's
Java console consumer), and a graceful stop on SIGTERM, with the real `kaudit gateway`
process, the real broker and real clients."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from gateway_fixtures import GatewayFactory
from kio.schema.fetch.v12.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.join_group.v5.request import JoinGroupRequest, JoinGroupRequestProtocol
from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.schema.request_header.v2.header import RequestHeader
from kio.schema.types import BrokerId, GroupId, TopicName
from kio.static.primitive import i8, i16, i32, i32Timedelta, i64

from kaudit.dev.dist import TOOL_JVM_FLAGS, require_java
from kaudit.dev.kafka import KafkaInfo
from kaudit.dev.ports import free_port_block
from kaudit.gateway.codec import API_KEYS, decode_response, encode_request
from kaudit.log.segments import LogReader
from support.kafka import create_topic, wait_for
from support.wire import recv_exactly

pytestmark = pytest.mark.kafka
KAUDIT = str(Path(sys.executable).with_name("kaudit"))
FETCH = API_KEYS["Fetch"]
JOIN_GROUP = API_KEYS["JoinGroup"]
MEMBER_ID_REQUIRED = 79
NETWORK_EXCEPTION = 13


def broker_node(admin_config: dict[str, str]) -> int:
    (node,) = AdminClient(admin_config).list_topics(timeout=30).brokers
    return int(node)


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


class GatewayProcess:
    """`kaudit gateway -c CONFIG` as a child process, its stderr in a file."""

    def __init__(self, tmp: Path, gateway: dict[str, Any]) -> None:
        self.port = int(gateway["listen"].rpartition(":")[2])
        self.data_dir = tmp / "data"
        self.config = tmp / "kaudit.yaml"
        document = {
            "data_dir": str(self.data_dir),
            "audit": {"failure_policy": "fail_open"},
            "gateway": {"records_window_seconds": 3600, **gateway},
        }
        self.config.write_text(yaml.safe_dump(document))
        self.stderr = tmp / "gateway.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        with self.stderr.open("ab") as err:
            self.proc = subprocess.Popen([KAUDIT, "gateway", "-c", str(self.config)], stderr=err)
        wait_for(lambda: self._alive() and listening(self.port), "the gateway listening")
        return self

    def _alive(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.stderr.read_text()
        return True

    def stop(self, timeout: float = 60) -> float:
        """SIGTERM, then wait for the exit; returns the seconds it took."""
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        assert code == 0, self.stderr.read_text()
        return time.monotonic() - began

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def events(self) -> list[dict[str, Any]]:
        reader = LogReader(self.data_dir / "log")
        lines, _ = reader.read(reader.start())
        return [orjson.loads(line) for line in lines]


def counted(events: list[dict[str, Any]], event_type: str, topic: str) -> dict[str, int]:
    """Records counted in `event_type` windows of `topic`, per result."""
    out: dict[str, int] = {}
    for e in events:
        if e["event_type"] == event_type and e["resource"]["id"] == topic:
            result = e["action"]["result"]
            out[result] = out.get(result, 0) + int(e["details"]["count"])
    return out


def java_console_consumer(
    kafka: KafkaInfo, bootstrap: str, topic: str, messages: int, props: Path
) -> subprocess.Popen[str]:
    dist = kafka.dist
    tool = [
        require_java(),
        *TOOL_JVM_FLAGS,
        f"-Dlog4j2.configurationFile={dist.tools_log4j_config}",
        "-cp",
        dist.classpath,
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
    ]
    options = {
        "--bootstrap-server": bootstrap,
        "--topic": topic,
        "--partition": "0",
        "--offset": "earliest",
        "--max-messages": str(messages),
        "--command-config": str(props),
    }
    return subprocess.Popen(
        [*tool, *(part for option in options.items() for part in option)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_restart_under_running_clients_loses_and_repeats_no_record(
    kafka: KafkaInfo,
    admin_config: dict[str, str],
    admin_sasl_config: dict[str, str],
    unique_topic: str,
    tmp_path: Path,
) -> None:
    create_topic(admin_config, unique_topic, partitions=1)
    node = broker_node(admin_config)

    def gateway(name: str) -> GatewayProcess:
        port = free_port_block(4)
        (tmp_path / name).mkdir()
        settings = {
            "upstream": kafka.sasl_bootstrap_servers,
            "listen": f"127.0.0.1:{port}",
            "brokers": {node: kafka.sasl_bootstrap_servers},
        }
        return GatewayProcess(tmp_path / name, settings).start()

    # One gateway for each client, so the Java consumer's reconnection after the restart
    # depends on nothing the producer does: it never asks a bootstrap server again.
    producing, consuming = gateway("producing"), gateway("consuming")
    # The broker's port listens from start-up, before any response has named it.
    assert listening(consuming.port + 1 + node)
    assert f"(serving {node}:{consuming.port + 1 + node})" in consuming.stderr.read_text()
    total = 300
    props = kafka.write_client_properties(tmp_path / "consumer.properties", "admin")
    # No re-bootstrapping when the brokers it knows are down (KIP-899; clients before
    # Kafka 3.8 never do): it must find its broker's port where the metadata said.
    with props.open("a") as extra:
        extra.write("metadata.recovery.strategy=none\n")
    consumer = java_console_consumer(
        kafka, f"127.0.0.1:{consuming.port}", unique_topic, total, props
    )
    delivered: list[str] = []
    failed: list[str] = []

    def report(err: Any, msg: Any) -> None:
        (failed if err is not None else delivered).append(str(err or msg.value().decode()))

    producer = Producer(
        {
            **admin_sasl_config,
            "bootstrap.servers": f"127.0.0.1:{producing.port}",
            "linger.ms": 5,
            "reconnect.backoff.max.ms": 500,
        }
    )

    def produce() -> None:
        for i in range(total):
            producer.produce(unique_topic, f"m{i}".encode(), on_delivery=report)
            producer.poll(0)
            time.sleep(0.01)  # a steady trickle, so the restart falls mid-stream
        producer.flush(120)

    writer = threading.Thread(target=produce)
    try:
        writer.start()
        wait_for(lambda: len(delivered) >= total // 3, "a third delivered", timeout=60)
        for gw in (producing, consuming):
            gw.stop()
            gw.start()
        writer.join(180)
        assert not writer.is_alive()
        out, err = consumer.communicate(timeout=180)
        assert consumer.returncode == 0, err
        producing.stop()
        consuming.stop()
    finally:
        consumer.kill()
        producing.kill()
        consuming.kill()

    assert failed == []
    assert sorted(delivered) == sorted(f"m{i}" for i in range(total))
    assert sorted(out.split()) == sorted(delivered)  # the Java consumer carried on
    # Every answered request recorded once: as many records counted as were delivered.
    assert counted(producing.events(), "records.produced", unique_topic) == {"success": total}
    assert counted(consuming.events(), "records.consumed", unique_topic) == {"success": total}


def test_a_metadata_call_at_start_opens_every_broker_port(
    gateway_factory: GatewayFactory, kafka: KafkaInfo, admin_config: dict[str, str]
) -> None:
    node = broker_node(admin_config)
    admin = kafka.user("admin")
    gw = gateway_factory(
        gateway={
            "discovery": {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": admin.name,
                "sasl_password": admin.password,
            }
        }
    )
    brokers = gw.gateway.brokers
    assert {n: str(a) for n, a in brokers.known().items()} == {node: kafka.sasl_bootstrap_servers}
    # Listening already, though no client has asked anything yet.
    assert listening(brokers.port_for(node))


def fetch_frame(topic: str, max_wait_s: float) -> bytes:
    body = FetchRequest(
        cluster_id=None,
        replica_id=BrokerId(-1),
        max_wait=i32Timedelta.parse(timedelta(seconds=max_wait_s)),
        min_bytes=i32(1),
        max_bytes=i32(1 << 20),
        isolation_level=i8(0),
        session_id=i32(0),
        session_epoch=i32(-1),
        topics=(
            FetchTopic(
                topic=TopicName(topic),
                partitions=(
                    FetchPartition(
                        partition=i32(0),
                        current_leader_epoch=i32(-1),
                        fetch_offset=i64(0),
                        last_fetched_epoch=i32(-1),
                        log_start_offset=i64(-1),
                        partition_max_bytes=i32(1 << 20),
                    ),
                ),
            ),
        ),
        forgotten_topics_data=(),
        rack_id="",
    )
    header = RequestHeader(
        request_api_key=i16(FETCH),
        request_api_version=i16(12),
        correlation_id=i32(1),
        client_id="long-poll",
    )
    return encode_request(header, body)


def in_flight(conn: socket.socket, frame: bytes) -> None:
    """Send `frame` behind an ApiVersions request, in one write, and read that answer:
    the gateway has read (and forwarded) both by then."""
    api_versions = struct.pack(">hhih", API_KEYS["ApiVersions"], 0, 0, -1)  # v0, no client id
    conn.sendall(struct.pack(">i", len(api_versions)) + api_versions + frame)
    size = struct.unpack(">i", recv_exactly(conn, 4))[0]
    assert struct.unpack(">i", recv_exactly(conn, size)[:4]) == (0,)  # its correlation id


def test_sigterm_stops_accepting_and_answers_and_records_requests_in_flight(
    kafka: KafkaInfo, admin_config: dict[str, str], unique_topic: str, tmp_path: Path
) -> None:
    create_topic(admin_config, unique_topic, partitions=1)
    port = free_port_block(4)
    gw = GatewayProcess(
        tmp_path,
        {
            "upstream": kafka.bootstrap_servers,  # PLAINTEXT: no login needed
            "listen": f"127.0.0.1:{port}",
            "stop_timeout_seconds": 60,
        },
    ).start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=90) as conn:
            # A fetch that waits at the broker until a record arrives.
            in_flight(conn, fetch_frame(unique_topic, max_wait_s=60))
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: not listening(port), "the gateway to stop accepting")
            assert gw.proc.poll() is None  # still answering the fetch in flight
            producer = Producer(admin_config)
            producer.produce(unique_topic, b"late")
            assert producer.flush(30) == 0
            size = int.from_bytes(recv_exactly(conn, 4), "big")
            recv_exactly(conn, size)
        assert gw.proc.wait(60) == 0, gw.stderr.read_text()
    finally:
        gw.kill()
    consumed = [
        e
        for e in gw.events()
        if e["event_type"] == "records.consumed" and e["resource"]["id"] == unique_topic
    ]
    assert [(e["details"]["count"], e["actor"]["client_id"]) for e in consumed] == [
        (1, "long-poll")
    ]


def test_sigterm_waits_for_requests_in_flight_no_longer_than_the_bound(
    kafka: KafkaInfo, admin_config: dict[str, str], unique_topic: str, tmp_path: Path
) -> None:
    create_topic(admin_config, unique_topic, partitions=1)
    port = free_port_block(4)
    gw = GatewayProcess(
        tmp_path,
        {
            "upstream": kafka.bootstrap_servers,
            "listen": f"127.0.0.1:{port}",
            "stop_timeout_seconds": 1,
        },
    ).start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=90) as conn:
            in_flight(conn, fetch_frame(unique_topic, max_wait_s=120))
            took = gw.stop()
            assert conn.recv(4) == b""  # closed unanswered
    finally:
        gw.kill()
    assert 1 <= took < 60  # waited for the fetch, as long as the bound and not the fetch


def test_two_gateways_in_front_of_one_cluster_serve_each_broker_on_the_same_port(
    gateway_factory: GatewayFactory,
    kafka: KafkaInfo,
    admin_config: dict[str, str],
    admin_sasl_config: dict[str, str],
) -> None:
    node = broker_node(admin_config)
    port = free_port_block(4)
    named: list[dict[int, tuple[str, int]]] = []
    for host in ("127.0.0.1", "127.0.0.2"):  # two machines' worth of loopback addresses
        gateway_factory(
            gateway={"listen": f"{host}:{port}", "brokers": {node: kafka.sasl_bootstrap_servers}}
        )
        admin = AdminClient({**admin_sasl_config, "bootstrap.servers": f"{host}:{port}"})
        metadata = admin.list_topics(timeout=30)
        named.append({b.id: (b.host, b.port) for b in metadata.brokers.values()})
    assert named == [{node: ("127.0.0.1", port + 1 + node)}, {node: ("127.0.0.2", port + 1 + node)}]


def join_frame(group: str, member_id: str, correlation_id: int) -> bytes:
    body = JoinGroupRequest(
        group_id=GroupId(group),
        session_timeout=i32Timedelta.parse(timedelta(seconds=45)),
        rebalance_timeout=i32Timedelta.parse(timedelta(seconds=90)),
        member_id=member_id,
        group_instance_id=None,
        protocol_type="consumer",
        protocols=(JoinGroupRequestProtocol(name="range", metadata=b""),),
    )
    header = RequestHeaderV1(
        request_api_key=i16(JOIN_GROUP),
        request_api_version=i16(5),
        correlation_id=i32(correlation_id),
        client_id="joiner",
    )
    return encode_request(header, body)


def joined(conn: socket.socket, group: str, member_id: str, correlation_id: int) -> Any:
    conn.sendall(join_frame(group, member_id, correlation_id))
    size = struct.unpack(">i", recv_exactly(conn, 4))[0]
    return decode_response(JOIN_GROUP, 5, recv_exactly(conn, size))[1]


def test_a_request_still_unanswered_at_the_bound_is_recorded_with_its_group(
    kafka: KafkaInfo, unique_topic: str, tmp_path: Path
) -> None:
    port = free_port_block(4)
    group = f"{unique_topic}-group"
    gw = GatewayProcess(
        tmp_path,
        {
            "upstream": kafka.bootstrap_servers,
            "listen": f"127.0.0.1:{port}",
            "stop_timeout_seconds": 1,
        },
    ).start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=90) as first,
            socket.create_connection(("127.0.0.1", port), timeout=90) as second,
        ):
            # The first member joins, and then never comes back.
            asked = joined(first, group, "", 1)
            assert int(asked.error_code) == MEMBER_ID_REQUIRED
            assert int(joined(first, group, asked.member_id, 2).error_code) == 0
            # A second member's join waits at the broker for the first to rejoin.
            asked = joined(second, group, "", 1)
            assert int(asked.error_code) == MEMBER_ID_REQUIRED
            in_flight(second, join_frame(group, asked.member_id, 3))
            took = gw.stop()
    finally:
        gw.kill()
    assert 1 <= took < 60  # the bound, not the broker's 90 s rebalance timeout
    unanswered = [
        e
        for e in gw.events()
        if e["event_type"] == "kafka.request"
        and [c["error_code"] for c in e["authorization"]["checks"]] == [NETWORK_EXCEPTION]
    ]
    assert [(e["resource"]["type"], e["resource"]["id"]) for e in unanswered] == [("group", group)]
    assert unanswered[0]["context"]["api"]["name"] == "JoinGroup"
    assert unanswered[0]["action"]["result"] == "failure"
