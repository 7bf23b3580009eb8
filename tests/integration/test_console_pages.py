"""Every page of the console renders against the real broker, and its forms work without
JavaScript (plain form posts carrying the CSRF token); the OpenAPI document describes
the API and nothing else."""

from __future__ import annotations

import re

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from kaudit.dev.kafka import KafkaInfo
from support.console import ConsoleHarness, page_csrf
from support.kafka import create_topic

pytestmark = pytest.mark.kafka


def test_every_page_renders_and_its_forms_post(
    kafka: KafkaInfo, kafka_console: ConsoleHarness, unique_topic: str
) -> None:
    create_topic(kafka.client_config(), unique_topic)
    producer = Producer(kafka.client_config())
    producer.produce(unique_topic, b"\x01\x02")
    producer.flush(30)
    group = f"pages-{unique_topic}"
    consumer = Consumer({**kafka.client_config(), "group.id": group})
    consumer.commit(offsets=[TopicPartition(unique_topic, 0, 1)], asynchronous=False)
    consumer.close()
    client = kafka_console.login("root")
    del client.headers["X-CSRF-Token"]  # forms carry their own token, as without htmx

    topics = client.get("/clusters/local/topics")
    assert topics.status_code == 200 and unique_topic in topics.text
    topic = client.get(f"/clusters/local/topics/{unique_topic}")
    assert topic.status_code == 200 and "Partitions" in topic.text
    hexed = client.get(f"/clusters/local/topics/{unique_topic}/messages", params={"render": "hex"})
    assert hexed.status_code == 200 and "0102" in hexed.text

    groups = client.get("/clusters/local/groups")
    assert groups.status_code == 200 and group in groups.text
    group_page = client.get(f"/clusters/local/groups/{group}")
    assert group_page.status_code == 200 and "Lag" in group_page.text
    preview = client.post(
        f"/clusters/local/groups/{group}/reset-offsets",
        data={
            "topic": unique_topic,
            "to": "earliest",
            "dry_run": "true",
            "csrf_token": page_csrf(group_page.text),
        },
    )
    assert preview.status_code == 200, preview.text
    assert "Offsets preview (dry run)" in preview.text

    acls = client.get("/clusters/local/acls")
    assert acls.status_code == 200
    created = client.post(
        "/clusters/local/acls",
        data={
            "resource_type": "topic",
            "resource_name": unique_topic,
            "pattern_type": "literal",
            "principal": "User:pages",
            "host": "*",
            "operation": "read",
            "permission": "allow",
            "csrf_token": page_csrf(acls.text),
        },
    )
    assert created.status_code == 303
    listed = client.get("/clusters/local/acls").text
    assert "User:pages" in listed
    binding = {
        "resource_type": "topic", "resource_name": unique_topic, "pattern_type": "literal",
        "principal": "User:pages", "host": "*", "operation": "read", "permission": "allow",
    }  # fmt: skip
    removed = client.post(
        "/clusters/local/acls/delete", data={**binding, "csrf_token": page_csrf(listed)}
    )
    assert removed.status_code == 303
    assert "User:pages" not in client.get("/clusters/local/acls").text

    brokers = client.get("/clusters/local/brokers")
    assert brokers.status_code == 200
    broker_id = re.search(r"/clusters/local/brokers/(\d+)", brokers.text).group(1)  # type: ignore[union-attr]
    broker = client.get(f"/clusters/local/brokers/{broker_id}")
    assert broker.status_code == 200 and "log.retention.hours" in broker.text

    partitions = client.post(
        f"/clusters/local/topics/{unique_topic}/partitions",
        data={"partitions": "2", "csrf_token": page_csrf(topic.text)},
    )
    assert partitions.status_code == 200 and "Partitions added" in partitions.text
    deleted = client.post(
        f"/clusters/local/topics/{unique_topic}/delete", data={"csrf_token": page_csrf(topic.text)}
    )
    assert deleted.status_code == 303
    assert unique_topic not in client.get("/clusters/local/topics").text


def test_the_openapi_document_describes_the_api(kafka_console: ConsoleHarness) -> None:
    client = kafka_console.login("vic")
    document = client.get("/api/v1/openapi.json").json()
    paths = set(document["paths"])
    assert "/api/v1/clusters/{cluster}/topics" in paths
    assert "/api/v1/clusters/{cluster}/groups/{group}/reset-offsets" in paths
    assert all(p.startswith("/api/v1/") for p in paths)
    assert "post" in document["paths"]["/api/v1/clusters/{cluster}/topics"]


def test_a_group_id_with_reserved_characters_links_to_its_own_page(
    kafka: KafkaInfo, kafka_console: ConsoleHarness, unique_topic: str
) -> None:
    create_topic(kafka.client_config(), unique_topic)
    group = f"pay?x#{unique_topic}"
    consumer = Consumer({**kafka.client_config(), "group.id": group})
    consumer.commit(offsets=[TopicPartition(unique_topic, 0, 0)], asynchronous=False)
    consumer.close()
    client = kafka_console.login("root")
    encoded = f"pay%3Fx%23{unique_topic}"

    groups = client.get("/clusters/local/groups")
    assert f'href="/clusters/local/groups/{encoded}"' in groups.text
    group_page = client.get(f"/clusters/local/groups/{encoded}")
    assert group_page.status_code == 200 and unique_topic in group_page.text
    assert f'action="/clusters/local/groups/{encoded}/delete"' in group_page.text
    assert f'action="/clusters/local/groups/{encoded}/reset-offsets"' in group_page.text


def test_a_bad_time_or_offset_in_a_form_is_a_400_and_changes_nothing(
    kafka: KafkaInfo, kafka_console: ConsoleHarness, unique_topic: str
) -> None:
    create_topic(kafka.client_config(), unique_topic)
    group = f"bad-input-{unique_topic}"
    consumer = Consumer({**kafka.client_config(), "group.id": group})
    consumer.commit(offsets=[TopicPartition(unique_topic, 0, 0)], asynchronous=False)
    client = kafka_console.login("root")
    del client.headers["X-CSRF-Token"]

    for since in ("yesterday", "nan", "99999999999d"):
        messages = client.get(
            f"/clusters/local/topics/{unique_topic}/messages", params={"since": since}
        )
        assert messages.status_code == 400, (since, messages.status_code)
        assert "accepted" in messages.text or "duration" in messages.text

    group_page = client.get(f"/clusters/local/groups/{group}")
    for to, value in (("offset", "12abc"), ("offset", "-3"), ("time", "soon")):
        reset = client.post(
            f"/clusters/local/groups/{group}/reset-offsets",
            data={"topic": unique_topic, "to": to, "value": value,
                  "csrf_token": page_csrf(group_page.text)},
        )  # fmt: skip
        assert reset.status_code == 400, (to, value, reset.status_code)
        assert repr(value) in reset.text.replace("&#39;", "'")
    committed = consumer.committed([TopicPartition(unique_topic, 0)], timeout=30)
    consumer.close()
    assert committed[0].offset == 0
