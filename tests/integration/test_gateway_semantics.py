"""What the audit says a client did, as other ecosystems' clients showed it wrong (issue 18
item 11): config reads are `config.viewed`, a refusal inside any answer is
`access.denied`, consumption counts what reached the client, errors carry Kafka's names
and routine protocol steps are no failures. Real clients, real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from gateway_fixtures import RunningGateway, one

from kaudit.gateway.codec import FETCH
from support.kafka import create_topic, grant, grant_topic, wait_for

pytestmark = pytest.mark.kafka

CONFIGS = "kafka.admin.ConfigCommand"
KAUDIT = str(Path(sys.executable).with_name("kaudit"))


def test_describe_configs_is_config_viewed_on_the_topic(
    gateway: RunningGateway,
    admin_config: dict[str, str],
    admin_sasl_config: dict[str, str],
    kafka_tool: Callable[..., Any],
    client_properties: Callable[..., Path],
    unique_topic: str,
) -> None:
    create_topic(admin_config, unique_topic, config={"retention.ms": "3600000"})
    admin = AdminClient(gateway.client({**admin_sasl_config, "client.id": "cfg-reader"}))
    resource = ConfigResource(ResourceType.TOPIC, unique_topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    assert configs["retention.ms"].value == "3600000"
    out = kafka_tool(CONFIGS, "--describe", "--entity-type", "topics", "--entity-name",
                     unique_topic, "--command-config", str(client_properties("admin")),
                     bootstrap=gateway.bootstrap)  # fmt: skip
    assert "retention.ms=3600000" in out.stdout

    viewed = [
        e
        for e in gateway.events("config.viewed")
        if (e["resource"]["type"], e["resource"]["id"]) == ("topic", unique_topic)
    ]
    assert len(viewed) == 2, viewed
    by_client = {e["actor"]["client_id"]: e for e in viewed}
    first = by_client["cfg-reader"]
    assert first["actor"]["id"] == "User:admin"
    assert first["action"]["result"] == "success"
    assert first["authorization"]["checks"] == [
        {"operation": "DESCRIBE_CONFIGS", "resource": f"Topic:LITERAL:{unique_topic}",
         "allowed": True, "error_code": 0}
    ]  # fmt: skip
    assert first["details"]["config_type"] == "topic"
    assert first["details"]["returned"] == len(configs)
    assert "3600000" not in json.dumps(viewed)  # values are never recorded
    requests = [e for e in gateway.events("kafka.request")
                if e["context"]["api"]["name"] == "DescribeConfigs"]  # fmt: skip
    assert requests == []


def test_a_topic_refused_in_a_metadata_answer_is_access_denied(
    gateway: RunningGateway,
    admin_config: dict[str, str],
    sasl_config: Any,
    unique_topic: str,
) -> None:
    """Bob may not even describe the topic: the Metadata answer refuses it and the client
    never sends a Produce. Metadata request events are off (the default)."""
    create_topic(admin_config, unique_topic)
    bob = sasl_config("bob")
    producer = Producer(gateway.client({**bob, "client.id": "bob-app",
                                        "message.timeout.ms": "3000"}))  # fmt: skip
    errors: list[Any] = []
    producer.produce(unique_topic, b"x", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(15)
    assert len(errors) == 1 and errors[0].code() == 29  # TOPIC_AUTHORIZATION_FAILED

    denied = [e for e in gateway.events("access.denied") if e["resource"]["id"] == unique_topic]
    assert denied, "no access.denied for the topic refused in the Metadata answer"
    first = denied[0]
    assert first["actor"]["id"] == "User:bob"
    assert first["actor"]["client_id"] == "bob-app"
    assert first["context"]["api"]["name"] == "Metadata"
    assert first["action"]["error"] == "TOPIC_AUTHORIZATION_FAILED"
    assert first["authorization"]["checks"][0]["operation"] == "DESCRIBE"
    assert first["authorization"]["allowed"] is False
    # Allowed Metadata requests stay unrecorded: only the refusal is.
    metadata = [e for e in gateway.events("kafka.request")
                if e["context"]["api"]["name"] == "Metadata"]  # fmt: skip
    assert metadata and {e["action"]["result"] for e in metadata} == {"denied"}
    assert {e["resource"]["id"] for e in metadata} == {unique_topic}


_CONSUMER = """
import json, sys
from confluent_kafka import Consumer, TopicPartition
settings, topic, wanted = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
consumer = Consumer(settings)
consumer.assign([TopicPartition(topic, 0, 0)])
received = 0
while received < wanted:
    received += sum(1 for m in consumer.consume(100, 0.5) if m.error() is None)
print(received, flush=True)
while True:  # fetching on, until killed
    consumer.consume(100, 0.5)
"""


def _on_gateway(gateway: RunningGateway, question: Callable[[], bool]) -> bool:
    """`question()` answered on the gateway's event loop (its connections live there)."""
    answer: list[bool] = []
    gateway.thread.call(lambda: answer.append(question()))
    return answer[0]


def _fetch_waiting(gateway: RunningGateway, offset: int) -> bool:
    """Whether a Fetch from `offset` is in flight through the gateway."""
    return any(
        p.api_key == FETCH
        and p.request is not None
        and any(q.fetch_offset == offset for t in p.request.topics for q in t.partitions)
        for c in gateway.gateway.shared.connections
        for p in c.pending
    )


