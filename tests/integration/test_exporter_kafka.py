"""The kafka destination against the real broker: formats, keys, SASL, ACLs, failures.

Events go the whole way: `kaudit.open` writes them to the local log, the runner from
`runners_for` drains the log into the exporter, and a real consumer (confluent-kafka,
kafka-python or aiokafka) reads the topic back. Consumers read as the harness's super
user over PLAINTEXT, so what they see does not depend on the ACLs under test.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer
from kafka.partitioner import murmur2

import kaudit
from kaudit.config import Config, load_config_text
from kaudit.config.model import KafkaDestination
from kaudit.dev.kafka import KafkaInfo, LocalKafka
from kaudit.errors import ExporterError
from kaudit.events import codec
from kaudit.events.formats.cloudevents import from_cloudevent, from_cloudevent_binary
from kaudit.exporters import ExporterRunner, build_exporter, runners_for
from kaudit.exporters.kafka import EVENT_ID_HEADER, KafkaExporter
from kaudit.log.segments import LogReader
from support.kafka import (
    KafkaTool,
    create_topic,
    grant_topic,
    new_scram_user,
    security,
    wait_for,
    wait_until_described,
)

ACTOR = kaudit.Actor(
    type="user",
    id="User:alice",
    roles=("ops",),
    ip_address="10.0.0.50",
    client_id="billing-svc",
    auth="SCRAM-SHA-512",
)
# (event type, resource): three resources, one of them touched three times, and one
# sign-in event so OCSF renders both of its classes.
EVENTS = [
    ("topic.created", {"type": "topic", "id": "orders", "path": "kafka://prod/topic/orders"}),
    ("acl.created", {"type": "acl", "id": "User:bob/Topic:LITERAL:orders"}),
    ("topic.config_changed", {"type": "topic", "id": "orders"}),
    ("auth.login", {"type": "user", "id": "alice"}),
    ("topic.deleted", {"type": "topic", "id": "orders"}),
]


@dataclass(frozen=True)
class Received:
    """One record read back from the topic, whichever client read it."""

    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    partition: int
    offset: int


# ---------------------------------------------------------------------------- helpers


def _destination(settings: Mapping[str, str], topic: str, **extra: Any) -> dict[str, Any]:
    """A `kafka` destination block from the harness's librdkafka settings."""
    return {
        "type": "kafka",
        "bootstrap_servers": settings["bootstrap.servers"],
        "topic": topic,
        "security": security(settings),
        **extra,
    }


def _config(tmp_path: Path, destination: Mapping[str, Any]) -> Config:
    return Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "cluster": {"id": "prod-us-west-2", "environment": "production"},
            "audit": {"destination": destination},
        }
    )


def _record_events(config: Config, events: list[tuple[str, dict[str, str]]] = EVENTS) -> None:
    with kaudit.open(config) as session:
        for event_type, resource in events:
            session.emit(
                event_type,
                actor=ACTOR,
                resource=resource,
                details={"note": f"{event_type} on {resource['id']}"},
                correlation_id="req_kafka_exporter",
            )


def _log_lines(config: Config) -> list[bytes]:
    """The local log's lines, without newlines: what the exporter was given."""
    return [line.rstrip(b"\n") for _, line in LogReader(config.log_dir).iter_lines()]


def _drain(config: Config) -> ExporterRunner:
    [runner] = runners_for(config)
    try:
        runner.drain()
    finally:
        runner.close()
    return runner


def _alice_may_write(kafka_tool: KafkaTool, alice: Mapping[str, str], topic: str) -> None:
    """alice granted WRITE, CREATE and DESCRIBE on `topic`, and the grant in effect."""
    grant_topic(kafka_tool, "alice", topic, "Write", "Create", "Describe")
    wait_until_described(alice, topic)


def _cloudevents_recorded(
    tmp_path: Path, settings: Mapping[str, str], topic: str, mode: str
) -> Config:
    """`EVENTS` recorded for a CloudEvents destination in `mode` on `topic`."""
    # Sent uncompressed: kafka-python reads lz4 batches only with the optional lz4
    # package, aiokafka only with cramjam, and neither is a dependency here.
    destination = _destination(
        settings,
        topic,
        format="cloudevents",
        cloudevents_mode=mode,
        client_config={"compression.type": "none"},
    )
    config = _config(tmp_path, destination)
    _record_events(config)
    return config


