"""The reader of the audit log on a Kafka topic (`KafkaLogReader`) and its records.

A consumer that either follows a consumer group, whose committed offsets are the durable
cursor (exporters: `poll_batch`, `commit`, `rewind`, `lag`), or reads every partition
from the start without a group (`kaudit tail kafka://…`, verification, the writer's
recovery: `lines`, `records_from`, `partition_records`). `lines` drops the duplicates
at-least-once delivery can leave, by `event_id`, remembering a bounded number of ids.
A Kafka record holds one or more event lines (a writer sends a batch's lines for one
partition together); each line is a `LogRecord`: the event line, the record it is in,
and the writer stream that record names in its `STREAM_HEADER` header.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from kaudit.config.model import KafkaConnection
from kaudit.errors import LogError
from kaudit.log.kafka.client import (
    ErrorTracker,
    client_base,
    cluster_metadata,
    describe,
    error_text,
)

STREAM_HEADER = "kaudit_stream"
HMAC_HEADER = "kaudit-hmac"
"""The header of the broker auditor's HMAC-SHA256 (hex) of a decision record's value."""
_GROUP_SESSION_TIMEOUT_MS = 10_000
_LEADERLESS = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}


class LogRecord:
    """One record of the Kafka log: the event line and where it is (and, from the broker
    auditor's decision topic, the HMAC its writer put on the record: `HMAC_HEADER`)."""

    __slots__ = ("hmac", "line", "offset", "partition", "stream")

    def __init__(
        self,
        line: bytes,
        partition: int,
        offset: int,
        stream: str | None,
        hmac: bytes | None = None,
    ) -> None:
        self.line = line
        self.partition = partition
        self.offset = offset
        self.stream = stream
        self.hmac = hmac

    @property
    def sequence(self) -> int | None:
        try:
            seq = orjson.loads(self.line)["integrity"]["sequence_number"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        return seq if isinstance(seq, int) else None


class KafkaLogReader:
    """Reads the Kafka log: with a consumer group (committed offsets are the cursor) or,
    with `group=None`, every partition from the beginning without committing."""

    def __init__(
        self,
        config: KafkaConnection,
        *,
        group: str | None,
        topic: str | None = None,
        dedupe: int = 100_000,
        prefetch_kbytes: int | None = None,
    ) -> None:
        self.topic: str = topic or str(getattr(config, "topic", "__oprtr_audit_log"))
        self._where = describe(config)
        self._errors = ErrorTracker()
        self.group = group
        settings: dict[str, Any] = {
            **client_base(config, self._errors),
            "group.id": group or f"kaudit-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
        if group is not None:
            # An exporter that dies (kill -9, a lost node) hands its partitions to the
            # others of its group within 10 s, not librdkafka's default 45 s.
            settings["session.timeout.ms"] = _GROUP_SESSION_TIMEOUT_MS
            settings["heartbeat.interval.ms"] = _GROUP_SESSION_TIMEOUT_MS // 5
        if prefetch_kbytes is not None:
            settings["queued.max.messages.kbytes"] = prefetch_kbytes
        self._consumer = Consumer(settings)
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._dedupe = dedupe
        self._assigned = False
        self._records_read = self._lines_read = 0

    def _partitions(self, timeout: float = 15.0) -> list[int]:
        what = f"kafka audit log {self.topic} ({self._where})"
        metadata = cluster_metadata(self._consumer, self._errors, what, timeout)
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None:
            reason = error_text(topic.error) if topic is not None else "unknown topic"
            raise LogError(f"kafka audit log {self.topic} ({self._where}): {reason}")
        return sorted(topic.partitions)

    def end_offsets(self) -> dict[int, int]:
        """Each partition's high watermark now."""
        return {p: self._watermark(p) for p in self._partitions()}

    def _watermark(self, partition: int, timeout: float = 10.0) -> int:
        # Just after a topic is created (or a leader moves) the broker answers "not
        # leader" for a moment: a retriable error, asked again until the timeout.
        deadline = time.monotonic() + timeout
        while True:
            try:
                tp = TopicPartition(self.topic, partition)
                return int(self._consumer.get_watermark_offsets(tp, timeout=timeout)[1])
            except KafkaException as exc:
                err = exc.args[0]
                retriable = isinstance(err, KafkaError) and (
                    err.retriable() or err.code() in _LEADERLESS
                )
                if not retriable or time.monotonic() > deadline:
                    raise LogError(
                        f"kafka audit log {self.topic} ({self._where}): cannot read the end "
                        f"of partition {partition}: {error_text(err)}"
                    ) from exc
                time.sleep(0.2)

    def records_from(self, offsets: dict[int, int]) -> Iterator[LogRecord]:
        """Every record from the given partition offsets (others: from the start) to the
        current end, without a group."""
        ends = self.end_offsets()
        partitions = sorted(ends)
        start = {p: offsets.get(p, 0) for p in partitions}
        todo = {p for p in partitions if start[p] < ends[p]}
        if not todo:
            return
        self._consumer.assign([TopicPartition(self.topic, p, start[p]) for p in todo])
        yield from self._until_end(todo, ends)

    def partition_records(self, partition: int) -> Iterator[LogRecord]:
        """Every record of one partition, from its start to its current end, without a
        group (readers of several partitions at once each take one)."""
        end = self._watermark(partition)
        if end <= 0:
            return
        self._consumer.assign([TopicPartition(self.topic, partition, 0)])
        yield from self._until_end({partition}, {partition: end})

    def partitions(self) -> list[int]:
        """The topic's partition numbers."""
        return self._partitions()

    def _until_end(self, todo: set[int], ends: dict[int, int]) -> Iterator[LogRecord]:
        idle_since = time.monotonic()
        while todo:
            messages = self._consumer.consume(1000, 1.0)
            if not messages and time.monotonic() - idle_since > 30:
                raise LogError(
                    f"kafka audit log {self.topic} ({self._where}): no data for 30 s while "
                    f"reading to the end: {self._errors.last or 'broker unreachable'}"
                )
            for msg in messages:
                idle_since = time.monotonic()
                err = msg.error()
                partition = msg.partition() or 0
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        todo.discard(partition)
                        continue
                    raise LogError(
                        f"kafka audit log {self.topic} ({self._where}): {error_text(err)}"
                    )
                if (msg.offset() or 0) + 1 >= ends.get(partition, 0):
                    todo.discard(partition)
                yield from self._records(msg)

    def _records(self, msg: Any) -> list[LogRecord]:
        """The event lines of one Kafka record (a writer puts several in one, a line
        each), each with the record's place and stream."""
        stream = None
        tag = None
        for key, value in msg.headers() or ():
            if key == STREAM_HEADER and value is not None:
                stream = value.decode()
            elif key == HMAC_HEADER:
                tag = value
        partition, offset = msg.partition(), msg.offset()
        return [
            LogRecord(line, partition, offset, stream, tag)
            for line in (msg.value() or b"").split(b"\n")
        ]

    def lines(self, *, follow: bool = False) -> Iterator[bytes]:
        """Every event line from the start (no group), duplicates dropped by event_id;
        with `follow`, then new ones as they come (an empty line marks each catch-up)."""
        ends = self.end_offsets()
        partitions = sorted(ends)
        todo = {p for p in partitions if ends[p] > 0}
        self._consumer.assign([TopicPartition(self.topic, p, 0) for p in partitions])
        for record in self._until_end(todo, ends):
            if self._first_time(record.line):
                yield record.line
        if not follow:
            return
        while True:
            yield b""
            for msg in self._consumer.consume(1000, 0.5):
                if msg.error() is None:
                    for record in self._records(msg):
                        if self._first_time(record.line):
                            yield record.line

    def _first_time(self, line: bytes) -> bool:
        """False for an event id already seen (at-least-once delivery can repeat one)."""
        start = line.find(b'"event_id":"')
        if start < 0:
            return True
        start += 12
        event_id = line[start : line.find(b'"', start)]
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > self._dedupe:
            self._seen.popitem(last=False)
        return True

    # -- the group cursor (exporters) ------------------------------------------------------

    def subscribe(self) -> None:
        if not self._assigned:
            self._consumer.subscribe([self.topic])
            self._assigned = True

    def poll_batch(self, max_records: int, timeout: float) -> list[LogRecord]:
        """The next lines for this group (not yet committed): about `max_records` of
        them, never part of a Kafka record (its lines are committed together)."""
        self.subscribe()
        out: list[LogRecord] = []
        asked, wait = max_records, timeout
        while True:
            messages = self._consumer.consume(max(1, asked), wait)
            for msg in messages:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise LogError(
                        f"kafka audit log {self.topic} ({self._where}): {error_text(err)}"
                    )
                out.extend(self._records(msg))
            if not messages or len(out) >= max_records:
                return out
            # Records hold several lines: ask for as many more as should fill the batch.
            per_message = max(1, len(out) // len(messages))
            asked, wait = (max_records - len(out)) // per_message, 0.0
            if asked == 0:
                return out

    def commit(self, records: Sequence[LogRecord]) -> None:
        """Save the group's cursor past `records` (synchronously: it is the cursor)."""
        last: dict[int, int] = {}
        for r in records:
            last[r.partition] = max(last.get(r.partition, -1), r.offset)
        if last:
            offsets = [TopicPartition(self.topic, p, o + 1) for p, o in last.items()]
            self._consumer.commit(offsets=offsets, asynchronous=False)

    def committed_offsets(self) -> dict[int, int]:
        """This group's committed offset of each partition that has one."""
        partitions = [TopicPartition(self.topic, p) for p in self._partitions()]
        committed = self._consumer.committed(partitions, timeout=10)
        return {tp.partition: tp.offset for tp in committed if tp.offset >= 0}

    def commit_offsets(self, offsets: dict[int, int]) -> None:
        """Save the group's cursor at `offsets` (partition: next offset to read), also
        before what was read already (a reader holding records back)."""
        if offsets:
            self._consumer.commit(
                offsets=[TopicPartition(self.topic, p, o) for p, o in offsets.items()],
                asynchronous=False,
            )

    def rewind(self, records: Sequence[LogRecord]) -> None:
        """Go back to the first of `records` per partition (a delivery failed)."""
        first: dict[int, int] = {}
        for r in records:
            first[r.partition] = min(first.get(r.partition, r.offset), r.offset)
        for p, o in first.items():
            self._consumer.seek(TopicPartition(self.topic, p, o))

    def lag(self) -> int:
        """Events of the topic past this group's committed offsets: its records there,
        times the events per record read so far (a record holds one or more)."""
        partitions = self._partitions()
        committed = self._consumer.committed(
            [TopicPartition(self.topic, p) for p in partitions], timeout=10
        )
        total = 0
        for tp in committed:
            low, high = self._consumer.get_watermark_offsets(tp, timeout=10)
            position = tp.offset if tp.offset >= 0 else low
            total += max(0, high - position)
        if self._records_read:
            return round(total * self._lines_read / self._records_read)
        return total

    def close(self) -> None:
        self._consumer.close()
