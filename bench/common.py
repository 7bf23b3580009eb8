"""What the benchmarks share: the event they write and the timed emit-until-durable loop."""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kaudit
from kaudit.dev.kafka import KafkaInfo, LocalKafka, ready_broker
from kaudit.errors import KauditError

DETAILS = {"partitions": 6, "replication_factor": 3, "configs": {"retention.ms": "604800000"}}


def emit_until_durable(
    session: kaudit.AuditSession,
    events: int,
    resources: int = 1,
    details: dict[str, Any] | None = None,
) -> float:
    """Seconds from the first emit() until flush() returns (everything durable), emitting
    `events` topic.created events over `resources` topics; asserts none was dropped."""
    emit = session.emit
    started = time.perf_counter()
    for i in range(events):
        emit(
            "topic.created",
            actor="User:alice",
            resource=f"topic:t{i % resources}" if resources > 1 else "topic:orders",
            details=DETAILS if details is None else details,
            correlation_id=f"req_{i}",
        )
    session.flush()
    elapsed = time.perf_counter() - started
    assert session.recorder.metrics()["kaudit_events_dropped_total"] == 0
    return elapsed


@contextlib.contextmanager
def local_broker(kafka_dir: Path | None) -> Iterator[KafkaInfo]:
    """The broker running in `kafka_dir` (left running), or a new one in a temporary
    directory, stopped on the way out."""
    info = ready_broker(kafka_dir)
    if info is not None:
        yield info
        return
    made = kafka_dir is None
    where = kafka_dir or Path(tempfile.mkdtemp(prefix="kaudit-bench-kafka-"))
    broker = LocalKafka(where)
    try:
        try:
            info = broker.start()
        except KauditError as exc:
            raise SystemExit(f"cannot start Kafka: {exc}") from exc
        try:
            yield info
        finally:
            broker.stop()
    finally:
        if made:  # a benchmark removes the directories it created
            shutil.rmtree(where, ignore_errors=True)


def remove_on_sigterm() -> None:
    """SIGTERM ends the benchmark through SystemExit, so the `with` blocks that hold its
    temporary directories and broker remove them (as they do on Ctrl-C)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
