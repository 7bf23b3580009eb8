"""Failure policies: audit never fails silently.

fail_open: the caller never waits; every dropped event is counted and reported in an
`audit.degraded` event once writing works again. fail_closed: the caller waits up to
`block_timeout_ms`, then gets AuditUnavailableError; nothing it was not told about is lost.

Two kinds of failing log are used:
- `SwitchableSink` (kaudit_recorder_sinks.py), a stand-in in front of a real SegmentLog
  whose append() can be made to block or to raise LogWriteError on demand, for exact
  control of timing;
- a real log that really fails: in a child process RLIMIT_FSIZE (with SIGXFSZ ignored) makes
  the kernel refuse segment writes with EFBIG until the limit is raised again, and a
  directory placed where the next segment must be created makes the roll fail with EISDIR.
  (chmod on the log directory does not work here: the tests run as root.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kaudit_recorder_sinks import SwitchableSink, assert_contiguous, events_in, wait_for

from kaudit.errors import AuditUnavailableError
from kaudit.log.segments import SegmentLog, segment_name
from kaudit.recorder.core import Recorder, RecorderSettings


def emit(recorder: Recorder, i: int) -> None:
    recorder.emit("records.produced", actor="User:p", resource="topic:t", details={"i": i})


def numbers(events: list[dict[str, Any]]) -> list[int]:
    return [e["details"]["i"] for e in events if e["event_type"] == "records.produced"]


# -- fail_open --------------------------------------------------------------------------------


def test_fail_open_counts_drops_while_blocked_and_reports_them(tmp_path: Path) -> None:
    sink = SwitchableSink(tmp_path)
    recorder = Recorder(sink, RecorderSettings(failure_policy="fail_open", queue_max_events=5))
    sink.open.clear()
    emit(recorder, 0)
    wait_for(lambda: sink.calls == 1)  # the writer holds event 0 and is stuck in append

    started = time.monotonic()
    for i in range(1, 101):
        emit(recorder, i)
    assert time.monotonic() - started < 1.0, "fail_open callers must never wait"
    metrics = recorder.metrics()
    assert metrics["kaudit_events_dropped_total"] == 95
    assert metrics["kaudit_queue_depth"] == 5

    sink.open.set()
    recorder.flush(timeout=10)
    recorder.close()
    events = events_in(tmp_path)
    assert numbers(events) == [0, 1, 2, 3, 4, 5]
    [degraded] = [e for e in events if e["event_type"] == "audit.degraded"]
    assert degraded["details"]["dropped_events"] == 95
    assert degraded["details"]["failure_policy"] == "fail_open"
    assert degraded["details"]["first_drop"] <= degraded["details"]["recovered_at"]
    assert degraded["action"]["result"] == "failure"
    assert recorder.metrics()["kaudit_events_dropped_total"] == 95
    assert_contiguous(events)


def test_fail_open_keeps_the_failed_batch_and_reports_drops_after_recovery(
    tmp_path: Path,
) -> None:
    sink = SwitchableSink(tmp_path)
    recorder = Recorder(sink, RecorderSettings(failure_policy="fail_open", queue_max_events=10))
    sink.failing.set()
    emit(recorder, 0)
    wait_for(lambda: not recorder.healthy)
    assert recorder.last_error == "stand-in: no space left on device"
    for i in range(1, 41):
        emit(recorder, i)
    dropped = recorder.metrics()["kaudit_events_dropped_total"]
    assert dropped == 30
    assert recorder.metrics()["kaudit_log_write_errors_total"] >= 1

    sink.failing.clear()
    recorder.flush(timeout=10)
    assert recorder.healthy
    recorder.close()
    events = events_in(tmp_path)
    # The batch that was being written when the log failed is not lost.
    assert numbers(events) == list(range(11))
    [degraded] = [e for e in events if e["event_type"] == "audit.degraded"]
    assert degraded["details"]["dropped_events"] == dropped
    assert "no space left" in degraded["details"]["reason"]
    assert_contiguous(events)


# -- fail_closed ------------------------------------------------------------------------------


def test_fail_closed_blocks_then_refuses_and_loses_nothing_accepted(tmp_path: Path) -> None:
    sink = SwitchableSink(tmp_path)
    recorder = Recorder(sink, RecorderSettings(failure_policy="fail_closed", block_timeout_ms=300))
    sink.failing.set()
    emit(recorder, 0)  # accepted: the log looked healthy
    wait_for(lambda: not recorder.healthy)

    started = time.monotonic()
    with pytest.raises(AuditUnavailableError) as info:
        emit(recorder, 1)
    waited = time.monotonic() - started
    assert 0.28 <= waited < 2.0
    assert "fail_closed" in str(info.value)
    assert "no space left" in str(info.value)
    assert info.value.retryable
    # flush() is bounded by the same timeout under fail_closed.
    with pytest.raises(AuditUnavailableError, match="not durable"):
        recorder.flush()

    sink.failing.clear()
    recorder.flush(timeout=10)
    emit(recorder, 2)
    recorder.close()
    events = events_in(tmp_path)
    assert numbers(events) == [0, 2]
    assert not [e for e in events if e["event_type"] == "audit.degraded"]
    assert recorder.metrics()["kaudit_events_dropped_total"] == 0
    assert_contiguous(events)


def test_fail_closed_waits_for_room_in_a_full_queue(tmp_path: Path) -> None:
    sink = SwitchableSink(tmp_path)
    recorder = Recorder(
        sink,
        RecorderSettings(failure_policy="fail_closed", queue_max_events=3, block_timeout_ms=1000),
    )
    sink.open.clear()
    emit(recorder, 0)
    wait_for(lambda: sink.calls == 1)
    for i in (1, 2, 3):
        emit(recorder, i)
    started = time.monotonic()
    with pytest.raises(AuditUnavailableError, match="queue is full"):
        emit(recorder, 4)
    assert time.monotonic() - started >= 0.95

    # A caller that is waiting gets in as soon as the writer makes room.
    outcome: list[str] = []

    def late() -> None:
        try:
            recorder.emit(
                "records.produced",
                actor="User:p",
                resource="topic:t",
                details={"i": 5},
            )
            outcome.append("accepted")
        except AuditUnavailableError as exc:
            outcome.append(f"refused: {exc}")

    thread = threading.Thread(target=late)
    thread.start()
    time.sleep(0.2)
    assert not outcome  # still waiting
    sink.open.set()
    thread.join(10)
    assert outcome == ["accepted"]
    recorder.close()
    events = events_in(tmp_path)
    assert numbers(events) == [0, 1, 2, 3, 5]
    assert_contiguous(events)


# -- a real failing log --------------------------------------------------------------------

_FSIZE_CHILD = textwrap.dedent(
    """
    import json, os, resource, signal, sys, time
    from kaudit.errors import AuditUnavailableError
    from kaudit.log.segments import SegmentLog, segment_name
    from kaudit.recorder.core import Recorder, RecorderSettings

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    log_dir, policy = sys.argv[1], sys.argv[2]
    recorder = Recorder(
        SegmentLog(log_dir, fsync="batch"),
        RecorderSettings(failure_policy=policy, queue_max_events=10, block_timeout_ms=300),
    )

    def emit(i):
        recorder.emit("records.produced", actor="User:p", resource="topic:t", details={"i": i})

    for i in range(5):
        emit(i)
    recorder.flush()
    size = os.path.getsize(os.path.join(log_dir, segment_name(0)))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, hard))  # no room for a line
    out = {"accepted": [], "refused": [], "waits": []}
    emit(5)
    out["accepted"].append(5)
    deadline = time.monotonic() + 10
    while recorder.healthy and time.monotonic() < deadline:
        time.sleep(0.005)
    out["last_error"] = recorder.last_error
    for i in range(6, 56):
        started = time.monotonic()
        try:
            emit(i)
            out["accepted"].append(i)
        except AuditUnavailableError as exc:
            out["refused"].append(i)
            out["waits"].append(time.monotonic() - started)
            out["error"] = str(exc)
            if len(out["refused"]) == 2:
                break
    out["during"] = recorder.metrics()
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    recorder.flush(timeout=20)
    recorder.close()
    out["after"] = recorder.metrics()
    print(json.dumps(out))
    """
)


def _run_fsize_child(log_dir: Path, policy: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", _FSIZE_CHILD, str(log_dir), policy],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def test_fail_open_with_a_log_the_kernel_refuses_to_grow(tmp_path: Path) -> None:
    """Real EFBIG from RLIMIT_FSIZE in a child process (see the module docstring)."""
    out = _run_fsize_child(tmp_path, "fail_open")
    assert "File too large" in out["last_error"]
    assert out["refused"] == []  # fail_open never refuses the caller
    dropped = out["during"]["kaudit_events_dropped_total"]
    assert dropped == 40  # 10 queued behind the failing batch, the rest dropped
    assert out["after"]["kaudit_events_dropped_total"] == dropped
    events = events_in(tmp_path)
    written = numbers(events)
    assert written == list(range(16))
    assert len(written) + dropped == 56
    [degraded] = [e for e in events if e["event_type"] == "audit.degraded"]
    assert degraded["details"]["dropped_events"] == dropped
    assert "File too large" in degraded["details"]["reason"]
    assert_contiguous(events)


def test_fail_closed_with_a_log_the_kernel_refuses_to_grow(tmp_path: Path) -> None:
    """Real EFBIG from RLIMIT_FSIZE in a child process (see the module docstring)."""
    out = _run_fsize_child(tmp_path, "fail_closed")
    assert out["accepted"] == [5]
    assert out["refused"] == [6, 7]
    assert all(0.28 <= w < 2.0 for w in out["waits"])
    assert "File too large" in out["error"]
    assert out["after"]["kaudit_events_dropped_total"] == 0
    events = events_in(tmp_path)
    assert numbers(events) == [0, 1, 2, 3, 4, 5]  # everything accepted, nothing else
    assert not [e for e in events if e["event_type"] == "audit.degraded"]
    assert_contiguous(events)


def test_a_log_failing_at_a_roll_neither_duplicates_nor_skips_sequences(
    tmp_path: Path,
) -> None:
    """A real failure at a segment roll: a directory sits where the next segment must be
    created (EISDIR) for a while, then is removed. The stand-in's `open` switch is used
    only to make the writer take events 1..9 as one batch, so it straddles the roll."""
    log_dir = tmp_path / "log"
    # Measure one line with the same settings, to size segments in whole lines.
    probe_dir = tmp_path / "probe"
    probe = Recorder(SegmentLog(probe_dir, fsync="never"), RecorderSettings(host="h"))
    emit(probe, 0)
    probe.close()
    line_size = (probe_dir / segment_name(0)).stat().st_size

    sink = SwitchableSink(log_dir, segment_max_bytes=line_size * 5 + line_size // 2)
    recorder = Recorder(sink, RecorderSettings(host="h"))
    sink.open.clear()
    emit(recorder, 0)
    wait_for(lambda: sink.calls == 1)
    for i in range(1, 10):
        emit(recorder, i)
    blocker = log_dir / segment_name(5)
    blocker.mkdir()
    sink.open.set()
    wait_for(lambda: not recorder.healthy)
    time.sleep(0.2)
    blocker.rmdir()
    recorder.flush(timeout=20)
    for i in range(10, 15):
        emit(recorder, i)
    recorder.close()

    events = events_in(log_dir)
    assert numbers(events) == list(range(15))
    assert_contiguous(events)
