"""Clients of other ecosystems through the gateway (issue 18 item 11): Go clients
(franz-go, Sarama) and a Node client (kafkajs), built from tests/clients by `support.clients`,
each creating a topic, reading its configuration, producing, consuming in a group and
deleting the topic as a SCRAM user; the audit must say exactly that, with the counts the
client saw."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from gateway_fixtures import RunningGateway, one

from kaudit.dev.kafka import KafkaInfo
from support.clients import go_client, node_client
from support.kafka import grant, grant_topic, wait_until_described

pytestmark = pytest.mark.kafka

RECORDS = 30


def _run_client(argv: list[str], env: dict[str, str] | None = None) -> dict[str, int]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, f"client failed:\n{done.stdout}\n{done.stderr}"
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _check_audit(
    gateway: RunningGateway, topic: str, group: str, client_id: str, outcome: dict[str, int]
) -> None:
    assert outcome["produced"] == outcome["consumed"] == RECORDS
    events = [e for e in gateway.events() if e["actor"]["client_id"] == client_id]
    assert events, f"nothing recorded for {client_id}"
    # Everything after the login is alice's (a version negotiation before it is anonymous).
    assert {e["actor"]["id"] for e in events if e["context"]["api"]["name"] != "ApiVersions"} == {
        "User:alice"
    }
    logins = [e for e in events if e["event_type"] == "auth.login"]
    assert logins and {e["actor"]["auth"] for e in logins} == {"SCRAM-SHA-512"}

    created = one(events, event_type="topic.created", resource__id=topic)
    assert created["action"]["result"] == "success"
    viewed = one(events, event_type="config.viewed", resource__id=topic)
    assert viewed["resource"]["type"] == "topic"
    assert viewed["details"]["returned"] == outcome["configs_found"]
    assert viewed["authorization"]["checks"][0]["operation"] == "DESCRIBE_CONFIGS"
    # A produce or fetch the broker answered with a retriable error (a leader not yet
    # known, under load) is counted apart as a failure; what succeeded is what the
    # client saw.
    for event_type, key in (("records.produced", "produced"), ("records.consumed", "consumed")):
        records = [
            e for e in events if e["event_type"] == event_type and e["resource"]["id"] == topic
        ]
        succeeded = [e for e in records if e["action"]["result"] == "success"]
        assert len(succeeded) == 1, records
        assert succeeded[0]["details"]["count"] == outcome[key]
    deleted = one(events, event_type="topic.deleted", resource__id=topic)
    assert deleted["action"]["result"] == "success"
    group_events = [e for e in events if e["resource"]["id"] == group]
    assert {"JoinGroup", "SyncGroup", "OffsetCommit"} <= {
        e["context"]["api"]["name"] for e in group_events
    }
    assert [e for e in group_events if e["event_type"] == "group.offsets_reset"] == []
    failures = [(e["event_type"], e["context"]["api"]["name"], e["action"]["error"])
                for e in events if e["action"]["result"] != "success"
                and not e["event_type"].startswith("records.")]  # fmt: skip
    assert failures == []


def _alice_may(kafka_tool: Callable[..., Any], sasl_config: Any, topic: str, group: str) -> None:
    grant_topic(kafka_tool, "alice", topic, "Create", "Delete", "Describe", "DescribeConfigs",
                "Read", "Write")  # fmt: skip
    grant(kafka_tool, "User:alice", "--operation", "Read", "--group", group)
    wait_until_described(sasl_config("alice"), topic)


@pytest.mark.parametrize(("client", "client_id"), [("franz", "franz-go-client"),
                                                    ("sarama", "sarama-client")])  # fmt: skip
def test_go_client_is_audited(
    gateway: RunningGateway,
    kafka: KafkaInfo,
    kafka_tool: Callable[..., Any],
    sasl_config: Any,
    unique_topic: str,
    client: str,
    client_id: str,
) -> None:
    group = f"go-{unique_topic}"
    _alice_may(kafka_tool, sasl_config, unique_topic, group)
    alice = kafka.user("alice")
    outcome = _run_client(
        [str(go_client(client)), gateway.bootstrap, alice.name, alice.password, unique_topic,
         group, str(RECORDS)]
    )  # fmt: skip
    _check_audit(gateway, unique_topic, group, client_id, outcome)


def test_node_kafkajs_client_is_audited(
    gateway: RunningGateway,
    kafka: KafkaInfo,
    kafka_tool: Callable[..., Any],
    sasl_config: Any,
    unique_topic: str,
) -> None:
    group = f"node-{unique_topic}"
    _alice_may(kafka_tool, sasl_config, unique_topic, group)
    alice = kafka.user("alice")
    command, env = node_client()
    outcome = _run_client(
        [*command, gateway.bootstrap, alice.name, alice.password, unique_topic, group,
         str(RECORDS)],
        env,
    )  # fmt: skip
    _check_audit(gateway, unique_topic, group, "kafkajs-client", outcome)
