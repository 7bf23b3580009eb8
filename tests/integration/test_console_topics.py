"""Topic actions through the console against the real broker: each one decided by RBAC
before Kafka is asked, made on the broker, and recorded as one event with the request,
the user, the decision, Kafka's outcome and the context."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from console_fixtures import POLICIES, USERS, cluster_entry

from kaudit.dev.kafka import KafkaInfo
from support.console import ConsoleHarness, console_config, harness
from support.kafka import create_topic

pytestmark = pytest.mark.kafka


def _cluster_id(kafka: KafkaInfo) -> str:
    admin = AdminClient(kafka.client_config())
    return str(admin.describe_cluster().result(30).cluster_id)


def test_create_topic_is_one_event_like_kpows_record(
    kafka: KafkaInfo, kafka_console: ConsoleHarness, unique_topic: str
) -> None:
    client = kafka_console.login("root")
    client.headers["User-Agent"] = "console-test/1"
    body = {
        "name": unique_topic,
        "partitions": 2,
        "replication_factor": 1,
        "configs": {"retention.ms": "3600000"},
    }
    answer = client.post("/api/v1/clusters/local/topics", json=body)
    assert answer.status_code == 201, answer.text
    topics = AdminClient(kafka.client_config()).list_topics(timeout=10).topics
    assert len(topics[unique_topic].partitions) == 2

    event = kafka_console.event_for(answer)
    assert event["event_type"] == "topic.created"
    assert event["action"] == {
        "operation": "create-topic",
        "result": "success",
        "duration_ms": event["action"]["duration_ms"],
        "error": None,
    }
    assert event["details"]["request"] == {
        "topic-name": unique_topic,
        "partitions": 2,
        "replication-factor": 1,
        "config-items": {"retention.ms": "3600000"},
    }
    assert event["details"]["user"] == {
        "provider": "local",
        "login": "root",
        "id": "root",
        "name": "Root Admin",
        "email": "root@example.com",
    }
    assert event["details"]["subjects"] == [unique_topic]
    assert event["authorization"]["allowed"] is True
    assert event["authorization"]["action"] == "TOPIC_CREATE"
    assert event["authorization"]["policies"] == [
        {"resource": ["cluster", "*"], "effect": "Allow", "actions": ["ADMIN"], "role": "ops"}
    ]
    assert event["context"]["cluster_id"] == _cluster_id(kafka)
    assert event["context"]["source"] == "console"
    assert event["actor"]["ip_address"] == "testclient"
    assert event["actor"]["user_agent"] == "console-test/1"
    assert event["resource"]["type"] == "topic" and event["resource"]["id"] == unique_topic


def test_under_the_seed_policy_create_is_denied_before_kafka_is_asked(
    kafka: KafkaInfo, kafka_console: ConsoleHarness, unique_topic: str
) -> None:
    client = kafka_console.login("alice")  # role dev: the seed's INSPECT, EDIT, PRODUCE
    answer = client.post("/api/v1/clusters/local/topics", json={"name": unique_topic})
    assert answer.status_code == 403
    assert answer.json()["action"] == "TOPIC_CREATE"
    assert unique_topic not in AdminClient(kafka.client_config()).list_topics(timeout=10).topics
    event = kafka_console.event_for(answer)
    assert event["action"]["result"] == "denied"
    assert event["authorization"] == {
        "allowed": False,
        "action": "TOPIC_CREATE",
        "checks": [],
        "policies": [],
    }


def test_describe_edit_and_add_partitions(
    kafka: KafkaInfo, kafka_console: ConsoleHarness, unique_topic: str
) -> None:
    create_topic(kafka.client_config(), unique_topic, 1)
    client = kafka_console.login("alice")
    described = client.get(f"/api/v1/clusters/local/topics/{unique_topic}").json()
    assert described["partitions"][0]["leader"] is not None
    assert described["partitions"][0]["isr"] == described["partitions"][0]["replicas"]
    assert described["configs"]["retention.ms"]["default"] is True

    edited = client.patch(
        f"/api/v1/clusters/local/topics/{unique_topic}/configs",
        json={"configs": {"retention.ms": "7200000"}},
    )
    assert edited.status_code == 200, edited.text
    old = described["configs"]["retention.ms"]["value"]
    assert edited.json()["changes"] == [{"name": "retention.ms", "old": old, "new": "7200000"}]
    event = kafka_console.event_for(edited)
    assert event["event_type"] == "topic.config_changed"
    assert event["details"]["outcome"]["changes"][0]["new"] == "7200000"

    grown = client.post(
        f"/api/v1/clusters/local/topics/{unique_topic}/partitions", json={"partitions": 3}
    )
    assert grown.status_code == 200
    topics = AdminClient(kafka.client_config()).list_topics(timeout=10).topics
    assert len(topics[unique_topic].partitions) == 3


def test_kafkas_refusal_is_recorded_as_a_failure(
    kafka_console: ConsoleHarness, unique_topic: str
) -> None:
    client = kafka_console.login("root")
    answer = client.post(
        "/api/v1/clusters/local/topics", json={"name": unique_topic, "replication_factor": 3}
    )
    assert answer.status_code == 502
    assert answer.json()["code"] == "INVALID_REPLICATION_FACTOR"
    event = kafka_console.event_for(answer)
    assert event["action"]["result"] == "failure"
    assert "replication factor" in event["action"]["error"].lower()
    assert event["authorization"]["allowed"] is True


def test_lists_show_only_what_the_user_may_see(
    kafka: KafkaInfo, kafka_console: ConsoleHarness, unique_topic: str
) -> None:
    secret = f"secret-{unique_topic}"
    create_topic(kafka.client_config(), unique_topic)
    create_topic(kafka.client_config(), secret)
    seen = {
        user: {
            t["name"] for t in kafka_console.login(user).get("/api/v1/clusters/local/topics").json()
        }
        for user in ("root", "alice", "nobody")
    }
    assert {unique_topic, secret} <= seen["root"]
    assert unique_topic in seen["alice"] and secret not in seen["alice"]
    assert seen["nobody"] == set()
    denied = kafka_console.login("alice").get(f"/api/v1/clusters/local/topics/{secret}")
    assert denied.status_code == 403
    assert denied.json()["policies"][0]["effect"] == "Deny"


def test_several_clusters_each_event_names_its_cluster_id(
    kafka: KafkaInfo, tmp_path: Path, unique_topic: str
) -> None:
    config = console_config(
        tmp_path,
        clusters=[cluster_entry(kafka), cluster_entry(kafka, name="mirror", id="mirror-id")],
        users=USERS,
        rbac={"policies": POLICIES},
    )
    for console in harness(config):
        client = console.login("root")
        assert client.get("/api/v1/clusters").json() == ["local", "mirror"]
        on_local = client.post("/api/v1/clusters/local/topics", json={"name": unique_topic})
        on_mirror = client.get(f"/api/v1/clusters/mirror/topics/{unique_topic}")
        assert on_local.status_code == 201 and on_mirror.status_code == 200
        assert console.event_for(on_local)["context"]["cluster_id"] == _cluster_id(kafka)
        assert console.event_for(on_mirror)["context"]["cluster_id"] == "mirror-id"
        assert console.event_for(on_mirror)["details"]["cluster"] == "mirror"
        unknown = client.get("/api/v1/clusters/nowhere/topics")
        assert unknown.status_code == 404
        assert "configured: local, mirror" in unknown.json()["message"]
