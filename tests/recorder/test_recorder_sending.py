"""A log that sends a batch and confirms it later (the Kafka log) has the writer encode
its next batch meanwhile: the guarantees stay those of a plain append. Uses
`SendingSink` (kaudit_recorder_sinks.py), a stand-in in front of a real SegmentLog, for
exact control of when a batch is confirmed; tests/integration/test_kafka_log.py runs the
Kafka log itself through failures."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from kaudit_recorder_sinks import SendingSink, assert_contiguous, events_in, wait_for

from kaudit.errors import AuditUnavailableError
from kaudit.recorder.core import Recorder, RecorderSettings


def emit(recorder: Recorder, i: int) -> None:
    recorder.emit("records.produced", actor="User:p", resource="topic:t", details={"i": i})


def numbers(events: list[dict[str, Any]]) -> list[int]:
    return [e["details"]["i"] for e in events if e["event_type"] == "records.produced"]


def test_batches_are_sent_one_at_a_time_and_each_flush_waits_for_its_own(
    tmp_path: Path,
) -> None:
    sink = SendingSink(tmp_path)
    recorder = Recorder(sink, RecorderSettings(batch_max_events=7))
    for i in range(500):
        emit(recorder, i)
        if i % 97 == 0:
            recorder.flush(timeout=10)
            assert numbers(events_in(tmp_path))[-1] == i  # durable when flush returns
    recorder.close()
    events = events_in(tmp_path)
    assert numbers(events) == list(range(500))
    assert_contiguous(events)
    assert sink.sends >= 500 // 7


def test_drops_reported_while_a_batch_is_encoded_renumber_it(tmp_path: Path) -> None:
    """The audit.degraded event written once a batch is durable takes the sequence
    number the next batch, already encoded, was given: that one is numbered again."""
    sink = SendingSink(tmp_path)
    recorder = Recorder(
        sink, RecorderSettings(failure_policy="fail_open", queue_max_events=5, batch_max_events=2)
    )
    sink.open.clear()
    emit(recorder, 0)
    wait_for(lambda: sink.calls == 1)  # the writer waits in confirming event 0
    for i in range(1, 6):
        emit(recorder, i)  # the queue is full: 1..5

    def overflow() -> None:  # while [1, 2] is confirmed and [3, 4] is encoded
        for i in range(6, 21):
            emit(recorder, i)  # 6..9 fill the queue behind 5, 10..20 are dropped
        overflowed.set()

    overflowed = threading.Event()
    sink.before_confirm = overflow  # the next confirm: the one of [0] is under way
    sink.open.set()
    assert overflowed.wait(10)
    recorder.flush(timeout=10)
    recorder.close()
    events = events_in(tmp_path)
    assert numbers(events) == list(range(10))
    [degraded] = [e for e in events if e["event_type"] == "audit.degraded"]
    assert degraded["details"]["dropped_events"] == 11
    assert_contiguous(events)


def test_a_failing_confirm_is_retried_and_fail_closed_loses_nothing(tmp_path: Path) -> None:
    sink = SendingSink(tmp_path)
    recorder = Recorder(
        sink,
        RecorderSettings(
            failure_policy="fail_closed", queue_max_events=4, block_timeout_ms=300,
            batch_max_events=2,
        ),
    )  # fmt: skip
    sink.failing.set()
    accepted = []
    for i in range(50):
        try:
            emit(recorder, i)
        except AuditUnavailableError:
            break
        accepted.append(i)
    assert len(accepted) < 50
    assert recorder.metrics()["kaudit_log_write_errors_total"] >= 1
    with pytest.raises(AuditUnavailableError):
        recorder.flush(timeout=0.3)
    sink.failing.clear()
    recorder.flush(timeout=10)
    assert recorder.healthy
    recorder.close()
    events = events_in(tmp_path)
    assert numbers(events) == accepted
    assert_contiguous(events)
    assert recorder.metrics()["kaudit_events_dropped_total"] == 0
