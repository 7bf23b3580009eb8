"""What the benchmarks share: the event they write and the timed emit-until-durable loop."""

from __future__ import annotations

import time
from typing import Any

import kaudit

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
