"""Messages, consumer groups, ACLs and brokers through the console against the real
broker: inspection from an offset or a time, as text, JSON or hex, masked unless the user
may unmask; a group's lag and a dry-run reset that changes nothing; lists that show only
what the user may see; and every query recorded."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from console_fixtures import POLICIES, USERS, cluster_entry

from kaudit.dev.kafka import KafkaInfo
from support.console import ConsoleHarness, console_config, harness, local_user
from support.kafka import create_topic

pytestmark = pytest.mark.kafka
BASE = "/api/v1/clusters/local"


def _produce(kafka: KafkaInfo, topic: str, values: list[bytes], **kw: object) -> None:
    producer = Producer(kafka.client_config())
    for value in values:
        producer.produce(topic, value, **kw)  # type: ignore[arg-type]
    producer.flush(30)


def test_inspect_from_an_offset_or_a_time_as_text_json_or_hex(
    kafka: KafkaInfo, kafka_console: ConsoleHarness, unique_topic: str
) -> None:
    create_topic(kafka.client_config(), unique_topic)
    _produce(kafka, unique_topic, [b'{"n": 0}', b'{"n": 1}'])
    middle = int(time.time() * 1000)
    time.sleep(0.05)  # the next record's timestamp must be after `middle`
    _produce(kafka, unique_topic, [b'{"n": 2}', b"\x00\xff"])
    client = kafka_console.login("vic")  # viewer: TOPIC_INSPECT only
    url = f"{BASE}/topics/{unique_topic}/messages"

    from_one = client.get(url, params={"offset": 1, "limit": 2, "render": "json"})
    assert from_one.status_code == 200, from_one.text
    assert [m["value"] for m in from_one.json()["messages"]] == [{"n": 1}, {"n": 2}]

    since = client.get(url, params={"since_ms": middle}).json()["messages"]
    assert [m["offset"] for m in since] == [2, 3]
    assert since[0]["value"] == '{"n": 2}'

    as_hex = client.get(url, params={"offset": 3, "render": "hex"}).json()["messages"]
    assert as_hex[0]["value"] == "00ff"

    event = kafka_console.event_for(from_one)
    assert event["event_type"] == "records.inspected"
    assert event["details"]["request"]["offset"] == 1
    assert event["details"]["outcome"]["offsets"] == [[0, 1], [0, 2]]
    assert event["authorization"]["action"] == "TOPIC_INSPECT"


def test_masking_hides_fields_and_headers_unless_the_user_may_unmask(
    kafka: KafkaInfo, tmp_path: Path, unique_topic: str
) -> None:
    topic = f"payments-{unique_topic}"
    create_topic(kafka.client_config(), topic)
    _produce(
        kafka,
        topic,
        [orjson.dumps({"card": "4111", "nested": {"card": "5500"}, "ok": 1})],
        headers=[("authorization", b"Bearer s3cret"), ("trace", b"t1")],
    )
    unmask = {
        "resource": ["cluster", "*", "topic", "payments-*"],
        "effect": "Allow",
        "actions": ["TOPIC_UNMASK"],
        "role": "ops",
    }
    config = console_config(
        tmp_path,
        clusters=[cluster_entry(kafka)],
        users=USERS,
        rbac={
            "admin_roles": ["ops"],
            "policies": [*POLICIES[1:], unmask, {**POLICIES[0], "actions": ["TOPIC_INSPECT"]}],
        },
        masking=[{"topics": ["payments-*"], "fields": ["card"], "headers": ["auth*"]}],
    )
    for console in harness(config):
        url = f"{BASE}/topics/{topic}/messages"
        masked = console.login("alice").get(url, params={"render": "json"}).json()
        (message,) = masked["messages"]
        assert masked["masked"] is True
        assert message["value"] == {"card": "****", "nested": {"card": "****"}, "ok": 1}
        headers = {h["name"]: h["value"] for h in message["headers"]}
        assert headers == {"authorization": "****", "trace": "t1"}

        clear = console.login("root").get(url, params={"render": "json"})
        assert clear.json()["masked"] is False
        assert clear.json()["messages"][0]["value"]["card"] == "4111"
        assert console.event_for(clear)["details"]["outcome"]["masked"] is False


def test_group_lag_and_a_dry_run_reset_that_changes_nothing(
    kafka: KafkaInfo, kafka_console: ConsoleHarness, unique_topic: str
) -> None:
    create_topic(kafka.client_config(), unique_topic)
    _produce(kafka, unique_topic, [b"a", b"b"])
    middle = int(time.time() * 1000)
    time.sleep(0.05)  # the next records' timestamps must be after `middle`
    _produce(kafka, unique_topic, [b"c", b"d"])
    group = f"g-{unique_topic}"
    consumer = Consumer({**kafka.client_config(), "group.id": group})
    consumer.commit(offsets=[TopicPartition(unique_topic, 0, 1)], asynchronous=False)
    consumer.close()
    client = kafka_console.login("root")
    assert group in {g["group"] for g in client.get(f"{BASE}/groups").json()}
    described = client.get(f"{BASE}/groups/{group}").json()
    assert described["offsets"] == [
        {"topic": unique_topic, "partition": 0, "committed": 1, "end": 4, "lag": 3}
    ]
    preview = client.post(
        f"{BASE}/groups/{group}/reset-offsets",
        json={"topic": unique_topic, "to": "offset", "value": 3},
    )
    assert preview.json() == {
        "dry_run": True,
        "offsets": [{"partition": 0, "current": 1, "new": 3}],
    }
    assert client.get(f"{BASE}/groups/{group}").json()["offsets"][0]["committed"] == 1
    event = kafka_console.event_for(preview)
    assert event["event_type"] == "group.offsets_reset"
    assert event["details"]["request"]["dry-run"] is True
    by_time = client.post(
        f"{BASE}/groups/{group}/reset-offsets",
        json={"topic": unique_topic, "to": "time", "value": middle},
    )
    assert by_time.json()["offsets"] == [{"partition": 0, "current": 1, "new": 2}]
    latest = client.post(
        f"{BASE}/groups/{group}/reset-offsets",
        json={"topic": unique_topic, "to": "latest", "dry_run": False},
    )
    assert latest.json()["offsets"][0]["new"] == 4
    assert client.get(f"{BASE}/groups/{group}").json()["offsets"][0]["lag"] == 0


def test_brokers_and_their_configs(kafka_console: ConsoleHarness) -> None:
    client = kafka_console.login("vic")
    listed = client.get(f"{BASE}/brokers").json()
    (broker,) = listed["brokers"]
    configs = client.get(f"{BASE}/brokers/{broker['id']}/configs").json()
    assert "log.retention.hours" in configs
    assert all(c["value"] is None for c in configs.values() if c["sensitive"])
    assert [e["event_type"] for e in kafka_console.events()[-2:]] == [
        "admin.brokers_described",
        "config.viewed",
    ]


def test_acl_lists_show_only_bindings_the_user_may_edit(
    kafka: KafkaInfo, kafka_console: ConsoleHarness, unique_topic: str
) -> None:
    create_topic(kafka.client_config(), unique_topic)
    root = kafka_console.login("root")
    binding = {
        "resource_type": "topic",
        "resource_name": unique_topic,
        "pattern_type": "literal",
        "principal": "User:list-check",
        "host": "*",
        "operation": "read",
        "permission": "allow",
    }
    assert root.post(f"{BASE}/acls", json=binding).status_code == 201
    assert binding in root.get(f"{BASE}/acls").json()
    assert binding not in kafka_console.login("alice").get(f"{BASE}/acls").json()
    assert root.post(f"{BASE}/acls/delete", json=binding).json()["deleted"] == [binding]


def test_verbosity_mutations_leaves_queries_out_but_keeps_inspection(
    kafka: KafkaInfo, tmp_path: Path, unique_topic: str
) -> None:
    create_topic(kafka.client_config(), unique_topic)
    config = console_config(
        tmp_path,
        clusters=[cluster_entry(kafka)],
        users=[local_user("root", "ops")],
        rbac={"policies": POLICIES},
        verbosity="mutations",
    )
    for console in harness(config):
        client = console.login("root")
        client.get(f"{BASE}/topics")
        client.get(f"{BASE}/topics/{unique_topic}/messages")
        client.patch(
            f"{BASE}/topics/{unique_topic}/configs", json={"configs": {"retention.ms": "60000"}}
        )
        assert [e["event_type"] for e in console.events()] == [
            "auth.login",
            "records.inspected",
            "topic.config_changed",
        ]


def test_a_group_the_user_may_not_act_on_is_hidden_and_the_refusal_recorded(
    kafka: KafkaInfo, kafka_console: ConsoleHarness, unique_topic: str
) -> None:
    create_topic(kafka.client_config(), unique_topic)
    group = f"hidden-{unique_topic}"
    consumer = Consumer({**kafka.client_config(), "group.id": group})
    consumer.commit(offsets=[TopicPartition(unique_topic, 0, 0)], asynchronous=False)
    consumer.close()
    client = kafka_console.login("nobody")  # no role: no policy applies
    assert client.get(f"{BASE}/groups").json() == []
    refused = client.get(f"{BASE}/groups/{group}")
    assert refused.status_code == 403
    event = kafka_console.event_for(refused)
    assert event["event_type"] == "group.described"
    assert event["action"]["result"] == "denied"