def test_fetch_answers_after_the_client_went_away_are_undelivered_not_consumed(
    gateway: RunningGateway,
    admin_config: dict[str, str],
    admin_sasl_config: dict[str, str],
    unique_topic: str,
) -> None:
    create_topic(admin_config, unique_topic)
    producer = Producer(admin_config)  # straight to the broker
    for i in range(200):
        producer.produce(unique_topic, b"r%d" % i, partition=0)
    assert producer.flush(30) == 0
    settings = gateway.client(
        {**admin_sasl_config, "group.id": f"g-{unique_topic}", "client.id": "leaver",
         "enable.auto.commit": "false", "fetch.wait.max.ms": "30000"}
    )  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-c", _CONSUMER, json.dumps(settings), unique_topic, "200"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        received = int(child.stdout.readline())
        assert received == 200

        wait_for(
            lambda: _on_gateway(gateway, lambda: _fetch_waiting(gateway, 200)),
            "a fetch from offset 200 waiting at the broker",
        )
    finally:
        child.kill()
        child.wait(30)

    wait_for(
        lambda: _on_gateway(
            gateway,
            lambda: any(c.client_gone and c.pending for c in gateway.gateway.shared.connections),
        ),
        "the gateway to see the client gone with a fetch in flight",
    )
    for i in range(20):  # answers the fetch still waiting at the broker
        producer.produce(unique_topic, b"late%d" % i, partition=0)
    assert producer.flush(30) == 0

    def counted() -> dict[str, int]:
        """The counts of every window closed so far (each `events()` closes one)."""
        totals: dict[str, int] = {}
        for record in counted_records:
            for field in ("count", "undelivered", "undelivered_bytes"):
                totals[field] = totals.get(field, 0) + record["details"][field]
        return totals

    counted_records: list[dict[str, Any]] = []

    def undelivered_counted() -> bool:
        counted_records.extend(
            e
            for e in gateway.events("records.consumed")
            if e["resource"]["id"] == unique_topic and e not in counted_records
        )
        return counted()["undelivered"] >= 20

    wait_for(undelivered_counted, "the late answer counted as undelivered")
    details = counted()
    assert details["undelivered"] == 20
    assert details["count"] == received
    assert details["undelivered_bytes"] > 0


def test_routine_protocol_steps_are_not_failures(
    gateway: RunningGateway,
    admin_config: dict[str, str],
    kafka_tool: Callable[..., Any],
    sasl_config: Any,
    unique_topic: str,
) -> None:
    create_topic(admin_config, unique_topic)
    group = f"routine-{unique_topic}"
    grant_topic(kafka_tool, "alice", unique_topic, "Read", "Write", "Describe")
    grant(kafka_tool, "User:alice", "--operation", "Read", "--group", group)
    alice = sasl_config("alice")
    producer = Producer(gateway.client(alice))
    for i in range(5):
        producer.produce(unique_topic, b"r%d" % i)
    assert producer.flush(30) == 0
    consumer = Consumer(
        gateway.client({**alice, "group.id": group, "auto.offset.reset": "earliest"})
    )
    consumer.subscribe([unique_topic])
    received = 0
    deadline = time.monotonic() + 60
    try:
        while received < 5 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                received += 1
    finally:
        consumer.close()
    assert received == 5

    events = gateway.events()
    joins = [e for e in events if e["context"]["api"]["name"] == "JoinGroup"]
    # librdkafka's first JoinGroup is answered MEMBER_ID_REQUIRED by design (KIP-394).
    assert any(e["details"].get("routine") == "MEMBER_ID_REQUIRED" for e in joins), joins
    # (A produce retried under load is a failed attempt of its own: not a protocol step.)
    failures = [
        e
        for e in events
        if e["action"]["result"] == "failure" and not e["event_type"].startswith("records.")
    ]
    assert failures == [], failures
    # What an operator runs finds the same: no group protocol step among the failures.
    search = subprocess.run(
        [KAUDIT, "search", str(gateway.log_dir), "--result", "failure", "-o", "jsonl"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert search.returncode == 0, search.stderr
    found = [json.loads(line) for line in search.stdout.splitlines() if line.strip()]
    assert [e for e in found if not e["event_type"].startswith("records.")] == []
    routine = subprocess.run(
        [KAUDIT, "search", str(gateway.log_dir), "--type", "kafka.request", "-q",
         "MEMBER_ID_REQUIRED", "-o", "jsonl"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert routine.returncode == 0, routine.stderr
    assert any(
        json.loads(line)["details"]["routine"] == "MEMBER_ID_REQUIRED"
        for line in routine.stdout.splitlines()
        if line.strip()
    ), routine.stdout
    assert all(
        (e["action"]["error"] or "").isupper() and not e["action"]["error"].startswith("ERROR_")
        for e in events
        if e["action"]["error"]
    )
    # A refused read of a broker's configuration is a denial, not a routine step.
    broker = ConfigResource(ResourceType.BROKER, "1")
    admin = AdminClient(gateway.client(alice))
    with pytest.raises(KafkaException, match="CLUSTER_AUTHORIZATION_FAILED"):
        admin.describe_configs([broker])[broker].result(timeout=30)
    denied = one(gateway.events("access.denied"), resource__id="1")
    assert denied["action"]["error"] == "CLUSTER_AUTHORIZATION_FAILED"
    assert denied["details"]["denied_event_type"] == "config.viewed"
