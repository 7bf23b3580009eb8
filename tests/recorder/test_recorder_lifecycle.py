"""Recorder lifecycle and concurrency: flush() waits for durability, close() writes what is
queued, many threads and coroutines may emit at once."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from kaudit_recorder_sinks import SwitchableSink, assert_contiguous, events_in, wait_for

from kaudit.errors import AuditUnavailableError
from kaudit.log.segments import SegmentLog
from kaudit.recorder.core import Recorder


def test_flush_returns_only_once_everything_before_it_is_in_the_log(tmp_path: Path) -> None:
    sink = SwitchableSink(tmp_path)
    sink.delay = 0.3  # a slow disk
    recorder = Recorder(sink)
    for i in range(100):
        recorder.emit("records.produced", actor="User:p", resource="topic:t", details={"i": i})
    started = time.monotonic()
    recorder.flush(timeout=10)
    assert time.monotonic() - started >= 0.25
    # Read straight from the segment files, with the recorder still open.
    assert [e["details"]["i"] for e in events_in(tmp_path)] == list(range(100))
    recorder.close()


def test_flush_with_a_timeout_reports_a_writer_that_is_behind(tmp_path: Path) -> None:
    sink = SwitchableSink(tmp_path)
    recorder = Recorder(sink)
    sink.open.clear()
    recorder.emit("auth.login", actor="User:a", resource="cluster:c")
    with pytest.raises(AuditUnavailableError, match=r"not durable after 0\.2s"):
        recorder.flush(timeout=0.2)
    sink.open.set()
    recorder.flush(timeout=10)
    recorder.close()
    assert len(events_in(tmp_path)) == 1


def test_close_writes_everything_queued(tmp_path: Path) -> None:
    recorder = Recorder(SegmentLog(tmp_path, fsync="never"))
    for i in range(20_000):
        recorder.emit("records.consumed", actor="User:c", resource="topic:t", details={"i": i})
    recorder.close()  # no flush first
    events = events_in(tmp_path)
    assert [e["details"]["i"] for e in events] == list(range(20_000))
    assert_contiguous(events)
    assert recorder.metrics()["kaudit_events_written_total"] == 20_000


def test_a_closed_recorder_refuses_events_and_releases_the_log(tmp_path: Path) -> None:
    recorder = Recorder(SegmentLog(tmp_path))
    recorder.close()
    recorder.close()  # idempotent
    with pytest.raises(AuditUnavailableError, match="closed"):
        recorder.emit("auth.login", actor="User:a", resource="cluster:c")
    SegmentLog(tmp_path).close()  # the directory lock was released


def test_close_reports_events_it_could_not_write(tmp_path: Path) -> None:
    """A log still failing when close() gives up: the caller is told how many were lost."""
    sink = SwitchableSink(tmp_path)
    sink.failing.set()
    recorder = Recorder(sink)
    for i in range(10):
        recorder.emit("records.produced", actor="User:p", resource="topic:t", details={"i": i})
    wait_for(lambda: not recorder.healthy)
    with pytest.raises(AuditUnavailableError, match="could not be written before close"):
        recorder.close(timeout=0.3)
    assert recorder.metrics()["kaudit_events_dropped_total"] == 10


def test_many_threads_emitting_at_once_lose_nothing(tmp_path: Path) -> None:
    recorder = Recorder(SegmentLog(tmp_path, segment_max_bytes=256 << 10, fsync="never"))
    threads_n, per_thread = 8, 1500
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                recorder.emit(
                    "records.produced",
                    actor=f"User:t{t}",
                    resource=f"topic:t{t % 3}",
                    details={"t": t, "i": i},
                )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    recorder.close()

    events = events_in(tmp_path)
    assert len(events) == threads_n * per_thread
    assert_contiguous(events)
    seen = [(e["details"]["t"], e["details"]["i"]) for e in events]
    assert sorted(seen) == [(t, i) for t in range(threads_n) for i in range(per_thread)]
    for t in range(threads_n):  # each thread's events stay in its own order
        assert [i for tt, i in seen if tt == t] == list(range(per_thread))
    for e in events:  # no mixing of one emit's parts with another's
        assert e["actor"]["id"] == f"User:t{e['details']['t']}"
        assert e["resource"]["id"] == f"t{e['details']['t'] % 3}"
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert recorder.metrics()["kaudit_events_dropped_total"] == 0


def test_emit_from_a_coroutine_needs_no_await_and_never_blocks_the_loop(
    tmp_path: Path,
) -> None:
    sink = SwitchableSink(tmp_path)
    recorder = Recorder(sink)
    sink.open.clear()  # the log is stuck: emit must still return at once

    async def handler(n: int) -> float:
        started = time.monotonic()
        recorder.emit("kafka.request", actor="User:a", resource=f"topic:t{n}", details={"n": n})
        await asyncio.sleep(0)
        return time.monotonic() - started

    async def main() -> list[float]:
        return await asyncio.gather(*(handler(n) for n in range(50)))

    durations = asyncio.run(main())
    assert max(durations) < 0.1
    sink.open.set()
    recorder.close()
    assert sorted(e["details"]["n"] for e in events_in(tmp_path)) == list(range(50))
