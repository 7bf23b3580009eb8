"""The audit log's topic: created if missing, with its partitions, replication and
retention.

It owns `ensure_topic`, which the writer calls before it produces (and the checkpoints
before they publish): a topic that exists is left as it is; a missing one is created
from the `KafkaLog` settings unless ``create_topic`` is false; missing rights are said
in words (which ACLs to grant).
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from kaudit.config.model import KafkaLog
from kaudit.errors import LogError
from kaudit.log.kafka.client import (
    ErrorTracker,
    client_base,
    cluster_metadata,
    describe,
    error_text,
)

log = logging.getLogger("kaudit.log.kafka")


def ensure_topic(config: KafkaLog, timeout: float = 15.0) -> None:
    """Create the log topic with its partitions, replication and retention if missing."""
    tracker = ErrorTracker()
    admin = AdminClient(client_base(config, tracker))
    where = describe(config)
    # All topics, not just ours: a metadata request naming a missing topic makes a
    # broker with auto.create.topics.enable create it with default settings.
    metadata = cluster_metadata(
        admin, tracker, f"kafka audit log {config.topic} ({where})", timeout
    )
    existing = metadata.topics.get(config.topic)
    if existing is not None and existing.error is None:
        return
    if (
        existing is not None
        and existing.error is not None
        and existing.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    ):
        raise LogError(
            f"kafka audit log {config.topic} ({where}): not authorized to describe the topic "
            "(grant DESCRIBE, WRITE and CREATE on it, or create it beforehand)"
        )
    if not config.create_topic:
        raise LogError(
            f"kafka audit log {config.topic} ({where}): the topic does not exist and "
            "create_topic is false"
        )
    topic = NewTopic(
        config.topic,
        num_partitions=config.partitions,
        replication_factor=config.replication_factor,
        config={"retention.ms": str(config.retention_ms), "cleanup.policy": "delete"},
    )
    future = admin.create_topics([topic], request_timeout=timeout)[config.topic]
    try:
        future.result(timeout)
    except KafkaException as exc:
        err = exc.args[0]
        if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return
        raise LogError(
            f"kafka audit log {config.topic} ({where}): cannot create the topic: {error_text(err)}"
        ) from exc
    log.info("created kafka audit log topic %s on %s", config.topic, where)
