"""Real clients through the gateway: confluent-kafka, kafka-python, aiokafka and Kafka's
own Java command-line tools, with SCRAM and PLAIN users; what they did is recorded."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from gateway_fixtures import RunningGateway, one

from kaudit.dev.kafka import KafkaInfo
from support.kafka import create_topic, grant

pytestmark = pytest.mark.kafka

TOPICS = "org.apache.kafka.tools.TopicCommand"
ACLS = "org.apache.kafka.tools.AclCommand"
CONFIGS = "kafka.admin.ConfigCommand"
CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


def test_confluent_kafka_produce_and_consume_are_aggregated_per_client_and_topic(
    gateway: RunningGateway,
    admin_config: dict[str, str],
    sasl_config: Any,
    kafka_tool: Callable[..., Any],
    unique_topic: str,
) -> None:
    create_topic(admin_config, unique_topic, partitions=2)
    grant(kafka_tool, "User:alice", "--operation", "Write", "--operation", "Read",
          "--operation", "Describe", "--topic", unique_topic)  # fmt: skip
    grant(kafka_tool, "User:alice", "--operation", "Read", "--group", f"g-{unique_topic}")
    alice = sasl_config("alice", mechanism="SCRAM-SHA-256")
    producer = Producer(gateway.client({**alice, "client.id": "billing-svc", "linger.ms": "5"}))
    for i in range(500):
        producer.produce(unique_topic, b"v" * 1024, key=str(i).encode())
    assert producer.flush(30) == 0
    consumer = Consumer(
        gateway.client(
            {**alice, "group.id": f"g-{unique_topic}", "auto.offset.reset": "earliest",
             "client.id": "billing-reader"}
        )
    )  # fmt: skip
    consumer.subscribe([unique_topic])
    received = 0
    deadline = time.monotonic() + 30
    while received < 500 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            received += 1
    consumer.close()
    assert received == 500

    produced = one(gateway.events("records.produced"), resource__id=unique_topic)
    assert produced["actor"]["id"] == "User:alice"
    assert produced["actor"]["auth"] == "SCRAM-SHA-256"
    assert produced["actor"]["client_id"] == "billing-svc"
    assert produced["details"]["count"] == 500
    assert produced["details"]["bytes"] > 500 * 1024
    assert produced["details"]["requests"] >= 1
    assert produced["details"]["first_seen"] <= produced["details"]["last_seen"]
    assert produced["authorization"]["checks"][0]["operation"] == "WRITE"
    consumed = one(gateway.events("records.consumed"), resource__id=unique_topic)
    assert consumed["actor"]["client_id"] == "billing-reader"
    assert consumed["details"]["count"] == 500
    assert consumed["action"]["result"] == "success"
    # Joining the group and committing offsets are generic requests; heartbeats are not.
    apis = {e["context"]["api"]["name"] for e in gateway.events("kafka.request")}
    assert {"JoinGroup", "SyncGroup", "OffsetCommit"} <= apis
    assert "Heartbeat" not in apis and "Metadata" not in apis


def test_large_produce_requests_and_fetch_responses_arrive_byte_for_byte(
    gateway: RunningGateway,
    admin_config: dict[str, str],
    sasl_config: Any,
    kafka_tool: Callable[..., Any],
    unique_topic: str,
) -> None:
    """Megabyte requests and responses are cut through the gateway in pieces, read into
    reused buffers: every record arrives intact (the client checks each batch's CRC)
    and is counted once."""
    create_topic(admin_config, unique_topic, partitions=3)
    grant(kafka_tool, "User:alice", "--operation", "All", "--topic", unique_topic)
    grant(kafka_tool, "User:alice", "--operation", "Read", "--group", f"g-{unique_topic}")
    alice = sasl_config("alice", mechanism="SCRAM-SHA-512")
    values = {hashlib.sha256(str(i).encode()).digest() * 128 for i in range(6000)}  # 4 KiB
    producer = Producer(
        gateway.client({**alice, "linger.ms": "50", "batch.size": "1000000",
                        "compression.type": "none"})
    )  # fmt: skip
    for value in values:
        producer.produce(unique_topic, value)
    assert producer.flush(60) == 0
    consumer = Consumer(
        gateway.client(
            {**alice, "group.id": f"g-{unique_topic}", "auto.offset.reset": "earliest",
             "check.crcs": "true", "max.partition.fetch.bytes": "3000000"}
        )
    )  # fmt: skip
    consumer.subscribe([unique_topic])
    received: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(received) < len(values) and time.monotonic() < deadline:
        for message in consumer.consume(1000, 0.5):
            assert message.error() is None, message.error()
            received.append(message.value())
    consumer.close()
    assert len(received) == len(values) and set(received) == values

    produced = one(gateway.events("records.produced"), resource__id=unique_topic)
    assert produced["details"]["count"] == len(values)
    assert produced["details"]["bytes"] > len(values) * 4096
    consumed = one(gateway.events("records.consumed"), resource__id=unique_topic)
    assert consumed["details"]["count"] == len(values)
    assert consumed["details"]["requests"] < len(values) / 100  # megabyte responses


def test_produce_without_write_permission_is_denied_and_aggregated(
    gateway: RunningGateway,
    admin_config: dict[str, str],
    bob_config: dict[str, str],
    kafka_tool: Callable[..., Any],
    unique_topic: str,
) -> None:
    create_topic(admin_config, unique_topic)
    # Bob may see the topic (and get a producer id) but not write to it.
    grant(kafka_tool, "User:bob", "--operation", "Describe", "--topic", unique_topic)
    grant(kafka_tool, "User:bob", "--operation", "IdempotentWrite", "--cluster")
    producer = Producer(gateway.client({**bob_config, "message.timeout.ms": "5000"}))
    errors: list[Any] = []
    for _ in range(3):
        producer.produce(unique_topic, b"x", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(15)
    assert len(errors) == 3 and all(e is not None for e in errors)

    produced = one(gateway.events("records.produced"), resource__id=unique_topic)
    assert produced["actor"]["id"] == "User:bob"
    assert produced["action"]["result"] == "denied"
    assert produced["action"]["error"] == "TOPIC_AUTHORIZATION_FAILED"
    denied = one(gateway.events("access.denied"), resource__id=unique_topic)
    assert denied["details"]["denied_event_type"] == "records.produced"
    assert denied["authorization"]["checks"][0]["operation"] == "WRITE"


def test_kafka_python_client_is_recorded_with_its_software_name(
    gateway: RunningGateway, kafka: KafkaInfo, admin_config: dict[str, str], unique_topic: str
) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient
    from kafka.admin import NewTopic as KpNewTopic

    admin_user = kafka.user("admin")
    common: dict[str, Any] = {
        "bootstrap_servers": gateway.bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": admin_user.name,
        "sasl_plain_password": admin_user.password,
        "client_id": "kp-client",
    }
    admin = KafkaAdminClient(**common)
    admin.create_topics([KpNewTopic(unique_topic, 1, 1)])
    admin.close()
    producer = KafkaProducer(**common)
    for _ in range(20):
        producer.send(unique_topic, b"hello")
    producer.flush(30)
    producer.close()
    consumer = KafkaConsumer(unique_topic, auto_offset_reset="earliest",
                             consumer_timeout_ms=10000, **common)  # fmt: skip
    assert len(list(consumer)[:20]) == 20
    consumer.close()

    created = one(gateway.events("topic.created"), resource__id=unique_topic)
    assert created["actor"]["id"] == "User:admin"
    assert created["actor"]["auth"] == "PLAIN"
    assert created["actor"]["client_id"] == "kp-client"
    assert created["actor"]["user_agent"].startswith("kafka-python")
    assert (
        one(gateway.events("records.produced"), resource__id=unique_topic)["details"]["count"] == 20
    )
    assert (
        one(gateway.events("records.consumed"), resource__id=unique_topic)["details"]["count"] == 20
    )
    assert admin_user.password.encode() not in gateway.log_bytes()


def test_aiokafka_client_is_recorded(
    gateway: RunningGateway,
    kafka: KafkaInfo,
    admin_config: dict[str, str],
    kafka_tool: Callable[..., Any],
    unique_topic: str,
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    create_topic(admin_config, unique_topic)
    grant(kafka_tool, "User:alice", "--operation", "Write", "--operation", "Read",
          "--operation", "Describe", "--topic", unique_topic)  # fmt: skip
    grant(kafka_tool, "User:alice", "--operation", "Read", "--group", f"aio-{unique_topic}")
    alice = kafka.user("alice")
    common: dict[str, Any] = {
        "bootstrap_servers": gateway.bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": alice.name,
        "sasl_plain_password": alice.password,
        "client_id": "aio-client",
    }

    async def run() -> int:
        producer = AIOKafkaProducer(**common)
        await producer.start()
        try:
            for _ in range(7):
                await producer.send_and_wait(unique_topic, b"x" * 100)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            unique_topic, group_id=f"aio-{unique_topic}", auto_offset_reset="earliest", **common
        )
        await consumer.start()
        received = 0
        try:
            while received < 7:
                batch = await consumer.getmany(timeout_ms=1000)
                received += sum(len(records) for records in batch.values())
        finally:
            await consumer.stop()
        return received

    assert asyncio.run(asyncio.wait_for(run(), 120)) == 7
    logins = [e for e in gateway.events("auth.login") if e["actor"]["client_id"] == "aio-client"]
    assert logins and {e["actor"]["id"] for e in logins} == {"User:alice"}
    produced = one(gateway.events("records.produced"), resource__id=unique_topic)
    assert produced["actor"]["client_id"] == "aio-client"
    assert produced["details"]["count"] == 7
    assert produced["details"]["requests"] == 7
    consumed = one(gateway.events("records.consumed"), resource__id=unique_topic)
    assert consumed["details"]["count"] == 7


def test_java_cli_tools_through_the_gateway(
    gateway: RunningGateway,
    kafka_tool: Callable[..., Any],
    client_properties: Callable[..., Path],
    unique_topic: str,
) -> None:
    admin = str(client_properties("admin"))
    via = {"bootstrap": gateway.bootstrap}
    kafka_tool(TOPICS, "--create", "--topic", unique_topic, "--partitions", "2",
               "--replication-factor", "1", "--command-config", admin, **via)  # fmt: skip
    kafka_tool(ACLS, "--add", "--allow-principal", "User:alice", "--operation", "Read",
               "--topic", unique_topic, "--command-config", admin, **via)  # fmt: skip
    kafka_tool(CONFIGS, "--alter", "--entity-type", "topics", "--entity-name",
               unique_topic, "--add-config", "retention.ms=7200000",
               "--command-config", admin, **via)  # fmt: skip
    kafka_tool(CONSOLE_PRODUCER, "--topic", unique_topic, "--command-config", admin,
               input="one\ntwo\nthree\n", **via)  # fmt: skip
    group = f"cli-{unique_topic}"
    out = kafka_tool(CONSOLE_CONSUMER, "--topic", unique_topic, "--from-beginning",
                     "--max-messages", "3", "--group", group, "--timeout-ms", "30000",
                     "--command-config", admin, **via)  # fmt: skip
    assert sorted(out.stdout.split()) == ["one", "three", "two"]
    kafka_tool(GROUPS, "--reset-offsets", "--group", group, "--topic", unique_topic,
               "--to-earliest", "--execute", "--command-config", admin, **via)  # fmt: skip
    kafka_tool(GROUPS, "--delete", "--group", group, "--command-config", admin, **via)
    kafka_tool(TOPICS, "--delete", "--topic", unique_topic, "--command-config", admin, **via)

    events = gateway.events()
    created = one(events, event_type="topic.created", resource__id=unique_topic)
    assert created["actor"]["id"] == "User:admin"
    assert created["actor"]["user_agent"].startswith("apache-kafka-java/")
    assert created["details"]["partitions"] == 2
    acl = one(events, event_type="acl.created", resource__id=f"TOPIC:{unique_topic}")
    assert acl["details"]["bindings"][0]["principal"] == "User:alice"
    assert acl["details"]["bindings"][0]["operation"] == "READ"
    config = one(events, event_type="topic.config_changed", resource__id=unique_topic)
    assert {"field": "retention.ms", "operation": "SET", "new_value": "7200000"} in config[
        "details"
    ]["changes"]
    assert (
        one(events, event_type="records.produced", resource__id=unique_topic)["details"]["count"]
        == 3
    )
    assert (
        one(events, event_type="records.consumed", resource__id=unique_topic)["details"]["count"]
        == 3
    )
    reset = one(events, event_type="group.offsets_reset", resource__id=group)
    assert {p["offset"] for p in reset["details"]["partitions"]} == {0}
    one(events, event_type="group.deleted", resource__id=group)
    one(events, event_type="topic.deleted", resource__id=unique_topic)


def test_reassignment_leader_election_and_offset_deletion_are_recorded(
    gateway: RunningGateway,
    admin_config: dict[str, str],
    admin_sasl_config: dict[str, str],
    kafka_tool: Callable[..., Any],
    client_properties: Callable[..., Path],
    tmp_path: Path,
    unique_topic: str,
) -> None:
    from confluent_kafka import ElectionType, TopicPartition

    create_topic(admin_config, unique_topic, partitions=2)
    admin_props = str(client_properties("admin"))
    via = {"bootstrap": gateway.bootstrap}
    plan = tmp_path / "plan.json"
    move = {"topic": unique_topic, "partition": 0, "replicas": [1]}
    plan.write_text(json.dumps({"version": 1, "partitions": [move]}))
    kafka_tool("org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
               "--reassignment-json-file", str(plan), "--execute",
               "--command-config", admin_props, **via)  # fmt: skip
    admin = AdminClient(gateway.client(admin_sasl_config))
    # Partition 0's preferred leader already leads: the broker answers ELECTION_NOT_NEEDED,
    # and the election request is recorded with that outcome.
    election = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(unique_topic, 0)])
    with contextlib.suppress(KafkaException):
        election.result(timeout=30)
    group = f"offsets-{unique_topic}"
    kafka_tool(CONSOLE_CONSUMER, "--topic", unique_topic, "--from-beginning",
               "--group", group, "--timeout-ms", "3000",
               "--command-config", admin_props, check=False, **via)  # fmt: skip
    kafka_tool(GROUPS, "--delete-offsets", "--group", group, "--topic", unique_topic,
               "--command-config", admin_props, check=False, **via)  # fmt: skip

    events = gateway.events()
    reassigned = one(events, event_type="admin.partitions_reassigned", resource__id=unique_topic)
    assert reassigned["details"]["partitions"] == [
        {"partition": 0, "replicas": [1], "error_code": 0}
    ]
    elected = one(events, event_type="admin.leaders_elected", resource__id=unique_topic)
    assert elected["details"]["election_type"] == "PREFERRED"
    assert elected["details"]["partitions"][0]["partition"] == 0
    deleted = [e for e in events if e["event_type"] == "group.offsets_deleted"]
    assert deleted and deleted[0]["resource"]["id"] == group
