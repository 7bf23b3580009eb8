"""The exporter runner: a durable cursor per destination, retries that keep the cursor
where it is, dead letters for what a destination refuses, at-least-once across a kill.

The log is real (a Recorder over a SegmentLog). Exporters that must fail on cue are small
classes defined here; one test uses the real file exporter against a path that is a
directory, which fails for root too.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from kaudit.config import Config
from kaudit.config.model import FileDestination
from kaudit.errors import ExporterError
from kaudit.events.codec import decode
from kaudit.exporters import ExporterRunner, runners_for
from kaudit.exporters.feeds import LocalFeed
from kaudit.exporters.file import FileExporter
from kaudit.log.cursor import Cursor
from kaudit.log.segments import LogReader, Position, SegmentLog, list_segments, segment_name
from kaudit.recorder.core import Recorder, RecorderSettings


def append_events(log_dir: Path, start: int, count: int, segment_max_bytes: int = 1 << 20) -> None:
    """Write events numbered start..start+count-1 to the log."""
    recorder = Recorder(
        SegmentLog(log_dir, segment_max_bytes=segment_max_bytes, fsync="never"),
        RecorderSettings(host="h"),
    )
    for i in range(start, start + count):
        recorder.emit("topic.created", actor="User:a", resource=f"topic:t{i}", details={"i": i})
    recorder.close()


def numbers(records: list[bytes]) -> list[int]:
    return [orjson.loads(r)["details"]["i"] for r in records]


class Collecting:
    """Accepts every batch; can fail the first `fail` calls with an ExporterError and
    notes where the runner's cursor was at each call."""

    name = "collecting"

    def __init__(self, cursor: Cursor, fail: int = 0, retryable: bool = True) -> None:
        self.cursor = cursor
        self.fail = fail
        self.retryable = retryable
        self.calls: list[tuple[Position | None, list[bytes]]] = []
        self.delivered: list[bytes] = []
        self.closed = False

    def send(self, records: list[bytes]) -> None:
        self.calls.append((self.cursor.load(), list(records)))
        if len(self.calls) <= self.fail:
            raise ExporterError(
                f"destination down (call {len(self.calls)})", retryable=self.retryable
            )
        self.delivered += records

    def close(self) -> None:
        self.closed = True


def make_runner(
    tmp_path: Path, exporter: Any = None, **kwargs: Any
) -> tuple[ExporterRunner, Collecting]:
    cursor = Cursor(tmp_path / "cursors" / "c.json")
    exp = exporter or Collecting(cursor)
    runner = ExporterRunner(
        exp,
        log_dir=tmp_path / "log",
        cursor=cursor,
        sleep=kwargs.pop("sleep", lambda s: None),
        **kwargs,
    )
    return runner, exp


