"""The audit log on a Kafka topic (default `__oprtr_audit_log`, as Kpow keeps it).

- `kaudit.log.kafka.writer`: `KafkaLogSink`, the single writer of one log stream: an
  idempotent producer with acks=all, events keyed by resource, the stream's sequence
  kept across restarts (and recovered after an unclean stop).
- `kaudit.log.kafka.records`: how a batch's lines become records (grouped by
  partition, a few hundred lines to a record).
- `kaudit.log.kafka.reader`: `KafkaLogReader`, which follows a consumer group (its
  committed offsets are an exporter's durable cursor) or reads every partition from the
  start without one (`kaudit tail kafka://…`), dropping duplicates by `event_id`.
- `kaudit.log.kafka.topic`: `ensure_topic`, creating the topic with its partitions,
  replication and retention.
- `kaudit.log.kafka.client`: what every client shares (settings, error tracking, the
  cluster's metadata).

The names its users need are handed on from here.
"""

from kaudit.log.kafka.client import (
    ErrorTracker,
    client_base,
    cluster_metadata,
    describe,
    error_text,
)
from kaudit.log.kafka.reader import STREAM_HEADER, KafkaLogReader, LogRecord
from kaudit.log.kafka.topic import ensure_topic
from kaudit.log.kafka.writer import KafkaLogSink

__all__ = [
    "STREAM_HEADER",
    "ErrorTracker",
    "KafkaLogReader",
    "KafkaLogSink",
    "LogRecord",
    "client_base",
    "cluster_metadata",
    "describe",
    "ensure_topic",
    "error_text",
]
