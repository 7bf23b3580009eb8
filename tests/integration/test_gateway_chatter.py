"""Transactional chatter through the gateway: an exactly-once loop of a real
confluent-kafka transactional producer is recorded as one `kafka.request` per API,
client and resource and window (with how many requests), not one per request; a denied
transaction still yields `access.denied`."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from gateway_fixtures import GatewayFactory, RunningGateway, one

from kaudit.dev.kafka import KafkaInfo
from support.kafka import KafkaTool, create_topic, read_messages

pytestmark = pytest.mark.kafka
TRANSACTIONS = 20


def requests_per_record(events: list[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
    """(API, resource type, resource id) -> requests, of the aggregated records of
    requests that succeeded (librdkafka retries some, e.g. on CONCURRENT_TRANSACTIONS)."""
    out: dict[tuple[str, str, str], int] = defaultdict(int)
    for e in events:
        if e["details"].get("aggregated") and e["action"]["result"] == "success":
            key = (e["details"]["api"], e["resource"]["type"], e["resource"]["id"])
            out[key] += e["details"]["requests"]
    return dict(out)


def test_an_exactly_once_loop_is_counted_per_window_not_recorded_per_request(
    gateway: RunningGateway,
    admin_config: dict[str, str],
    admin_sasl_config: dict[str, str],
    unique_topic: str,
) -> None:
    create_topic(admin_config, unique_topic)
    txn_id, group = f"{unique_topic}-txn", f"{unique_topic}-group"
    producer = Producer(gateway.client({**admin_sasl_config, "transactional.id": txn_id}))
    consumer = Consumer(gateway.client({**admin_sasl_config, "group.id": group}))
    producer.init_transactions(60)
    for i in range(TRANSACTIONS):
        producer.begin_transaction()
        producer.produce(unique_topic, f"m{i}".encode())
        producer.send_offsets_to_transaction(
            [TopicPartition(unique_topic, 0, i + 1)], consumer.consumer_group_metadata(), 60
        )
        producer.commit_transaction(60)
    # The broker has every transaction: the group's offset moved with the last one.
    (committed,) = consumer.committed([TopicPartition(unique_topic, 0)], timeout=30)
    assert committed.offset == TRANSACTIONS
    consumer.close()

    events = gateway.events("kafka.request")
    counts = requests_per_record(events)
    assert counts[("EndTxn", "transactional_id", txn_id)] == TRANSACTIONS
    assert counts[("AddPartitionsToTxn", "transactional_id", txn_id)] == TRANSACTIONS
    assert counts[("AddOffsetsToTxn", "transactional_id", txn_id)] == TRANSACTIONS
    assert counts[("AddOffsetsToTxn", "group", group)] == TRANSACTIONS
    assert counts[("TxnOffsetCommit", "transactional_id", txn_id)] == TRANSACTIONS
    assert counts[("TxnOffsetCommit", "group", group)] == TRANSACTIONS
    assert counts[("InitProducerId", "transactional_id", txn_id)] >= 1
    # One record per API, resource and result, not one per request (a routine step, such
    # as a coordinator still loading, is a success counted apart from the plain ones).
    transactional = [e for e in events if e["resource"]["id"] in (txn_id, group)]
    keys = {
        (api["api"], e["resource"]["id"], e["action"]["result"], api.get("routine"))
        for e in transactional
        for api in (e["details"],)
    }
    assert len(transactional) == len(keys) < TRANSACTIONS
    end = one(events, details__api="EndTxn")
    assert end["action"]["result"] == "success"
    assert end["actor"]["id"] == "User:admin"
    assert end["details"]["first_seen"] <= end["details"]["last_seen"]


def test_a_denied_transaction_is_counted_and_yields_access_denied(
    gateway: RunningGateway, bob_config: dict[str, str], unique_topic: str
) -> None:
    txn_id = f"{unique_topic}-txn"
    producer = Producer(gateway.client({**bob_config, "transactional.id": txn_id}))
    with pytest.raises(KafkaException, match="TRANSACTIONAL_ID_AUTHORIZATION_FAILED"):
        producer.init_transactions(30)

    events = gateway.events()
    # librdkafka asks for the transaction's coordinator first, and is refused there.
    request = one(
        [e for e in events if e["event_type"] == "kafka.request"],
        details__api="FindCoordinator",
        resource__id=txn_id,
    )
    assert request["action"]["result"] == "denied"
    assert request["resource"]["type"] == "transactional_id"
    assert request["details"]["requests"] >= 1
    denied = one([e for e in events if e["event_type"] == "access.denied"], resource__id=txn_id)
    assert denied["actor"]["id"] == "User:bob"
    assert denied["authorization"]["checks"][0]["operation"] == "DESCRIBE"


def test_a_java_exactly_once_copy_loop_is_counted_per_window(
    gateway_factory: GatewayFactory,
    kafka: KafkaInfo,
    kafka_tool: KafkaTool,
    admin_config: dict[str, str],
    unique_topic: str,
) -> None:
    source, sink = f"{unique_topic}-in", f"{unique_topic}-out"
    create_topic(admin_config, source)
    create_topic(admin_config, sink)
    producer = Producer(admin_config)
    for i in range(100):
        producer.produce(source, f"m{i}".encode())
    assert producer.flush(30) == 0
    gw = gateway_factory(upstream=kafka.bootstrap_servers)  # PLAINTEXT: no login
    txn_id, group = f"{unique_topic}-txn", f"{unique_topic}-group"
    # Kafka's own exactly-once loop: consume, produce, commit offsets in the transaction.
    kafka_tool(
        "org.apache.kafka.tools.TransactionalMessageCopier",
        "--broker-list", gw.bootstrap,
        "--input-topic", source,
        "--input-partition", "0",
        "--output-topic", sink,
        "--consumer-group", group,
        "--transactional-id", txn_id,
        "--transaction-size", "5",
        "--use-group-metadata",
        bootstrap=False,
    )  # fmt: skip
    assert len(read_messages(admin_config, sink)) == 100  # every record copied once

    events = gw.events("kafka.request")
    counts = requests_per_record(events)
    assert counts[("EndTxn", "transactional_id", txn_id)] == 20
    assert counts[("TxnOffsetCommit", "group", group)] == 20
    transactional = [e for e in events if e["resource"]["id"] in (txn_id, group)]
    assert 0 < len(transactional) < 20  # not one record per request
