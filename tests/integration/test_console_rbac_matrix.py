"""The RBAC matrix: every console action, once for a role a policy allows and once for a
role it does not. Each is checked in the recorded event (result and decision) and in
Kafka's state (the change happened, or did not)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourcePatternType,
    ResourceType,
)
from starlette.testclient import TestClient

from kaudit.dev.kafka import KafkaInfo
from support.console import ConsoleHarness
from support.kafka import create_topic, read_messages, wait_for

pytestmark = pytest.mark.kafka


@dataclass
class Case:
    action: str
    event_type: str
    allowed: str
    denied: str
    call: Callable[[TestClient, dict[str, str]], Any]
    happened: Callable[[KafkaInfo, dict[str, str]], bool]
    setup: Callable[[KafkaInfo, dict[str, str]], None] = lambda kafka, names: None


def _topics(kafka: KafkaInfo) -> dict[str, Any]:
    return AdminClient(kafka.client_config()).list_topics(timeout=10).topics


def _topic_config(kafka: KafkaInfo, topic: str, name: str) -> str | None:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    admin = AdminClient(kafka.client_config())  # referenced until the future resolves
    entries = admin.describe_configs([resource])[resource].result(30)
    return str(entries[name].value)


def _committed(kafka: KafkaInfo, group: str, topic: str) -> int:
    consumer = Consumer({**kafka.client_config(), "group.id": group})
    try:
        (tp,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return int(tp.offset)
    finally:
        consumer.close()


def _group_with_offsets(kafka: KafkaInfo, names: dict[str, str]) -> None:
    """A topic with 5 messages and an empty group that committed offset 5 on it."""
    create_topic(kafka.client_config(), names["topic"])
    from confluent_kafka import Producer

    producer = Producer(kafka.client_config())
    for i in range(5):
        producer.produce(names["topic"], f"m{i}".encode())
    producer.flush(30)
    consumer = Consumer({**kafka.client_config(), "group.id": names["group"]})
    consumer.commit(offsets=[TopicPartition(names["topic"], 0, 5)], asynchronous=False)
    consumer.close()


def _acls(kafka: KafkaInfo, topic: str) -> list[Any]:
    admin = AdminClient(kafka.client_config())  # referenced until the future resolves
    wanted = AclBindingFilter(
        ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, None, None,
        AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip
    return list(admin.describe_acls(wanted).result(30))


def _binding(names: dict[str, str]) -> dict[str, str]:
    return {
        "resource_type": "topic", "resource_name": names["topic"], "pattern_type": "literal",
        "principal": "User:matrix", "host": "*", "operation": "read", "permission": "allow",
    }  # fmt: skip


def _create_acl_directly(kafka: KafkaInfo, names: dict[str, str]) -> None:
    create_topic(kafka.client_config(), names["topic"])
    from confluent_kafka.admin import AclBinding

    b = AclBinding(ResourceType.TOPIC, names["topic"], ResourcePatternType.LITERAL, "User:matrix",
                   "*", AclOperation.READ, AclPermissionType.ALLOW)  # fmt: skip
    admin = AdminClient(kafka.client_config())
    admin.create_acls([b])[b].result(30)
    wait_for(lambda: len(_acls(kafka, names["topic"])) == 1, "the ACL")


def _topic_setup(kafka: KafkaInfo, names: dict[str, str]) -> None:
    create_topic(kafka.client_config(), names["topic"])


def _topic_with_messages(kafka: KafkaInfo, names: dict[str, str]) -> None:
    _topic_setup(kafka, names)
    from confluent_kafka import Producer

    producer = Producer(kafka.client_config())
    producer.produce(names["topic"], b"before")
    producer.flush(30)


def _low_watermark(kafka: KafkaInfo, topic: str) -> int:
    consumer = Consumer({**kafka.client_config(), "group.id": "matrix-check"})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[0])
    finally:
        consumer.close()


def _broker_config(kafka: KafkaInfo) -> str | None:
    resource = ConfigResource(ResourceType.BROKER, "1")
    admin = AdminClient(kafka.client_config())
    entries = admin.describe_configs([resource])[resource].result(30)
    return str(entries["log.cleaner.backoff.ms"].value)


def _reset_broker_config(kafka: KafkaInfo) -> None:
    """The broker's dynamic config back to its default: the broker is shared by the run."""
    admin = AdminClient(kafka.client_config())
    entry = ConfigEntry(
        "log.cleaner.backoff.ms", None, incremental_operation=AlterConfigOpType.DELETE
    )
    resource = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[entry])
    admin.incremental_alter_configs([resource])[resource].result(30)


BASE = "/api/v1/clusters/local"

