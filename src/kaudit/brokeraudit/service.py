"""Running the broker auditor's side of kaudit from the ``broker_auditor:`` section: the
decision reader, and the bypass detector when `bypass.enabled`, until told to stop.

Both record through the recorder they are given: the one of ``kaudit broker-audit``'s
own session (on a Kafka log, a signed stream of its own) or of the process that also
runs the gateway.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kaudit.brokeraudit.bypass import BypassDetector
from kaudit.brokeraudit.logsources import KafkaLogSource, LocalLogSource, LogSource
from kaudit.brokeraudit.reader import DecisionReader
from kaudit.config import Config
from kaudit.config.model import KafkaLog
from kaudit.errors import UsageError
from kaudit.integrity.chain import signing_key
from kaudit.log.cursor import Cursor
from kaudit.recorder.core import Recorder

log = logging.getLogger("kaudit.brokeraudit")

BYPASS_CURSOR = "bypass-detector"


def bypass_detector(config: Config, recorder: Recorder) -> BypassDetector | None:
    """The bypass detector the configuration asks for (None when it asks for none)."""
    section = config.broker_auditor
    if section is None or not section.bypass.enabled:
        return None
    source: LogSource
    if isinstance(config.audit.log, KafkaLog):
        source = KafkaLogSource(config.audit.log, bypass_group(section.group))
    else:
        cursor = Cursor.named(config.data_path / "broker-auditor", BYPASS_CURSOR)
        source = LocalLogSource(config.log_dir, cursor)
    signing = config.audit.integrity.signing
    # With the HMAC key, a gateway event is evidence only with a valid signature.
    key = signing_key(signing) if signing.enabled else None
    return BypassDetector(source, recorder, section.bypass, hmac_key=key)


def bypass_group(decision_group: str) -> str:
    """The consumer group whose offsets are the bypass detector's cursor in a Kafka log:
    named after the decision reader's group, so two kaudits reading two clusters' decisions
    into one log keep two cursors."""
    return f"{decision_group}-bypass"


def run_broker_audit(
    config: Config,
    recorder: Recorder,
    stop: threading.Event,
    *,
    once: bool = False,
    say: Callable[[str], None] = log.info,
) -> tuple[int, int]:
    """Read decisions (and detect bypasses) until `stop`, or with `once` until the
    decision topic is caught up; (records read, bypass events recorded)."""
    section = config.broker_auditor
    if section is None:
        raise UsageError("no broker_auditor: section in the configuration")
    reader = DecisionReader(section, recorder)
    detector = bypass_detector(config, recorder)
    say(
        f"kaudit broker-audit: reading {section.topic} on {','.join(section.bootstrap_servers)}"
        + (", detecting gateway bypasses" if detector is not None else "")
    )
    try:
        while not stop.is_set():
            try:
                read = reader.poll_once()
                if detector is not None:
                    detector.poll()
            except Exception:
                if once:
                    raise
                log.exception("broker audit: a batch failed; retrying")
                stop.wait(1.0)
                continue
            if once and read == 0 and reader.lag() == 0:
                break
    finally:
        reader.close()
        if detector is not None:
            detector.close()
    return reader.records_read, detector.reported if detector is not None else 0
