"""Offset resets are resets (issue 18 item 5): consumers that use assign() commit with
generation -1 and no member id, as admin tools do, and are still ordinary commits; a
reset is a commit that moves the group away from where its consumption had reached.
Real clients through the gateway against the real broker; the broker's committed
offsets are checked as well as what was recorded."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from gateway_fixtures import RunningGateway

from support.kafka import create_topic

pytestmark = pytest.mark.kafka

CLIENTS = Path(__file__).resolve().parents[1] / "clients"
GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


def _produce(settings: dict[str, str], topic: str, count: int) -> None:
    producer = Producer(settings)
    for i in range(count):
        producer.produce(topic, b"r%d" % i, partition=0)
    assert producer.flush(30) == 0


def _committed(admin_config: dict[str, str], group: str, topic: str) -> int:
    """The group's committed offset of partition 0, read from the broker directly."""
    admin = AdminClient(admin_config)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])
    result = admin.list_consumer_group_offsets([request])[group].result(timeout=30)
    return int(result.topic_partitions[0].offset)


def _commit_events(gateway: RunningGateway, group: str) -> tuple[list[Any], list[Any]]:
    """(group.offsets_reset records, ordinary OffsetCommit records) of `group`."""
    events = gateway.events()
    mine = [e for e in events if e["resource"]["id"] == group]
    resets = [e for e in mine if e["event_type"] == "group.offsets_reset"]
    commits = [
        e
        for e in mine
        if e["event_type"] == "kafka.request" and e["context"]["api"]["name"] == "OffsetCommit"
    ]
    return resets, commits


def test_librdkafka_assign_commits_are_ordinary_and_moving_the_group_away_is_a_reset(
    gateway: RunningGateway,
    admin_config: dict[str, str],
    admin_sasl_config: dict[str, str],
    unique_topic: str,
) -> None:
    create_topic(admin_config, unique_topic)
    _produce(admin_config, unique_topic, 20)
    group = f"assign-{unique_topic}"
    consumer = Consumer(
        gateway.client(
            {**admin_sasl_config, "group.id": group, "enable.auto.commit": "false",
             "client.id": "rdkafka-assign"}
        )
    )  # fmt: skip
    try:
        consumer.assign([TopicPartition(unique_topic, 0, 0)])
        received = 0
        deadline = time.monotonic() + 30
        while received < 20 and time.monotonic() < deadline:
            received += sum(1 for m in consumer.consume(100, 0.5) if m.error() is None)
        assert received == 20
        consumer.commit(asynchronous=False)  # its position: where consumption reached
        assert _committed(admin_config, group, unique_topic) == 20
        resets, commits = _commit_events(gateway, group)
        assert resets == [] and len(commits) == 1
        assert commits[0]["action"]["result"] == "success"

        # Re-reading: the same consumer moves the group back, then past what it read.
        consumer.commit(offsets=[TopicPartition(unique_topic, 0, 5)], asynchronous=False)
        consumer.commit(offsets=[TopicPartition(unique_topic, 0, 100)], asynchronous=False)
    finally:
        consumer.close()
    assert _committed(admin_config, group, unique_topic) == 100
    resets, _ = _commit_events(gateway, group)
    assert [r["details"]["partitions"] for r in resets] == [
        [{"topic": unique_topic, "partition": 0, "offset": 5, "reason": "behind_committed",
          "previous_offset": 20, "consumed_to": 20, "error_code": 0}],
        [{"topic": unique_topic, "partition": 0, "offset": 100, "reason": "ahead_of_consumption",
          "previous_offset": 5, "consumed_to": 20, "error_code": 0}],
    ]  # fmt: skip
    assert {r["actor"]["client_id"] for r in resets} == {"rdkafka-assign"}
    assert {r["action"]["result"] for r in resets} == {"success"}


