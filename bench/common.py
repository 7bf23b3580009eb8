"""What the benchmarks share: the event they write, the timed emit-until-durable loop,
and leaving nothing behind: a broker started here runs in a temporary directory removed
with it, and SIGTERM unwinds a benchmark like Ctrl-C so its temporary data goes too."""

from __future__ import annotations

import contextlib
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


def remove_on_sigterm() -> None:
    """SIGTERM ends the benchmark through SystemExit, so the `with` blocks that hold its
    temporary directories and broker remove them (as they do on Ctrl-C)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


@contextlib.contextmanager
def local_broker(kafka_dir: Path | None) -> Iterator[KafkaInfo]:
    """The broker running in `kafka_dir` (left running), or a new one started there, or
    in a temporary directory (its data, up to gigabytes, removed with it), stopped on
    the way out."""
    remove_on_sigterm()
    info = ready_broker(kafka_dir)
    if info is not None:
        yield info
        return
    with contextlib.ExitStack() as stack:
        if kafka_dir is None:
            kafka_dir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="kaudit-bench-kafka-"))
            )
        broker = LocalKafka(kafka_dir)
        try:
            info = broker.start()
        except KauditError as exc:
            raise SystemExit(f"cannot start Kafka: {exc}") from exc
        try:
            yield info
        finally:
            broker.stop()