def _topic_partitions(admin_config: Mapping[str, str], topic: str) -> int | None:
    topics = AdminClient(dict(admin_config)).list_topics(timeout=10).topics
    return len(topics[topic].partitions) if topic in topics else None


def _consume_confluent(admin_config: Mapping[str, str], topic: str, count: int) -> list[Received]:
    """`count` records, plus any that arrive within a second after them (duplicates)."""
    consumer = Consumer(
        {
            **admin_config,
            "group.id": f"check-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    received: list[Received] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        quiet_until = None
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                if len(received) >= count:
                    quiet_until = quiet_until or time.monotonic() + 1
                    if time.monotonic() > quiet_until:
                        break
                continue
            assert msg.error() is None, msg.error()
            received.append(
                Received(
                    msg.key(),
                    msg.value(),
                    _header_dict(msg.headers() or []),
                    msg.partition(),
                    msg.offset(),
                )
            )
    finally:
        consumer.close()
    return received


def _end_offset(admin_config: Mapping[str, str], topic: str) -> int:
    """How many records partition 0 of `topic` has ever had."""
    consumer = Consumer({**admin_config, "group.id": "watermarks"})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        consumer.close()
    return int(high)


def _consume_kafka_python(bootstrap: str, topic: str, count: int) -> list[Received]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    received: list[Received] = []
    try:
        deadline = time.monotonic() + 30
        while len(received) < count and time.monotonic() < deadline:
            received += _received(consumer.poll(timeout_ms=500))
        # One more poll: a duplicate would arrive here.
        received += _received(consumer.poll(timeout_ms=1000))
    finally:
        consumer.close()
    return received


def _consume_aiokafka(bootstrap: str, topic: str, count: int) -> list[Received]:
    async def consume() -> list[Received]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        received: list[Received] = []
        try:
            deadline = time.monotonic() + 30
            while len(received) < count and time.monotonic() < deadline:
                received += _received(await consumer.getmany(timeout_ms=500))
            received += _received(await consumer.getmany(timeout_ms=1000))
        finally:
            await consumer.stop()
        return received

    return asyncio.run(consume())


def _received(batches: Mapping[Any, list[Any]]) -> list[Received]:
    """The records of a kafka-python or aiokafka poll, partition by partition."""
    return [
        Received(r.key, r.value, _header_dict(r.headers), r.partition, r.offset)
        for records in batches.values()
        for r in records
    ]


def _header_dict(headers: Any) -> dict[str, bytes]:
    pairs = [(name, bytes(value)) for name, value in headers]
    out = dict(pairs)
    assert len(out) == len(pairs), f"a header name appears twice: {pairs}"
    return out


def _key(event: kaudit.AuditEvent) -> bytes:
    return f"{event.resource.type}:{event.resource.id}".encode()


def _sequence(event: kaudit.AuditEvent) -> int:
    assert event.integrity is not None, "events from the log are sequenced"
    return event.integrity.sequence_number


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------- formats


@pytest.mark.kafka
def test_native_over_scram_with_acl_creates_topic_and_is_read_by_confluent_kafka(
    tmp_path: Path,
    alice_config: dict[str, str],
    admin_config: dict[str, str],
    kafka_tool: KafkaTool,
    unique_topic: str,
) -> None:
    """alice (SCRAM-SHA-512) granted WRITE+CREATE+DESCRIBE: the exporter creates the topic
    with broker defaults and each record is the log line, keyed by resource."""
    _alice_may_write(kafka_tool, alice_config, unique_topic)
    config = _config(tmp_path, _destination(alice_config, unique_topic))
    _record_events(config)

    runner = _drain(config)

    lines = _log_lines(config)
    assert len(lines) == len(EVENTS)
    assert runner.metrics.sent == len(EVENTS)
    assert runner.metrics.dead_lettered == 0
    assert runner.lag() == 0
    # Broker defaults: the harness's num.partitions is 1.
    assert _topic_partitions(admin_config, unique_topic) == 1

    received = _consume_confluent(admin_config, unique_topic, len(EVENTS))
    assert [r.value for r in received] == lines
    for record, line in zip(received, lines, strict=True):
        event = codec.decode(line)
        assert record.key == _key(event)
        assert record.headers == {EVENT_ID_HEADER: event.event_id.encode()}
    keys = [r.key for r in received]
    assert keys == [
        b"topic:orders",
        b"acl:User:bob/Topic:LITERAL:orders",
        b"topic:orders",
        b"user:alice",
        b"topic:orders",
    ]
    types = [codec.decode(r.value).event_type for r in received]
    assert types == [event_type for event_type, _ in EVENTS]

    # Later events go to the existing topic; nothing already delivered is sent again.
    _record_events(config, EVENTS[:2])
    assert _drain(config).metrics.sent == 2
    again = _consume_confluent(admin_config, unique_topic, len(EVENTS) + 2)
    assert [r.value for r in again] == _log_lines(config)


@pytest.mark.kafka
def test_cloudevents_structured_over_plain_is_read_by_kafka_python(
    tmp_path: Path,
    sasl_config: Callable[..., dict[str, str]],
    admin_config: dict[str, str],
    kafka_tool: KafkaTool,
    unique_topic: str,
) -> None:
    """One structured-mode CloudEvent per record, with the CloudEvents content-type."""
    alice = sasl_config("alice", "PLAIN")
    _alice_may_write(kafka_tool, alice, unique_topic)
    config = _cloudevents_recorded(tmp_path, alice, unique_topic, "structured")

    runner = _drain(config)
    assert runner.metrics.sent == len(EVENTS)

    received = _consume_kafka_python(admin_config["bootstrap.servers"], unique_topic, len(EVENTS))
    events = [codec.decode(line) for line in _log_lines(config)]
    assert len(received) == len(events)
    for record, event in zip(received, events, strict=True):
        ce = orjson.loads(record.value)
        assert ce["specversion"] == "1.0"
        assert ce["id"] == event.event_id
        assert ce["type"] == f"io.kaudit.{event.event_type}"
        assert ce["source"] == "kaudit://prod-us-west-2/sdk"
        assert ce["time"] == event.timestamp
        assert ce["subject"] == (
            event.resource.path or f"{event.resource.type}/{event.resource.id}"
        )
        assert ce["datacontenttype"] == "application/json"
        assert ce["data"] == codec.to_dict(event)
        assert from_cloudevent(record.value) == event
        assert record.key == _key(event)
        assert record.headers == {
            "content-type": b"application/cloudevents+json; charset=UTF-8",
            EVENT_ID_HEADER: event.event_id.encode(),
        }
    assert orjson.loads(received[0].value)["subject"] == "kafka://prod/topic/orders"


@pytest.mark.kafka
def test_cloudevents_binary_over_scram_sha_256_is_read_by_aiokafka(
    tmp_path: Path,
    sasl_config: Callable[..., dict[str, str]],
    admin_config: dict[str, str],
    kafka_tool: KafkaTool,
    unique_topic: str,
) -> None:
    """Kafka binding binary mode: ce_ headers and content-type, the native event as value."""
    alice = sasl_config("alice", "SCRAM-SHA-256")
    _alice_may_write(kafka_tool, alice, unique_topic)
    config = _cloudevents_recorded(tmp_path, alice, unique_topic, "binary")

    assert _drain(config).metrics.sent == len(EVENTS)

    received = _consume_aiokafka(admin_config["bootstrap.servers"], unique_topic, len(EVENTS))
    lines = _log_lines(config)
    assert [r.value for r in received] == lines
    for record, line in zip(received, lines, strict=True):
        event = codec.decode(line)
        assert record.key == _key(event)
        assert record.headers == {
            "ce_specversion": b"1.0",
            "ce_id": event.event_id.encode(),
            "ce_source": b"kaudit://prod-us-west-2/sdk",
            "ce_type": f"io.kaudit.{event.event_type}".encode(),
            "ce_time": event.timestamp.encode(),
            "ce_subject": (
                event.resource.path or f"{event.resource.type}/{event.resource.id}"
            ).encode(),
            "content-type": b"application/json",
            EVENT_ID_HEADER: event.event_id.encode(),
        }
        assert from_cloudevent_binary(record.headers.items(), record.value) == event


@pytest.mark.kafka
def test_ocsf_over_plain_as_admin_is_read_by_confluent_kafka(
    tmp_path: Path,
    sasl_config: Callable[..., dict[str, str]],
    admin_config: dict[str, str],
    unique_topic: str,
) -> None:
    """OCSF: API Activity (6003) for Kafka operations, Authentication (3002) for sign-in."""
    config = _config(
        tmp_path, _destination(sasl_config("admin", "PLAIN"), unique_topic, format="ocsf")
    )
    _record_events(config)

    assert _drain(config).metrics.sent == len(EVENTS)

    received = _consume_confluent(admin_config, unique_topic, len(EVENTS))
    events = [codec.decode(line) for line in _log_lines(config)]
    assert len(received) == len(events)
    for record, event in zip(received, events, strict=True):
        ocsf = orjson.loads(record.value)
        assert ocsf["metadata"]["uid"] == event.event_id
        assert ocsf["metadata"]["sequence"] == _sequence(event)
        assert ocsf["metadata"]["correlation_uid"] == "req_kafka_exporter"
        assert record.key == _key(event)
        assert record.headers == {EVENT_ID_HEADER: event.event_id.encode()}
    assert [orjson.loads(r.value)["class_uid"] for r in received] == [6003, 6003, 6003, 3002, 6003]
    login = orjson.loads(received[3].value)
    assert login["user"] == {
        "uid": "User:alice",
        "name": "alice",
        "type_id": 1,
        "type": "User",
        "groups": [{"name": "ops", "type": "role"}],
    }
    assert (login["auth_protocol_id"], login["auth_protocol"]) == (99, "SCRAM-SHA-512")
    created = orjson.loads(received[0].value)
    assert created["api"]["operation"] == "create"
    assert created["resources"] == [
        {"type": "topic", "name": "orders", "uid": "kafka://prod/topic/orders"}
    ]


# ---------------------------------------------------------------------------- keys


@pytest.mark.kafka
def test_each_resource_stays_in_one_partition_in_order_hashed_like_java_clients(
    tmp_path: Path, admin_config: dict[str, str], unique_topic: str
) -> None:
    """On an existing 4-partition topic, a resource's events share the partition Java's
    murmur2 partitioner picks for its key, in log order, over several runner batches."""
    create_topic(admin_config, unique_topic, partitions=4)
    config = _config(tmp_path, _destination(admin_config, unique_topic))
    resources = [{"type": "topic", "id": f"t{i}"} for i in range(8)]
    events = [("topic.config_changed", resources[i % 8]) for i in range(80)]
    _record_events(config, events)
    [runner] = runners_for(config)
    runner.batch_max = 25  # several send() calls
    try:
        runner.drain()
    finally:
        runner.close()
    assert runner.metrics.sent == 80

    received = _consume_confluent(admin_config, unique_topic, 80)
    assert len(received) == 80
    by_key: dict[bytes, list[Received]] = {}
    for record in received:
        assert record.key is not None
        by_key.setdefault(record.key, []).append(record)
    assert len(by_key) == 8
    for key, records in by_key.items():
        assert {r.partition for r in records} == {(murmur2(key) & 0x7FFFFFFF) % 4}
        sequences = [
            _sequence(codec.decode(r.value)) for r in sorted(records, key=lambda r: r.offset)
        ]
        assert sequences == sorted(sequences)
        assert len(sequences) == 10
    assert len({r.partition for r in received}) > 1


# ---------------------------------------------------------------------------- failures


@pytest.mark.kafka
@pytest.mark.parametrize("topic_exists", [True, False], ids=["existing-topic", "missing-topic"])
def test_bob_without_acls_is_dead_lettered_and_the_log_keeps_everything(
    tmp_path: Path,
    bob_config: dict[str, str],
    admin_config: dict[str, str],
    unique_topic: str,
    topic_exists: bool,
) -> None:
    if topic_exists:
        create_topic(admin_config, unique_topic)
    config = _config(tmp_path, _destination(bob_config, unique_topic))
    _record_events(config)

    runner = _drain(config)

    assert runner.metrics.sent == 0
    assert runner.metrics.dead_lettered == len(EVENTS)
    message = runner.metrics.last_error
    assert message is not None
    assert message.startswith(
        f"kafka destination kafka:{unique_topic} ({bob_config['bootstrap.servers']}): "
        "TOPIC_AUTHORIZATION_FAILED: not authorized to describe topic "
        f"{unique_topic} as bob"
    ), message
    assert runner.dead_letter is not None
    assert runner.dead_letter.parent == config.data_path / "dead-letter"
    dead = [orjson.loads(line) for line in runner.dead_letter.read_bytes().splitlines()]
    lines = _log_lines(config)
    assert [d["reason"] for d in dead] == [message] * len(EVENTS)
    assert [orjson.dumps(d["record"]) for d in dead] == [
        orjson.dumps(orjson.loads(line)) for line in lines
    ]
    # The local log is the source of truth and still holds every event.
    assert [codec.decode(line).event_type for line in lines] == [t for t, _ in EVENTS]
    if topic_exists:
        assert _end_offset(admin_config, unique_topic) == 0
    else:
        assert _topic_partitions(admin_config, unique_topic) is None


@pytest.mark.kafka
def test_user_who_may_only_describe_the_topic_is_dead_lettered_before_producing(
    tmp_path: Path,
    alice_config: dict[str, str],
    admin_config: dict[str, str],
    kafka_tool: KafkaTool,
    unique_topic: str,
) -> None:
    create_topic(admin_config, unique_topic)
    grant_topic(kafka_tool, "alice", unique_topic, "Describe")
    wait_until_described(alice_config, unique_topic)
    config = _config(tmp_path, _destination(alice_config, unique_topic))
    _record_events(config)

    runner = _drain(config)

    assert runner.metrics.dead_lettered == len(EVENTS)
    assert runner.metrics.last_error == (
        f"kafka destination kafka:{unique_topic} ({alice_config['bootstrap.servers']}): "
        f"TOPIC_AUTHORIZATION_FAILED: not authorized to write topic {unique_topic} as alice "
        "(writing needs WRITE on it)"
    )
    assert _end_offset(admin_config, unique_topic) == 0


@pytest.mark.kafka
def test_fatal_producer_error_is_reported_and_the_same_exporter_recovers_once_granted_write(
    tmp_path: Path,
    kafka: KafkaInfo,
    admin_config: dict[str, str],
    kafka_tool: KafkaTool,
    unique_topic: str,
) -> None:
    """A user who may create the topic but write no topic at all: the exporter creates
    it, then the idempotent producer cannot get a producer id, which librdkafka treats
    as fatal. The exporter drops that producer; the next send names the lasting cause
    (no WRITE), and once WRITE is granted the same exporter delivers."""
    # A fresh user: alice may hold WRITE on other tests' topics, and WRITE on any topic
    # is enough to get a producer id.
    user, password = new_scram_user(admin_config)
    user_config = {
        "bootstrap.servers": kafka.sasl_bootstrap_servers,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
    }
    grant_topic(kafka_tool, user, unique_topic, "Create", "Describe")
    wait_until_described(user_config, unique_topic)
    config = _config(tmp_path, _destination(user_config, unique_topic))
    _record_events(config)
    lines = _log_lines(config)
    exporter = KafkaExporter(
        KafkaDestination.model_validate(_destination(user_config, unique_topic))
    )
    prefix = f"kafka destination kafka:{unique_topic} ({kafka.sasl_bootstrap_servers}): "
    try:
        with pytest.raises(ExporterError) as fatal:
            exporter.send(lines)
        # confluent-kafka raises the fatal error from flush(), sometimes with its code,
        # sometimes lost under a SystemError; either way the producer is replaced.
        assert str(fatal.value).startswith(prefix)
        if not fatal.value.retryable:
            assert "CLUSTER_AUTHORIZATION_FAILED" in str(fatal.value)
            assert "idempotence PID" in str(fatal.value)
        assert _topic_partitions(admin_config, unique_topic) == 1

        with pytest.raises(ExporterError) as refused:
            exporter.send(lines)
        assert refused.value.retryable is False
        assert str(refused.value) == (
            f"{prefix}TOPIC_AUTHORIZATION_FAILED: not authorized to write topic "
            f"{unique_topic} as {user} (writing needs WRITE on it)"
        )

        grant_topic(kafka_tool, user, unique_topic, "Write")
        deadline = time.monotonic() + 15
        while True:
            try:
                exporter.send(lines)
                break
            except ExporterError:
                # The WRITE ACL is still on its way to the authorizer.
                assert time.monotonic() < deadline
                time.sleep(0.5)
    finally:
        exporter.close()
    received = _consume_confluent(admin_config, unique_topic, len(lines))
    assert [r.value for r in received] == lines


@pytest.mark.kafka
def test_record_too_large_for_the_topic_is_dead_lettered(
    tmp_path: Path, admin_config: dict[str, str], unique_topic: str
) -> None:
    create_topic(admin_config, unique_topic, config={"max.message.bytes": "200"})
    destination = _destination(
        admin_config, unique_topic, name="tiny", client_config={"compression.type": "none"}
    )
    config = _config(tmp_path, destination)
    _record_events(config)

    runner = _drain(config)

    assert runner.metrics.dead_lettered == len(EVENTS)
    assert runner.metrics.last_error is not None
    assert runner.metrics.last_error.startswith(
        f"kafka destination tiny ({admin_config['bootstrap.servers']}): MSG_SIZE_TOO_LARGE: "
    )
    assert f"{len(EVENTS)} of {len(EVENTS)} records failed" in runner.metrics.last_error
    assert runner.dead_letter is not None
    assert len(runner.dead_letter.read_bytes().splitlines()) == len(EVENTS)


@pytest.mark.kafka
def test_unreachable_broker_is_retryable_within_the_message_timeout_and_the_cursor_stays(
    tmp_path: Path, kafka: KafkaInfo
) -> None:
    """Nothing listens at the address: a retryable error naming the address and the
    refused connection within a few seconds, no dead letters, and the cursor unmoved."""
    address = f"127.0.0.1:{_free_port()}"
    destination = {
        "type": "kafka",
        "bootstrap_servers": [address],
        "topic": "audit-events",
        "client_config": {"message.timeout.ms": 2000, "socket.connection.setup.timeout.ms": 1000},
    }
    config = _config(tmp_path, destination)
    _record_events(config)
    lines = _log_lines(config)

    exporter = build_exporter(KafkaDestination.model_validate(destination))
    started = time.monotonic()
    try:
        with pytest.raises(ExporterError) as failed:
            exporter.send(lines)
    finally:
        exporter.close()
    assert time.monotonic() - started < 10
    assert failed.value.retryable is True
    text = str(failed.value)
    assert text.startswith(f"kafka destination kafka:audit-events ({address}): "), text
    assert "no answer from the brokers within 2 s" in text or "_TRANSPORT" in text, text
    assert "Connection refused" in text

    # Through the runner: it retries with backoff until stopped, and saves nothing.
    [runner] = runners_for(config)
    before = runner.feed.position()
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while runner.metrics.failed == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=30)
        runner.close()
    assert not thread.is_alive()
    assert runner.metrics.failed >= 1
    assert runner.metrics.last_error is not None
    assert address in runner.metrics.last_error
    assert runner.metrics.sent == runner.metrics.dead_lettered == 0
    assert runner.feed.position() == before
    assert runner.lag() == len(lines)


@pytest.mark.kafka
def test_broker_gone_after_delivery_times_out_retryably_then_the_runner_catches_up(
    tmp_path: Path, kafka: KafkaInfo
) -> None:
    """A second broker of our own is stopped under a running runner: the batch fails
    with _MSG_TIMED_OUT (every delivery report is checked), nothing is dead-lettered,
    and when the broker is back the same runner delivers what was waiting."""
    del kafka  # only to make sure the Kafka distribution is there
    broker = LocalKafka(tmp_path / "broker")
    info = broker.start()
    try:
        settings = info.client_config()
        destination = _destination(
            settings,
            "audit-events",
            client_config={"message.timeout.ms": 3000, "reconnect.backoff.max.ms": 500},
        )
        config = _config(tmp_path, destination)
        _record_events(config, EVENTS[:3])
        [runner] = runners_for(config)
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,))
        runner.interval_s = 0.2
        thread.start()
        try:
            # `sent` is counted before the cursor is committed: wait for both, or the
            # position read next could be the one before the delivery.
            wait_for(
                lambda: (
                    runner.metrics.sent == 3
                    and runner.feed.last_sequence() is not None
                    and runner.feed.last_sequence() == runner.metrics.last_sequence
                ),
                "first delivery, committed",
            )
            delivered_up_to = runner.feed.position()

            assert broker.stop()
            _record_events(config, EVENTS[3:])
            wait_for(lambda: runner.metrics.failed >= 1, "a failed delivery")
            error = runner.metrics.last_error
            assert error is not None
            assert error.startswith(
                f"kafka destination kafka:audit-events ({info.bootstrap_servers}): _MSG_TIMED_OUT: "
            ), error
            assert "(2 of 2 records failed)" in error
            assert runner.metrics.dead_lettered == 0
            assert runner.feed.position() == delivered_up_to

            broker.start()
            wait_for(lambda: runner.metrics.sent == len(EVENTS), "catching up", timeout=60)
        finally:
            stop.set()
            thread.join(timeout=60)
            runner.close()
        assert not thread.is_alive()
        assert runner.lag() == 0
        received = _consume_confluent(settings, "audit-events", len(EVENTS))
    finally:
        broker.stop()
    ids = [codec.decode(line).event_id for line in _log_lines(config)]
    # At-least-once: every event is there; a record acknowledged just before the broker
    # went away could appear twice.
    assert {r.headers[EVENT_ID_HEADER].decode() for r in received} == set(ids)
    assert [r.value for r in received][:3] == _log_lines(config)[:3]


