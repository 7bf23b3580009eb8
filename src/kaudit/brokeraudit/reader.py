"""The reader of the broker auditor's decision topic: each record becomes audit events,
recorded through an audit session (the recorder's one door into the log).

It follows the topic with a consumer group whose committed offsets are its cursor, and
commits a batch only once the recorder has made its events durable: a record that the
plugin had acknowledged is recorded even if kaudit stops in between (at least once; the
event ids derived from record ids let readers drop a record read twice). A record that
is not a decision record is logged and counted, never recorded as if it were one.

With an HMAC key (`hmac_key` / `hmac_key_file`, the brokers' ``kaudit.audit.hmac.key.file``),
a record without the plugin's valid HMAC-SHA256 of its value is refused: counted per
reason (`refused`), logged, and recorded once per reason as an `audit.degraded` note,
never as decisions. Anyone allowed to write into the topic could otherwise forge them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections import Counter
from pathlib import Path

from kaudit.brokeraudit.decisions import parse, refused_note, to_events
from kaudit.config.model import BrokerAuditorConfig
from kaudit.config.secrets import reveal
from kaudit.errors import ConfigError, ConfigIssue, EventDecodeError
from kaudit.log.kafka import KafkaLogReader, LogRecord
from kaudit.recorder.core import Recorder

log = logging.getLogger("kaudit.brokeraudit")

_BATCH = 500
_DURABLE_TIMEOUT_S = 30.0
_SHORTEST_KEY = 16
UNSIGNED = "no HMAC"
BAD_HMAC = "HMAC does not match"
# What the plugin leaves off the end of its key file: the bytes Java's
# Character.isWhitespace calls whitespace, 0x1C to 0x1F among them (bytes.rstrip() keeps
# those, and the two sides would hold different keys).
_KEY_TRAILER = b" \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"


def hmac_key(config: BrokerAuditorConfig) -> bytes | None:
    """The decision records' HMAC key (trailing whitespace left off, as the plugin does),
    or None when none is configured."""
    if config.hmac_key_file:
        try:
            key = Path(config.hmac_key_file).expanduser().read_bytes().rstrip(_KEY_TRAILER)
        except OSError as exc:
            issue = ConfigIssue("broker_auditor.hmac_key_file", f"cannot read it ({exc})")
            raise ConfigError([issue]) from exc
    elif config.hmac_key is not None:
        key = (reveal(config.hmac_key) or "").encode().rstrip(_KEY_TRAILER)
    else:
        return None
    if len(key) < _SHORTEST_KEY:
        message = (
            f"the HMAC key has {len(key)} bytes; at least {_SHORTEST_KEY} are needed (the "
            "same key as the brokers' kaudit.audit.hmac.key.file)"
        )
        raise ConfigError([ConfigIssue("broker_auditor.hmac_key", message)])
    return key


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
        self.refused: Counter[str] = Counter()
        self.key = hmac_key(config)
        if self.key is None:
            log.warning(
                "broker_auditor: no hmac_key, so the records of %s are taken unauthenticated; "
                "allow WRITE on that topic to the auditor's principal alone, or anyone who may "
                "write there can forge decisions",
                config.topic,
            )

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

    def _refusal(self, record: LogRecord) -> str | None:
        """Why `record` is refused (no HMAC, a wrong one), or None if it is the plugin's."""
        if self.key is None:
            return None
        if record.hmac is None:
            return UNSIGNED
        expected = hmac.new(self.key, record.line, hashlib.sha256).hexdigest().encode()
        return None if hmac.compare_digest(expected, record.hmac) else BAD_HMAC

    def _record(self, records: list[LogRecord]) -> None:
        for record in records:
            reason = self._refusal(record)
            if reason is not None:
                self.refused[reason] += 1
                log.warning(
                    "broker decision topic %s partition %d offset %d: refused (%s)",
                    self.config.topic, record.partition, record.offset, reason,
                )  # fmt: skip
                if self.refused[reason] == 1:
                    self.recorder.record(
                        refused_note(
                            self.config.topic,
                            record.partition,
                            record.offset,
                            reason,
                            int(time.time() * 1000),
                        )
                    )
                continue
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