def test_running_again_after_more_events_sends_each_event_once(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    append_events(log_dir, 0, 40, segment_max_bytes=4096)  # many segments
    assert len(list_segments(log_dir)) > 3
    runner, exporter = make_runner(tmp_path, batch_max=7)
    assert runner.lag() == 40
    assert runner.drain() == 40
    assert runner.lag() == 0
    assert runner.run_once() == 0  # caught up: nothing sent again
    assert exporter.cursor.sequence() == 39

    append_events(log_dir, 40, 25, segment_max_bytes=4096)
    assert runner.lag() == 25
    # A new runner (a restarted process) starts from the saved cursor.
    runner2, exporter2 = make_runner(tmp_path, batch_max=7)
    assert runner2.metrics.last_sequence == 39
    assert runner2.drain() == 25
    assert numbers(exporter.delivered) == list(range(40))
    assert numbers(exporter2.delivered) == list(range(40, 65))
    assert all(len(records) <= 7 for _, records in exporter.calls)
    assert runner2.metrics.sent == 25 and runner2.metrics.last_sequence == 64
    # Native records are the log lines without their newline.
    log_lines = [line.rstrip(b"\n") for _, line in LogReader(log_dir).iter_lines()]
    assert exporter.delivered + exporter2.delivered == log_lines


def test_a_retryable_failure_is_retried_and_the_cursor_waits(tmp_path: Path) -> None:
    append_events(tmp_path / "log", 0, 10)
    sleeps: list[float] = []
    cursor = Cursor(tmp_path / "cursors" / "c.json")
    exporter = Collecting(cursor, fail=4)
    runner, _ = make_runner(tmp_path, exporter, batch_max=6, sleep=sleeps.append)

    assert runner.run_once() == 6
    # Four failed calls and the successful one, all with the same batch and the cursor
    # still where it was before the batch (no cursor yet).
    assert len(exporter.calls) == 5
    assert all(pos is None for pos, _ in exporter.calls)
    assert all(records == exporter.calls[0][1] for _, records in exporter.calls)
    assert numbers(exporter.delivered) == list(range(6))
    # Exponential backoff with full jitter: each sleep within [b/2, b], b doubling.
    for sleep, base in zip(sleeps, [0.2, 0.4, 0.8, 1.6], strict=True):
        assert base / 2 <= sleep <= base
    assert (runner.metrics.failed, runner.metrics.retried, runner.metrics.sent) == (4, 4, 6)
    assert runner.metrics.last_error is None
    after_first = cursor.load()
    assert after_first is not None

    exporter.fail = 6  # fail the next call too
    assert runner.run_once() == 4
    assert exporter.calls[-2][0] == after_first  # the failed call saw the old cursor
    assert numbers(exporter.delivered) == list(range(10))


def test_backoff_is_capped(tmp_path: Path) -> None:
    append_events(tmp_path / "log", 0, 1)
    sleeps: list[float] = []
    cursor = Cursor(tmp_path / "cursors" / "c.json")
    runner, _ = make_runner(
        tmp_path, Collecting(cursor, fail=10), sleep=sleeps.append, max_backoff_s=1.0
    )
    runner.drain()
    assert len(sleeps) == 10
    assert max(sleeps) <= 1.0
    assert min(sleeps[4:]) >= 0.5


def test_a_refused_batch_goes_to_the_dead_letter_file_and_the_cursor_moves_on(
    tmp_path: Path,
) -> None:
    append_events(tmp_path / "log", 0, 12)
    cursor = Cursor(tmp_path / "cursors" / "c.json")
    exporter = Collecting(cursor, fail=1, retryable=False)
    dead = tmp_path / "dead" / "letters.jsonl"
    runner, _ = make_runner(tmp_path, exporter, batch_max=5, dead_letter=dead)
    assert runner.drain() == 12
    assert len(exporter.calls) == 3  # refused once, not retried
    letters = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [letter["record"]["details"]["i"] for letter in letters] == [0, 1, 2, 3, 4]
    assert all(letter["reason"] == "destination down (call 1)" for letter in letters)
    # The dead-lettered record is the whole event, as it would have been sent.
    assert decode(orjson.dumps(letters[0]["record"])).event_type == "topic.created"
    assert numbers(exporter.delivered) == list(range(5, 12))
    assert runner.metrics.dead_lettered == 5
    assert cursor.sequence() == 11


def test_without_a_dead_letter_file_refusals_are_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    append_events(tmp_path / "log", 0, 3)
    cursor = Cursor(tmp_path / "cursors" / "c.json")
    runner, _ = make_runner(tmp_path, Collecting(cursor, fail=1, retryable=False))
    runner.drain()
    assert runner.metrics.dead_lettered == 3
    assert "dropped 3 records with no dead-letter file" in caplog.text


def _damaged_log(tmp_path: Path) -> Path:
    """A log of events 0..3 with a line of garbage between events 1 and 2."""
    log_dir = tmp_path / "log"
    append_events(log_dir, 0, 4)
    segment = log_dir / segment_name(0)
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join([*lines[:2], b"\x00garbage{\n", *lines[2:]]))
    return log_dir


def test_an_unreadable_log_line_is_dead_lettered_and_skipped(tmp_path: Path) -> None:
    _damaged_log(tmp_path)
    dead = tmp_path / "dead.jsonl"
    runner, exporter = make_runner(tmp_path, dead_letter=dead)
    assert runner.drain() == 5
    assert numbers(exporter.delivered) == [0, 1, 2, 3]
    assert runner.metrics.dead_lettered == 1
    assert b"unreadable log line" in dead.read_bytes()
    assert b"garbage" in dead.read_bytes()


def test_the_dead_letter_file_stays_json_lines_for_unreadable_log_lines(
    tmp_path: Path,
) -> None:
    _damaged_log(tmp_path)
    dead = tmp_path / "dead.jsonl"
    runner, _ = make_runner(tmp_path, dead_letter=dead)
    runner.drain()
    [letter] = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert letter["reason"].startswith("unreadable log line")
    assert "garbage" in orjson.dumps(letter["record"]).decode()


def test_a_file_destination_that_is_down_catches_up_when_it_returns(tmp_path: Path) -> None:
    """A real failure: the destination path is a directory (EISDIR, root included) until
    the third retry's backoff removes it."""
    append_events(tmp_path / "log", 0, 20)
    out = tmp_path / "out" / "audit.log"
    out.mkdir(parents=True)
    sleeps: list[float] = []
    errors: list[str | None] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        errors.append(runner.metrics.last_error)
        if len(sleeps) == 3:
            out.rmdir()

    cursor = Cursor(tmp_path / "cursors" / "file.json")
    runner = ExporterRunner(
        FileExporter(FileDestination(path=str(out))),
        log_dir=tmp_path / "log",
        cursor=cursor,
        sleep=sleep,
    )
    assert runner.drain() == 20
    runner.close()
    assert len(sleeps) == 3
    assert all(e is not None and "Is a directory" in e for e in errors)
    assert runner.metrics.last_error is None
    assert [orjson.loads(line)["details"]["i"] for line in out.read_bytes().splitlines()] == list(
        range(20)
    )