@pytest.mark.kafka
def test_missing_topic_with_create_topic_false_is_retryable_and_not_created(
    tmp_path: Path, admin_config: dict[str, str], unique_topic: str
) -> None:
    """The harness broker auto-creates topics on request; the exporter must not let it."""
    destination = KafkaDestination.model_validate(
        _destination(admin_config, unique_topic, create_topic=False)
    )
    config = _config(tmp_path, destination.model_dump())
    _record_events(config)
    exporter = KafkaExporter(destination)
    try:
        with pytest.raises(ExporterError) as failed:
            exporter.send(_log_lines(config))
    finally:
        exporter.close()
    assert failed.value.retryable is True
    assert f"topic {unique_topic} does not exist and create_topic is false" in str(failed.value)
    time.sleep(1)
    assert _topic_partitions(admin_config, unique_topic) is None


# ---------------------------------------------------------------------------- config

SEED_KAFKA_DESTINATION = """\
enterprise:
  audit:
    destination:
      type: kafka
      bootstrap_servers:
        - kafka:9092
      topic: audit-events
      security:
        security_protocol: SASL_SSL
        sasl_mechanism: SCRAM-SHA-256
        sasl_username: audit-producer
        sasl_password: ${AUDIT_KAFKA_PASSWORD}
"""


def test_seed_kafka_destination_example_loads_and_builds_a_kafka_exporter() -> None:
    config = load_config_text(SEED_KAFKA_DESTINATION, env={"AUDIT_KAFKA_PASSWORD": "s3cret"})
    destination = config.audit.destination
    assert isinstance(destination, KafkaDestination)
    assert destination.bootstrap_servers == ["kafka:9092"]
    assert destination.topic == "audit-events"
    assert destination.format == "native"
    assert destination.create_topic is True
    assert destination.client_settings() == {
        "bootstrap.servers": "kafka:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "audit-producer",
        "sasl.password": "s3cret",
    }
    exporter = build_exporter(destination)
    # Building connects to nothing: the producer is made on the first send.
    assert isinstance(exporter, KafkaExporter)
    assert exporter.name == "kafka:audit-events"
    assert exporter.native_input is True
    exporter.close()
