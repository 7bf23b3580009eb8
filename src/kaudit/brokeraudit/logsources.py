"""Where the bypass detector reads the audit log from, and how it keeps its cursor there.

The detector holds broker events back until a gateway event matches them, so its cursor
may never pass an event still waiting. Each source gives every line with the place just
before it and the writer stream it belongs to, and saves the cursor at the earliest
place still waiting:

- `LocalLogSource`: the local segment log, the cursor a file (one position).
- `KafkaLogSource`: the Kafka log topic, the cursor the committed offsets of a consumer
  group of the detector's own (one offset per partition). The partitions are assigned,
  not subscribed, so every poll reads to the current end without waiting on a group
  rebalance; committing with a manual assignment still stores the group's offsets.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from kaudit.config.model import KafkaLog
from kaudit.log.cursor import Cursor
from kaudit.log.kafka import KafkaLogReader
from kaudit.log.segments import LogReader, Position

_BATCH = 5_000
LOCAL_STREAM = "local"
"""The writer stream of every line of the local log: one writer's own file."""


class LogSource(Protocol):
    """The audit log as the bypass detector reads it."""

    def lines(self) -> Iterator[tuple[bytes, object, str | None]]:
        """Each line the log gained since the last call, with the place just before it
        and its writer stream (None: a Kafka record without the stream header)."""

    def lane(self, place: object) -> object:
        """The part of the log `place` is in; places of one lane come in log order."""

    def save(self, keep: Sequence[object]) -> None:
        """Save the cursor before the earliest of `keep` (places `lines` gave) in each
        lane, or past everything read when nothing is kept."""

    def close(self) -> None: ...


class LocalLogSource:
    """The local segment log behind a cursor file."""

    def __init__(self, log_dir: Path, cursor: Cursor) -> None:
        self.reader = LogReader(log_dir)
        self.cursor = cursor
        self._read_at = cursor.load()

    def lines(self) -> Iterator[tuple[bytes, object, str | None]]:
        while True:
            lines, after = self.reader.read(self._read_at, _BATCH)
            if not lines:
                return
            offset = after.offset - sum(len(line) for line in lines)
            for line in lines:
                yield line, Position(after.segment, offset), LOCAL_STREAM
                offset += len(line)
            self._read_at = after

    def lane(self, place: object) -> object:
        return None

    def save(self, keep: Sequence[object]) -> None:
        places = [p for p in keep if isinstance(p, Position)]
        target = min(places) if places else self._read_at
        if target is not None:
            self.cursor.save(target)

    def close(self) -> None:
        pass


class KafkaLogSource:
    """The Kafka log topic behind the committed offsets of consumer group `group`."""

    def __init__(self, config: KafkaLog, group: str) -> None:
        self.reader = KafkaLogReader(config, group=group)
        self.group = group
        self._next = self.reader.committed_offsets()
        self._saved = dict(self._next)

    def lines(self) -> Iterator[tuple[bytes, object, str | None]]:
        for record in self.reader.records_from(self._next):
            self._next[record.partition] = record.offset + 1
            yield record.line, (record.partition, record.offset), record.stream

    def lane(self, place: object) -> object:
        return place[0] if isinstance(place, tuple) else None

    def save(self, keep: Sequence[object]) -> None:
        target = dict(self._next)
        for place in keep:
            if isinstance(place, tuple):
                partition, offset = place
                target[partition] = min(target.get(partition, offset), offset)
        if target != self._saved:
            self.reader.commit_offsets(target)
            self._saved = target

    def close(self) -> None:
        self.reader.close()