CASES = [
    Case("TOPIC_CREATE", "topic.created", "root", "alice",
         lambda c, n: c.post(f"{BASE}/topics", json={"name": n["topic"]}),
         lambda k, n: n["topic"] in _topics(k)),
    Case("TOPIC_DELETE", "topic.deleted", "root", "alice",
         lambda c, n: c.delete(f"{BASE}/topics/{n['topic']}"),
         lambda k, n: n["topic"] not in _topics(k), _topic_setup),
    Case("TOPIC_EDIT", "topic.config_changed", "alice", "vic",
         lambda c, n: c.patch(f"{BASE}/topics/{n['topic']}/configs",
                              json={"configs": {"retention.ms": "123456"}}),
         lambda k, n: _topic_config(k, n["topic"], "retention.ms") == "123456", _topic_setup),
    Case("TOPIC_EDIT", "topic.partitions_changed", "alice", "vic",
         lambda c, n: c.post(f"{BASE}/topics/{n['topic']}/partitions", json={"partitions": 2}),
         lambda k, n: len(_topics(k)[n["topic"]].partitions) == 2, _topic_setup),
    Case("TOPIC_TRUNCATE", "records.deleted", "root", "alice",
         lambda c, n: c.post(f"{BASE}/topics/{n['topic']}/truncate", json={}),
         lambda k, n: _low_watermark(k, n["topic"]) == 1, _topic_with_messages),
    Case("TOPIC_PRODUCE", "records.produced", "alice", "vic",
         lambda c, n: c.post(f"{BASE}/topics/{n['topic']}/messages", json={"value": "hello"}),
         lambda k, n: [m.value() for m in read_messages(k.client_config(), n["topic"])]
         == [b"hello"],
         _topic_setup),
    Case("TOPIC_INSPECT", "records.inspected", "vic", "nobody",
         lambda c, n: c.get(f"{BASE}/topics/{n['topic']}/messages"),
         lambda k, n: True, _topic_with_messages),
    Case("GROUP_EDIT", "group.offsets_reset", "root", "alice",
         lambda c, n: c.post(f"{BASE}/groups/{n['group']}/reset-offsets",
                             json={"topic": n["topic"], "to": "earliest", "dry_run": False}),
         lambda k, n: _committed(k, n["group"], n["topic"]) == 0, _group_with_offsets),
    Case("GROUP_DELETE", "group.deleted", "root", "alice",
         lambda c, n: c.delete(f"{BASE}/groups/{n['group']}"),
         lambda k, n: _committed(k, n["group"], n["topic"]) < 0, _group_with_offsets),
    Case("ACL_EDIT", "acl.created", "root", "alice",
         lambda c, n: c.post(f"{BASE}/acls", json=_binding(n)),
         lambda k, n: len(_acls(k, n["topic"])) == 1, _topic_setup),
    Case("ACL_EDIT", "acl.deleted", "root", "alice",
         lambda c, n: c.post(f"{BASE}/acls/delete", json=_binding(n)),
         lambda k, n: _acls(k, n["topic"]) == [], _create_acl_directly),
    Case("BROKER_EDIT", "config.changed", "root", "alice",
         lambda c, n: c.patch(f"{BASE}/brokers/1/configs",
                              json={"configs": {"log.cleaner.backoff.ms": n["backoff"]}}),
         lambda k, n: _broker_config(k) == n["backoff"]),
]  # fmt: skip


@pytest.mark.parametrize("allowed", [True, False], ids=["allowed", "denied"])
@pytest.mark.parametrize("case", CASES, ids=[f"{c.action}-{c.event_type}" for c in CASES])
def test_every_action_for_an_allowed_and_a_denied_role(
    kafka: KafkaInfo,
    kafka_console: ConsoleHarness,
    case: Case,
    allowed: bool,
    request: pytest.FixtureRequest,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    names = {"topic": f"matrix-{suffix}", "group": f"matrix-group-{suffix}",
             "backoff": str(15000 + int(time.time()) % 1000)}  # fmt: skip
    case.setup(kafka, names)
    if case.action == "BROKER_EDIT":
        request.addfinalizer(lambda: _reset_broker_config(kafka))
    user = case.allowed if allowed else case.denied
    answer = case.call(kafka_console.login(user), names)
    event = kafka_console.event_for(answer)
    assert event["event_type"] == case.event_type
    assert event["authorization"]["action"] == case.action
    assert event["authorization"]["allowed"] is allowed
    assert event["actor"]["id"] == user
    if allowed:
        assert answer.status_code in (200, 201), answer.text
        assert event["action"]["result"] == "success"
        assert event["authorization"]["policies"], "the allowing policy is named"
        wait_for(lambda: case.happened(kafka, names), f"{case.event_type} on the broker")
    else:
        assert answer.status_code == 403, answer.text
        assert event["action"]["result"] == "denied"
        if case.action != "TOPIC_INSPECT":
            assert not case.happened(kafka, names), "a denied action reached Kafka"
