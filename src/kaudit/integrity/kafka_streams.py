"""Reading a Kafka log back by writer stream, for its verifier and its proofs.

Each writer of the Kafka log is one stream with its own sequence numbers, its records
spread over the partitions by resource key; the stream's events in sequence order are
the order the writer sealed them (the order of records across partitions means
nothing). Its signed checkpoints are on the companion topic `<log topic>.checkpoints`
(kafka_checkpoints.py writes them), keyed by stream id, each value
`{"stream", "size", "frontier", "note"}`.

Here: the name of that topic and its records by stream, the streams of a log topic,
and one stream's lines merged from the partitions in sequence order as they are read.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence

import orjson

from kaudit.config.model import KafkaConnection
from kaudit.errors import LogError
from kaudit.integrity.store import StoredCheckpoint
from kaudit.integrity.verify import sequence_of
from kaudit.log.kafka import KafkaLogReader

_PREFETCH_KB = 4096
"""What a reader of the whole topic asks the client to hold ahead (its default, 64 MB
per reader, would keep most of a small topic in memory; one reader per partition is
open at once while a stream is merged)."""


def checkpoint_topic(log_topic: str) -> str:
    """The companion topic that holds the checkpoints of a Kafka log topic."""
    return f"{log_topic}.checkpoints"


def read_checkpoint_topic(
    connection: KafkaConnection, topic: str
) -> dict[str, list[StoredCheckpoint | str]]:
    """The checkpoint records on the companion topic of log `topic`, by stream, in the
    order they were published (unreadable ones as why; an absent topic holds none)."""
    out: dict[str, list[StoredCheckpoint | str]] = {}
    reader = KafkaLogReader(connection, group=None, topic=checkpoint_topic(topic))
    try:
        records = list(reader.records_from({}))
    except LogError:
        records = []  # no checkpoint topic: the streams have no checkpoints
    finally:
        reader.close()
    for record in records:
        try:
            obj = orjson.loads(record.line)
            name = str(obj["stream"])
            item: StoredCheckpoint | str = StoredCheckpoint(
                size=int(obj["size"]),
                segment=0,
                offset=0,
                frontier=tuple(bytes.fromhex(h) for h in obj["frontier"]),
                note=str(obj["note"]).encode(),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            name = record.stream or ""
            item = f"offset {record.offset}: unreadable checkpoint record: {exc}"
        out.setdefault(name, []).append(item)
    return out


def log_streams(connection: KafkaConnection, topic: str) -> tuple[dict[str, int], list[int]]:
    """The writer streams of log `topic` with their record counts ("" for records without
    a stream header), and the topic's partitions. Reads the topic once, keeping nothing."""
    counts: dict[str, int] = {}
    reader = KafkaLogReader(connection, group=None, topic=topic, prefetch_kbytes=_PREFETCH_KB)
    try:
        partitions = reader.partitions()
        for record in reader.records_from({}):
            name = record.stream or ""
            counts[name] = counts.get(name, 0) + 1
    finally:
        reader.close()
    return counts, partitions


def _partition_lines(
    connection: KafkaConnection, topic: str, partition: int, streams: frozenset[str]
) -> Iterator[tuple[int, bytes]]:
    """(sequence number, line) of the records of `streams` in one partition, in the
    order the writer put them there. A line without a readable sequence number keeps
    the place of the one before it (-1 at the start), so it stays where it was found."""
    # One reader per partition is open at once: a small prefetch keeps their sum small.
    reader = KafkaLogReader(connection, group=None, topic=topic, prefetch_kbytes=_PREFETCH_KB)
    try:
        last = -1
        for record in reader.partition_records(partition):
            if (record.stream or "") not in streams:
                continue
            seq = sequence_of(record.line)
            if seq is not None:
                last = seq
            yield last, record.line
    finally:
        reader.close()


def stream_lines(
    connection: KafkaConnection, topic: str, streams: frozenset[str], partitions: Sequence[int]
) -> Iterator[bytes]:
    """The lines of one writer stream (`streams`: its id, and "" to take records without
    a stream header along), merged from all partitions in sequence order as they are
    read, one consumer per partition: each partition holds the stream's records in the
    order they were sealed. A record delivered twice (the same bytes under the same
    sequence number: at-least-once) is yielded once."""
    for _, line in stream_items(connection, topic, streams, partitions):
        yield line


def stream_items(
    connection: KafkaConnection, topic: str, streams: frozenset[str], partitions: Sequence[int]
) -> Iterator[tuple[int, bytes]]:
    """(sequence number, line) of `stream_lines`, for a caller that wants the number."""
    merged = heapq.merge(
        *(_partition_lines(connection, topic, p, streams) for p in partitions),
        key=lambda item: item[0],
    )
    current: int | None = None
    seen: set[bytes] = set()
    for seq, line in merged:
        if seq != current:
            current, seen = seq, set()
        if line in seen:
            continue
        seen.add(line)
        yield seq, line