_KILLED_RUNNER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from kaudit.config.model import FileDestination
    from kaudit.exporters.runner import ExporterRunner
    from kaudit.exporters.file import FileExporter
    from kaudit.log.cursor import Cursor

    log_dir, out, cursor_path, die_after = sys.argv[1:5]

    class DiesAfterSend:
        name = "file"
        def __init__(self):
            self.inner = FileExporter(FileDestination(path=out))
            self.sends = 0
        def send(self, records):
            self.inner.send(records)  # delivered and fsynced
            self.sends += 1
            if self.sends == int(die_after):
                os.kill(os.getpid(), signal.SIGKILL)  # before the runner saves its cursor
        def close(self):
            self.inner.close()

    runner = ExporterRunner(
        DiesAfterSend(), log_dir=Path(log_dir), cursor=Cursor(cursor_path), batch_max=10
    )
    runner.drain()
    """
)


def test_a_runner_killed_between_send_and_cursor_save_resends_only_that_batch(
    tmp_path: Path,
) -> None:
    log_dir = tmp_path / "log"
    append_events(log_dir, 0, 50)
    out = tmp_path / "out.jsonl"
    cursor_path = tmp_path / "cursors" / "file.json"
    result = subprocess.run(
        [sys.executable, "-c", _KILLED_RUNNER, str(log_dir), str(out), str(cursor_path), "3"],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert Cursor(cursor_path).sequence() == 19  # two batches were saved, the third was not
    assert len(out.read_bytes().splitlines()) == 30

    # Restart with a plain file exporter: it resumes from the cursor.
    runner = ExporterRunner(
        FileExporter(FileDestination(path=str(out))),
        log_dir=log_dir,
        cursor=Cursor(cursor_path),
        batch_max=10,
    )
    assert runner.drain() == 30
    runner.close()
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    counts = Counter(e["event_id"] for e in events)
    by_number = {e["details"]["i"]: counts[e["event_id"]] for e in events}
    assert sorted(by_number) == list(range(50))  # nothing missing
    assert {i for i, n in by_number.items() if n == 2} == set(range(20, 30))  # that batch only
    assert max(counts.values()) == 2


def test_run_follows_the_log_until_stopped(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    append_events(log_dir, 0, 5)
    runner, exporter = make_runner(tmp_path, interval_s=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while len(exporter.delivered) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        append_events(log_dir, 5, 5)  # written while the runner is polling
        while len(exporter.delivered) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert numbers(exporter.delivered) == list(range(10))


def test_stopping_during_retries_returns_without_moving_the_cursor(tmp_path: Path) -> None:
    append_events(tmp_path / "log", 0, 3)
    cursor = Cursor(tmp_path / "cursors" / "c.json")
    runner, exporter = make_runner(
        tmp_path, Collecting(cursor, fail=10**9), sleep=lambda s: time.sleep(0.01)
    )
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 10
    while len(exporter.calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert cursor.load() is None
    assert runner.lag() == 3


def test_runners_for_gives_each_destination_its_own_cursor_and_dead_letters(
    tmp_path: Path,
) -> None:
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "audit": {
                "destination": {"type": "file", "path": str(tmp_path / "a.log")},
                "destinations": [],
            },
        }
    )
    config2 = Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "audit": {
                "destinations": [
                    {"type": "file", "name": "siem", "path": str(tmp_path / "b.log")},
                    {"type": "file", "path": str(tmp_path / "c.log"), "format": "ocsf"},
                ]
            },
        }
    )
    [single] = runners_for(config)
    assert single.name == f"file:{tmp_path / 'a.log'}"
    siem, other = runners_for(config2)
    feeds = [single.feed, siem.feed, other.feed]
    assert all(isinstance(feed, LocalFeed) for feed in feeds)
    assert isinstance(siem.feed, LocalFeed)
    assert siem.feed.cursor.path == tmp_path / "data" / "cursors" / "siem.json"
    assert siem.dead_letter == tmp_path / "data" / "dead-letter" / "siem.jsonl"
    assert other.fmt == "ocsf"
    assert len({feed.cursor.path for feed in feeds if isinstance(feed, LocalFeed)}) == 3
    assert len({single.dead_letter, siem.dead_letter, other.dead_letter}) == 3