def test_java_assign_commit_sync_is_ordinary_and_admin_resets_are_resets(
    gateway: RunningGateway,
    admin_config: dict[str, str],
    admin_sasl_config: dict[str, str],
    kafka_tool: Callable[..., Any],
    client_properties: Callable[..., Path],
    unique_topic: str,
) -> None:
    create_topic(admin_config, unique_topic)
    _produce(admin_config, unique_topic, 12)
    group = f"java-assign-{unique_topic}"
    admin_props = str(client_properties("admin"))
    via = {"bootstrap": False}
    out = kafka_tool(str(CLIENTS / "java" / "AssignCommit.java"), gateway.bootstrap,
                     admin_props, unique_topic, group, "12", **via)  # fmt: skip
    assert out.stdout.split()[-1] == "12"
    assert _committed(admin_config, group, unique_topic) == 12
    resets, commits = _commit_events(gateway, group)
    assert resets == [], resets
    assert [c["actor"]["client_id"] for c in commits] == ["java-assign-commit"]

    # Kafka's own tool resets the group (AdminClient.alterConsumerGroupOffsets inside).
    kafka_tool(GROUPS, "--reset-offsets", "--group", group, "--topic", unique_topic,
               "--to-offset", "3", "--execute", "--command-config", admin_props,
               bootstrap=gateway.bootstrap)  # fmt: skip
    assert _committed(admin_config, group, unique_topic) == 3
    # confluent-kafka's AdminClient.alter_consumer_group_offsets does the same.
    admin = AdminClient(gateway.client({**admin_sasl_config, "client.id": "ops-admin"}))
    moved = ConsumerGroupTopicPartitions(group, [TopicPartition(unique_topic, 0, 9)])
    admin.alter_consumer_group_offsets([moved])[group].result(timeout=30)
    assert _committed(admin_config, group, unique_topic) == 9

    resets, _ = _commit_events(gateway, group)
    assert [
        (p["offset"], p["reason"], p["previous_offset"])
        for r in resets
        for p in r["details"]["partitions"]
    ] == [(3, "not_consumed", 12), (9, "not_consumed", 3)]
    assert resets[1]["actor"]["client_id"] == "ops-admin"
    assert {r["actor"]["id"] for r in resets} == {"User:admin"}


def test_the_groups_committed_offset_is_learned_from_offset_fetch_answers(
    gateway: RunningGateway,
    admin_config: dict[str, str],
    admin_sasl_config: dict[str, str],
    unique_topic: str,
) -> None:
    """The group committed 4 before this gateway saw it (straight on the broker); a
    consumer through the gateway starts from there (its OffsetFetch answer says 4), so
    its later commit of 2 moves the group back: a reset."""
    create_topic(admin_config, unique_topic)
    _produce(admin_config, unique_topic, 10)
    group = f"learned-{unique_topic}"
    admin = AdminClient(admin_config)
    earlier = ConsumerGroupTopicPartitions(group, [TopicPartition(unique_topic, 0, 4)])
    admin.alter_consumer_group_offsets([earlier])[group].result(timeout=30)
    consumer = Consumer(
        gateway.client({**admin_sasl_config, "group.id": group, "enable.auto.commit": "false"})
    )
    try:
        consumer.assign([TopicPartition(unique_topic, 0)])  # from the committed offset
        offsets: list[int] = []
        deadline = time.monotonic() + 30
        while len(offsets) < 6 and time.monotonic() < deadline:
            offsets += [m.offset() for m in consumer.consume(100, 0.5) if m.error() is None]
        assert offsets == [4, 5, 6, 7, 8, 9]
        consumer.commit(offsets=[TopicPartition(unique_topic, 0, 2)], asynchronous=False)
    finally:
        consumer.close()
    assert _committed(admin_config, group, unique_topic) == 2
    resets, _ = _commit_events(gateway, group)
    assert [r["details"]["partitions"] for r in resets] == [
        [{"topic": unique_topic, "partition": 0, "offset": 2, "reason": "behind_committed",
          "previous_offset": 4, "consumed_to": 10, "error_code": 0}]
    ]  # fmt: skip
