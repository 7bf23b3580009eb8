"""The audit log: the append-only, sequenced source of truth, and readers over it.

The recorder's single writer appends sequenced, signed event lines to one of two logs,
and everything downstream (exporters, search, verification, ``kaudit tail``) reads them
back, each reader keeping its own cursor:

- `kaudit.log.segments`: the embedded log, local JSON Lines segment files rolled by size
  (`SegmentLog`, `LogReader`, crash recovery).
- `kaudit.log.kafka`: the distributed log, a Kafka topic (`KafkaLogSink`,
  `KafkaLogReader`; the topic and the client settings they share).
- `kaudit.log.cursor`: a reader's durable position in the segment log (`Cursor`).

It may import `kaudit.config`, `kaudit.events` and `kaudit.errors`, and nothing else of
kaudit: the recorder, integrity, exporters and sources sit above it.
"""

from kaudit.log.cursor import Cursor
from kaudit.log.segments import LogReader, Position, RecoveryReport, SegmentLog

__all__ = ["Cursor", "LogReader", "Position", "RecoveryReport", "SegmentLog"]
