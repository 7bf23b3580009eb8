"""Kafka setup shared by the tests against the real broker.

Topics and ACLs are made directly on the broker (not through the gateway or kaudit), as
a test's precondition: `create_topic`, `grant`, `grant_topic`, `new_scram_user`. ACLs
reach the authorizer a moment after AclCommand returns, so a test that depends on one
waits for it (`wait_until_described`, or `wait_for` any state). `read_messages` reads a
topic back from the start. `security` turns a user's confluent-kafka settings into
kaudit's ``security:`` block, and `kafka_log` makes an ``audit.log`` block around one.

The functions take what the fixtures in ``tests/integration/conftest.py`` give:
confluent-kafka settings (`admin_config`, `sasl_config(...)`, ``kafka.client_config()``)
and `kafka_tool`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from subprocess import CompletedProcess
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from confluent_kafka.cimpl import NewTopic

KafkaTool = Callable[..., CompletedProcess[str]]
"""The `kafka_tool` fixture: ``kafka_tool(main_class, *args, bootstrap=..., check=...)``."""

ACL_COMMAND = "org.apache.kafka.tools.AclCommand"


def create_topic(
    admin_config: Mapping[str, str],
    topic: str,
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
) -> None:
    """Create `topic` (replication factor 1) and wait until the broker has made it."""
    admin = AdminClient(dict(admin_config))  # kept referenced until the future resolves
    # NewTopic refuses config=None, so the argument is left out when there is none.
    new_topic = (
        NewTopic(topic, partitions, 1, config=dict(config))
        if config
        else NewTopic(topic, partitions, 1)
    )
    admin.create_topics([new_topic])[topic].result(timeout=30)


def grant(kafka_tool: KafkaTool, principal: str, *args: str) -> None:
    """An ACL added with Kafka's own AclCommand, as an operator would:
    ``grant(kafka_tool, "User:alice", "--operation", "Read", "--group", "g")``."""
    kafka_tool(ACL_COMMAND, "--add", "--allow-principal", principal, *args)


def grant_topic(kafka_tool: KafkaTool, user: str, topic: str, *operations: str) -> None:
    """Allow `user` the `operations` (``"Write"``, ``"Describe"``, ...) on `topic`."""
    args = ["--topic", topic]
    for operation in operations:
        args += ["--operation", operation]
    grant(kafka_tool, f"User:{user}", *args)


def new_scram_user(admin_config: Mapping[str, str], stem: str = "carol") -> tuple[str, str]:
    """A SCRAM-SHA-512 user with no ACLs, made through the admin API; (name, password)."""
    user, password = f"{stem}-{uuid.uuid4().hex[:8]}", f"{stem}-secret"
    admin = AdminClient(dict(admin_config))
    credential = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(user, credential, password.encode())]
    )
    futures[user].result(timeout=30)
    return user, password


def wait_until_described(settings: Mapping[str, str], topic: str) -> None:
    """Wait until the user of `settings` may describe `topic` (an ACL granted just now
    has reached the authorizer)."""
    # ACLs reach the authorizer through the metadata log a moment after AclCommand
    # returns. Auto-creation is off so that waiting cannot create the topic.
    admin = AdminClient({**settings, "allow.auto.create.topics": False})
    deadline = time.monotonic() + 15
    while True:
        topic_md = admin.list_topics(topic=topic, timeout=10).topics[topic]
        error = topic_md.error
        if error is None or error.code() != KafkaError.TOPIC_AUTHORIZATION_FAILED:
            return
        assert time.monotonic() < deadline, f"ACL on {topic} did not take effect in 15 s"
        time.sleep(0.2)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Wait until `condition()` holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout:g} s"
        time.sleep(0.1)


def read_messages(settings: Mapping[str, str], topic: str) -> list[Any]:
    """Every record of `topic`, each partition read from offset 0 to its end (30 s at
    most), by a consumer of a group of its own that commits nothing."""
    consumer = Consumer(
        {**settings, "group.id": f"check-{time.time_ns()}", "enable.partition.eof": True}
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        done: set[int] = set()
        out = []
        deadline = time.monotonic() + 30
        while len(done) < len(parts) and time.monotonic() < deadline:
            for msg in consumer.consume(500, 1.0):
                if msg.error():
                    done.add(msg.partition())
                    continue
                out.append(msg)
        return out
    finally:
        consumer.close()


def security(settings: Mapping[str, str]) -> dict[str, str]:
    """kaudit's ``security:`` block for a connection that logs in as confluent-kafka
    `settings` do (e.g. ``kafka.client_config("alice")``)."""
    block = {"security_protocol": settings["security.protocol"]}
    if "sasl.mechanism" in settings:
        block |= {
            "sasl_mechanism": settings["sasl.mechanism"],
            "sasl_username": settings["sasl.username"],
            "sasl_password": settings["sasl.password"],
        }
    return block


def kafka_log(
    servers: str, topic: str, security_block: Mapping[str, str], **extra: Any
) -> dict[str, Any]:
    """kaudit's ``audit.log`` block for the audit log on `topic` at `servers`: three
    partitions, replication factor 1, logging in with `security_block` (see `security`),
    and the `extra` settings."""
    return {
        "type": "kafka",
        "bootstrap_servers": [servers],
        "topic": topic,
        "partitions": 3,
        "replication_factor": 1,
        "security": dict(security_block),
        **extra,
    }
