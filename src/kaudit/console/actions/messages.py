"""Messages: produce one (key, value, headers), and read a topic's messages from an
offset or a time, up to a limit, without joining or moving any consumer group."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import OFFSET_END, KafkaError, Message, TopicPartition

from kaudit.console.clusters import ClusterClients, KafkaCallError, kafka_call

__all__ = ["RawMessage", "produce_message", "read_messages"]

RawMessage = dict[str, Any]
"""partition, offset, timestamp (ms), key and value (bytes or None), headers [(name, bytes)]."""


def produce_message(
    cluster: ClusterClients,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    partition: int | None = None,
) -> dict[str, Any]:
    """Produce one message (acks=all) and wait for it; where it landed."""
    delivered: list[Message] = []
    errors: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            errors.append(error)
        else:
            delivered.append(message)

    extra: dict[str, Any] = {} if partition is None else {"partition": partition}
    producer = cluster.producer
    kafka_call(
        f"produce to {topic}",
        lambda: producer.produce(
            topic, value=value, key=key, headers=list(headers), on_delivery=on_delivery, **extra
        ),
    )
    deadline = time.monotonic() + cluster.timeout
    while not delivered and not errors and time.monotonic() < deadline:
        producer.poll(0.1)
    if errors:
        raise KafkaCallError(f"produce to {topic}: {errors[0].str()}", code=errors[0].name())
    if not delivered:
        raise KafkaCallError(f"produce to {topic}: not acknowledged within {cluster.timeout:g}s")
    message = delivered[0]
    return {"partition": message.partition(), "offset": message.offset()}


def read_messages(
    cluster: ClusterClients,
    topic: str,
    *,
    partition: int | None,
    offset: int | None,
    since_ms: int | None,
    limit: int,
) -> list[RawMessage]:
    """Up to `limit` messages of `topic` (or one partition), from `offset` in each
    partition or from the first at or after `since_ms`, oldest first."""
    consumer = cluster.consumer(**{"enable.partition.eof": True})
    try:
        metadata = kafka_call(
            f"describe {topic}", lambda: consumer.list_topics(topic, timeout=cluster.timeout)
        )
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            raise KafkaCallError(f"topic {topic} does not exist", code="UNKNOWN_TOPIC_OR_PART")
        partitions = sorted(described.partitions)
        if partition is not None:
            if partition not in partitions:
                raise KafkaCallError(f"{topic} has no partition {partition}")
            partitions = [partition]
        starts = _starts(cluster, consumer, topic, partitions, offset, since_ms)
        ends = {
            p: kafka_call(
                f"read offsets of {topic}[{p}]",
                lambda p=p: consumer.get_watermark_offsets(  # type: ignore[misc]
                    TopicPartition(topic, p), timeout=cluster.timeout
                ),
            )[1]
            for p in partitions
        }
        todo = {p for p in partitions if starts[p] < ends[p]}
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in sorted(todo)])
        found: dict[int, list[RawMessage]] = {p: [] for p in partitions}
        deadline = time.monotonic() + cluster.timeout
        while todo and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.5):
                p = int(message.partition() or 0)
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        todo.discard(p)
                        continue
                    raise KafkaCallError(f"read {topic}[{p}]: {error.str()}", code=error.name())
                if p not in todo:
                    continue
                found[p].append(_raw(message))
                if int(message.offset() or 0) + 1 >= ends[p] or len(found[p]) >= limit:
                    todo.discard(p)
        merged = sorted(
            (m for p in partitions for m in found[p]),
            key=lambda m: (m["timestamp"], m["partition"]),
        )
        return merged[:limit]
    finally:
        consumer.close()


def _starts(
    cluster: ClusterClients,
    consumer: Any,
    topic: str,
    partitions: list[int],
    offset: int | None,
    since_ms: int | None,
) -> dict[int, int]:
    if since_ms is not None:
        wanted = [TopicPartition(topic, p, since_ms) for p in partitions]
        found = kafka_call(
            f"find offsets of {topic} by time",
            lambda: consumer.offsets_for_times(wanted, timeout=cluster.timeout),
        )
        starts: dict[int, int] = {}
        for tp in found:
            if tp.offset == OFFSET_END or tp.offset < 0:
                starts[tp.partition] = consumer.get_watermark_offsets(
                    TopicPartition(topic, tp.partition), timeout=cluster.timeout
                )[1]
            else:
                starts[tp.partition] = tp.offset
        return starts
    out: dict[int, int] = {}
    for p in partitions:
        low, _ = kafka_call(
            f"read offsets of {topic}[{p}]",
            lambda p=p: consumer.get_watermark_offsets(  # type: ignore[misc]
                TopicPartition(topic, p), timeout=cluster.timeout
            ),
        )
        out[p] = max(low, offset or 0)
    return out


def _raw(message: Message) -> RawMessage:
    _, timestamp = message.timestamp()
    return {
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp": timestamp,
        "key": message.key(),
        "value": message.value(),
        "headers": [(h[0], h[1] or b"") for h in (message.headers() or [])],
    }
