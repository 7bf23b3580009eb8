"""Consumer groups: list, describe with each partition's committed offset and lag, reset
offsets (earliest, latest, a time or an offset; a dry run previews), delete."""

from __future__ import annotations

from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]  # re-exported

from kaudit.console.clusters import ClusterClients, KafkaCallError, kafka_call

__all__ = ["RESET_TARGETS", "delete_group", "describe_group", "list_groups", "reset_offsets"]

RESET_TARGETS = ("earliest", "latest", "time", "offset")


def list_groups(cluster: ClusterClients) -> list[dict[str, Any]]:
    future = cluster.admin.list_consumer_groups(request_timeout=cluster.timeout)
    listing = kafka_call("list consumer groups", lambda: future.result(cluster.timeout))
    return sorted(
        (
            {"group": g.group_id, "state": _name(g.state), "simple": g.is_simple_consumer_group}
            for g in listing.valid
        ),
        key=lambda g: g["group"],
    )


def _name(value: Any) -> str | None:
    return getattr(value, "name", None) if value is not None else None


def _end_offsets(
    cluster: ClusterClients, partitions: list[TopicPartition], spec: OffsetSpec
) -> dict[tuple[str, int], int]:
    if not partitions:
        return {}
    futures = cluster.admin.list_offsets(
        {TopicPartition(tp.topic, tp.partition): spec for tp in partitions},
        request_timeout=cluster.timeout,
    )
    out = {}
    for tp, future in futures.items():
        info = kafka_call(f"list offsets of {tp.topic}[{tp.partition}]", _waiter(future, cluster))
        out[(tp.topic, tp.partition)] = info.offset
    return out


def _spec(which: str) -> OffsetSpec:
    spec: OffsetSpec = getattr(OffsetSpec, which)()
    return spec


def _waiter(future: Any, cluster: ClusterClients) -> Any:
    return lambda: future.result(cluster.timeout)


def committed(cluster: ClusterClients, group: str) -> list[TopicPartition]:
    futures = cluster.admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=cluster.timeout
    )
    result = kafka_call(f"list offsets of group {group}", _waiter(futures[group], cluster))
    return [tp for tp in result.topic_partitions if tp.offset >= 0]


def describe_group(cluster: ClusterClients, group: str) -> dict[str, Any]:
    """State, members and, per partition, the committed offset, the end and the lag."""
    futures = cluster.admin.describe_consumer_groups([group], request_timeout=cluster.timeout)
    description = kafka_call(f"describe group {group}", _waiter(futures[group], cluster))
    offsets = committed(cluster, group)
    ends = _end_offsets(cluster, offsets, _spec("latest"))
    return {
        "group": group,
        "state": _name(description.state),
        "members": [
            {
                "member": m.member_id,
                "client_id": m.client_id,
                "host": m.host,
                "partitions": [
                    [tp.topic, tp.partition] for tp in (m.assignment.topic_partitions or [])
                ],
            }
            for m in description.members
        ],
        "offsets": [
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "committed": tp.offset,
                "end": ends[(tp.topic, tp.partition)],
                "lag": max(0, ends[(tp.topic, tp.partition)] - tp.offset),
            }
            for tp in sorted(offsets, key=lambda tp: (tp.topic, tp.partition))
        ],
    }


def reset_offsets(
    cluster: ClusterClients,
    group: str,
    topic: str,
    to: str,
    value: int | None,
    dry_run: bool,
) -> dict[str, Any]:
    """Each partition's current and new offset; committed unless `dry_run`. Kafka refuses
    the commit while the group has members."""
    if to not in RESET_TARGETS:
        raise KafkaCallError(f"reset to {to!r}: accepted {', '.join(RESET_TARGETS)}")
    if to in ("time", "offset") and value is None:
        raise KafkaCallError(f"reset to {to} needs a value")
    metadata = kafka_call(
        f"describe {topic}", lambda: cluster.admin.list_topics(topic=topic, timeout=cluster.timeout)
    )
    described = metadata.topics.get(topic)
    if described is None or described.error is not None:
        raise KafkaCallError(f"topic {topic} does not exist", code="UNKNOWN_TOPIC_OR_PART")
    partitions = [TopicPartition(topic, p) for p in sorted(described.partitions)]
    current = {(tp.topic, tp.partition): tp.offset for tp in committed(cluster, group)}
    low = _end_offsets(cluster, partitions, _spec("earliest"))
    high = _end_offsets(cluster, partitions, _spec("latest"))
    if to == "earliest":
        targets = low
    elif to == "latest":
        targets = high
    elif to == "time":
        assert value is not None
        found = _end_offsets(cluster, partitions, OffsetSpec.for_timestamp(value))
        targets = {k: (o if o >= 0 else high[k]) for k, o in found.items()}
    else:
        assert value is not None
        targets = {k: min(max(value, low[k]), high[k]) for k in high}
    preview = [
        {"partition": p, "current": current.get((topic, p)), "new": targets[(topic, p)]}
        for (_, p) in sorted(targets)
    ]
    if not dry_run:
        request = ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, p, targets[(topic, p)]) for (_, p) in sorted(targets)]
        )
        futures = cluster.admin.alter_consumer_group_offsets(
            [request], request_timeout=cluster.timeout
        )
        kafka_call(f"reset offsets of group {group}", _waiter(futures[group], cluster))
    return {"dry_run": dry_run, "offsets": preview}


def delete_group(cluster: ClusterClients, group: str) -> dict[str, Any]:
    futures = cluster.admin.delete_consumer_groups([group], request_timeout=cluster.timeout)
    kafka_call(f"delete group {group}", _waiter(futures[group], cluster))
    return {"deleted": group}
