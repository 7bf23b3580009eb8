"""Test helpers for the recorder tests: a stand-in log sink that can be switched to block
or to fail, in front of a real SegmentLog (imported by tests/recorder/test_recorder_*.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from kaudit.errors import LogWriteError
from kaudit.log.segments import LogReader, SegmentLog


class SwitchableSink:
    """A real SegmentLog behind switches: `open` (clear: append blocks), `failing` (set:
    append raises LogWriteError, like a full disk) and `delay` (seconds each append takes).

    This is a stand-in for a failing or slow log, used where a test needs exact control of
    timing; the tests that need a log that really fails use RLIMIT_FSIZE or a directory in
    the way of a segment file instead.
    """

    keyed = False

    def __init__(self, log_dir: Path, segment_max_bytes: int = 64 << 20) -> None:
        self.log = SegmentLog(log_dir, segment_max_bytes=segment_max_bytes, fsync="never")
        self.open = threading.Event()
        self.open.set()
        self.failing = threading.Event()
        self.delay = 0.0
        self.calls = 0

    @property
    def next_sequence(self) -> int:
        return self.log.next_sequence

    @next_sequence.setter
    def next_sequence(self, value: int) -> None:
        self.log.next_sequence = value

    def append(self, lines: Sequence[bytes], keys: Sequence[bytes] | None = None) -> None:
        self.calls += 1
        self.open.wait()
        if self.delay:
            time.sleep(self.delay)
        if self.failing.is_set():
            raise LogWriteError("stand-in: no space left on device")
        self.log.append(lines)

    def close(self) -> None:
        self.log.close()


def events_in(log_dir: Path) -> list[dict[str, Any]]:
    """Every event in the log directory, decoded as plain JSON, in log order."""
    return [orjson.loads(line) for _, line in LogReader(log_dir).iter_lines()]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def assert_contiguous(events: list[dict[str, Any]]) -> None:
    seqs = [e["integrity"]["sequence_number"] for e in events]
    assert seqs == list(range(len(seqs))), "sequence numbers have gaps or duplicates"


class SendingSink(SwitchableSink):
    """A SwitchableSink that sends a batch and confirms it later, as the Kafka log does
    (`send`, then `confirm` once acknowledged): the writer encodes its next batch in
    between. `before_confirm`, when set, runs once at the start of the next confirm."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__(log_dir)
        self.sent: list[bytes] | None = None
        self.sends = 0
        self.before_confirm: Callable[[], None] | None = None

    def send(self, lines: Sequence[bytes], keys: Sequence[bytes] | None = None) -> None:
        assert self.sent is None, "a batch was sent before the one before was confirmed"
        self.sends += 1
        self.sent = list(lines)

    def confirm(self) -> None:
        hook, self.before_confirm = self.before_confirm, None
        if hook is not None:
            hook()
        lines = self.sent
        assert lines is not None
        self.sent = None
        self.append(lines)
