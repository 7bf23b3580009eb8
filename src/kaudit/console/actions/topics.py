"""Topics: list, describe (partitions, leaders, ISR, configs), create, delete, edit
configs (with the old and new values), add partitions, truncate (delete records before
an offset)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import TopicCollection, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported at run time
    NewPartitions,
    ResourceType,
)
from confluent_kafka.cimpl import NewTopic

from kaudit.console.actions.configs import alter_configs, read_configs
from kaudit.console.clusters import ClusterClients, KafkaCallError, kafka_call

__all__ = [
    "add_partitions",
    "alter_topic_configs",
    "create_topic",
    "delete_topic",
    "describe_topic",
    "list_topics",
    "topic_configs",
    "truncate_topic",
]


def list_topics(cluster: ClusterClients) -> list[dict[str, Any]]:
    """Every topic with its partition count, internal topics last."""
    metadata = kafka_call("list topics", lambda: cluster.admin.list_topics(timeout=cluster.timeout))
    return sorted(
        (
            {"name": name, "partitions": len(t.partitions), "internal": name.startswith("__")}
            for name, t in metadata.topics.items()
        ),
        key=lambda t: (t["internal"], t["name"]),
    )


def topic_configs(cluster: ClusterClients, topic: str) -> dict[str, dict[str, Any]]:
    """The topic's configs: value, whether it is the default, whether it is sensitive."""
    entries = read_configs(cluster, ResourceType.TOPIC, topic, f"topic {topic}")
    return {
        name: {
            "value": None if entry.is_sensitive else entry.value,
            "default": entry.is_default,
            "sensitive": entry.is_sensitive,
        }
        for name, entry in sorted(entries.items())
    }


def describe_topic(cluster: ClusterClients, topic: str) -> dict[str, Any]:
    """Partitions with leader, replicas and ISR, and the topic's configs."""
    futures = cluster.admin.describe_topics(
        TopicCollection([topic]), request_timeout=cluster.timeout
    )
    description = kafka_call(
        f"describe topic {topic}", lambda: futures[topic].result(cluster.timeout)
    )
    partitions = [
        {
            "partition": p.id,
            "leader": p.leader.id if p.leader is not None else None,
            "replicas": [r.id for r in p.replicas],
            "isr": [r.id for r in p.isr],
        }
        for p in sorted(description.partitions, key=lambda p: p.id)
    ]
    return {
        "name": topic,
        "internal": bool(description.is_internal),
        "partitions": partitions,
        "configs": topic_configs(cluster, topic),
    }


def create_topic(
    cluster: ClusterClients,
    topic: str,
    partitions: int,
    replication_factor: int,
    configs: Mapping[str, str],
) -> dict[str, Any]:
    new = NewTopic(topic, partitions, replication_factor, config=dict(configs))
    futures = cluster.admin.create_topics([new], request_timeout=cluster.timeout)
    kafka_call(f"create topic {topic}", lambda: futures[topic].result(cluster.timeout))
    return {"created": topic}


def delete_topic(cluster: ClusterClients, topic: str) -> dict[str, Any]:
    futures = cluster.admin.delete_topics([topic], request_timeout=cluster.timeout)
    kafka_call(f"delete topic {topic}", lambda: futures[topic].result(cluster.timeout))
    return {"deleted": topic}


def alter_topic_configs(
    cluster: ClusterClients, topic: str, changes: Mapping[str, str | None]
) -> dict[str, Any]:
    """Set (a value) or reset to default (None) each config; the old and new values."""
    return alter_configs(
        cluster, ResourceType.TOPIC, topic, f"topic {topic}", changes,
        read=lambda: topic_configs(cluster, topic),
        unknown=f"unknown config(s) for topic {topic}",
    )  # fmt: skip


def add_partitions(cluster: ClusterClients, topic: str, total: int) -> dict[str, Any]:
    """Grow the topic to `total` partitions."""
    futures = cluster.admin.create_partitions(
        [NewPartitions(topic, total)], request_timeout=cluster.timeout
    )
    kafka_call(f"add partitions to {topic}", lambda: futures[topic].result(cluster.timeout))
    return {"partitions": total}


def truncate_topic(
    cluster: ClusterClients, topic: str, offsets: Mapping[int, int] | None
) -> dict[str, Any]:
    """Delete records before each partition's offset (`offsets`), or all records (None);
    the new low watermark of each partition."""
    if offsets is None:
        metadata = kafka_call(
            f"list partitions of {topic}",
            lambda: cluster.admin.list_topics(topic=topic, timeout=cluster.timeout),
        )
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            raise KafkaCallError(f"topic {topic} does not exist", code="UNKNOWN_TOPIC_OR_PART")
        # OFFSET_END (-1) deletes everything up to the high watermark.
        offsets = dict.fromkeys(described.partitions, -1)
    partitions = [TopicPartition(topic, p, o) for p, o in sorted(offsets.items())]
    futures = cluster.admin.delete_records(partitions, request_timeout=cluster.timeout)
    low: dict[str, int] = {}
    for tp, future in futures.items():
        done = kafka_call(f"delete records of {topic}[{tp.partition}]", _waiter(future, cluster))
        low[str(tp.partition)] = done.low_watermark
    return {"low_watermarks": low}


def _waiter(future: Any, cluster: ClusterClients) -> Any:
    return lambda: future.result(cluster.timeout)
