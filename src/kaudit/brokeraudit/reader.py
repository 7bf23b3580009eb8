"""The reader of the broker auditor's decision topic: each record becomes audit events,
recorded through an audit session (the recorder's one door into the log).

It follows the topic with a consumer group whose committed offsets are its cursor, and
commits a batch only once the recorder has made its events durable: a record that the
plugin had acknowledged is recorded even if kaudit stops in between (at least once; the
event ids derived from record ids let readers drop a record read twice). A record that
is not a decision record is logged and counted, never recorded as if it were one.
"""

from __future__ import annotations

import logging
import threading

from kaudit.brokeraudit.decisions import parse, to_events
from kaudit.config.model import BrokerAuditorConfig
from kaudit.errors import EventDecodeError
from kaudit.log.kafka import KafkaLogReader, LogRecord
from kaudit.recorder.core import Recorder

log = logging.getLogger("kaudit.brokeraudit")

_BATCH = 500
_DURABLE_TIMEOUT_S = 30.0


class DecisionReader:
    """Moves the decision topic's records into the audit log, batch by batch."""

    def __init__(
        self, config: BrokerAuditorConfig, recorder: Recorder, *, poll_s: float = 1.0
    ) -> None:
        self.config = config
        self.recorder = recorder
        self.poll_s = poll_s
        self.reader = KafkaLogReader(config, group=config.group, topic=config.topic)
        self.records_read = 0
        self.events_recorded = 0
        self.invalid = 0

    def poll_once(self) -> int:
        """Read one batch, record its events durably, commit it; the records read."""
        records = self.reader.poll_batch(_BATCH, self.poll_s)
        if not records:
            return 0
        try:
            self._record(records)
        except BaseException:
            # Not durable: read the batch again rather than commit past it.
            self.reader.rewind(records)
            raise
        self.reader.commit(records)
        self.records_read += len(records)
        return len(records)

    def _record(self, records: list[LogRecord]) -> None:
        for record in records:
            try:
                events = to_events(parse(record.line))
            except (EventDecodeError, ValueError, TypeError, KeyError) as exc:
                self.invalid += 1
                log.warning(
                    "broker decision topic %s partition %d offset %d: not a decision "
                    "record (%s); skipped",
                    self.config.topic, record.partition, record.offset, exc,
                )  # fmt: skip
                continue
            self.recorder.record_many(events)
            self.events_recorded += len(events)
        self.recorder.flush(_DURABLE_TIMEOUT_S)

    def lag(self) -> int:
        """Records of the decision topic not yet read by this group."""
        return self.reader.lag()

    def run(self, stop: threading.Event) -> None:
        """Read until `stop` is set; a failing batch is retried from the committed offsets."""
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("reading the broker decision topic %s failed", self.config.topic)
                stop.wait(self.poll_s)

    def close(self) -> None:
        self.reader.close()
