"""The local audit log: append-only JSON Lines segments under one directory.

Each segment is named by the sequence number of its first event (20 digits, so names sort
in log order) and rolled when it would grow past `segment_max_bytes`. One process writes a
directory at a time (an exclusive `flock` on `.lock`).

Crash safety: a batch is written with one `write()` on an O_APPEND descriptor; a kill -9
or power loss can still leave a torn last line (or, on some filesystems, a zero-filled
tail). On open the writer checks the tail of the last segment, cuts every line that is not
a complete JSON object and reports what it cut, so a torn event is never merged into the
next one. A failed write is rolled back with `ftruncate` before it is retried.

Readers never see a partial line: a reader stops at the last newline and resumes there.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import orjson

from kaudit.errors import LogError, LogLockedError, LogWriteError
from kaudit.files import open_private_fd

log = logging.getLogger("kaudit.log")

SEGMENT_SUFFIX = ".jsonl"
_SEGMENT_RE = re.compile(r"^(\d{20})\.jsonl$")
_READ_CHUNK = 1 << 20
_FSYNC_MODES = ("never", "batch", "always")


def segment_name(base_sequence: int) -> str:
    return f"{base_sequence:020d}{SEGMENT_SUFFIX}"


def list_segments(log_dir: Path) -> list[int]:
    """Base sequence numbers of the segments in `log_dir`, in log order."""
    try:
        names = os.listdir(log_dir)
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for n in names if (m := _SEGMENT_RE.match(n)))


class Position(NamedTuple):
    """Where a reader is: the segment (by base sequence) and a byte offset in it."""

    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What opening the log had to repair: lines cut from a torn tail and their bytes."""

    torn_lines: int
    bytes_cut: int
    segment: int | None


def _sequence_of(line: bytes) -> int | None:
    """The sequence number of a complete event line, or None if the line is not one."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    integrity = obj.get("integrity")
    if isinstance(integrity, dict) and isinstance(integrity.get("sequence_number"), int):
        seq: int = integrity["sequence_number"]
        return seq
    return None


def _scan_tail(path: Path) -> tuple[int, int | None, int, bytes | None]:
    """(end of the last complete event line, its sequence number, lines cut after it,
    that line)."""
    size = path.stat().st_size
    window = min(size, _READ_CHUNK)
    with open(path, "rb") as f:
        while True:
            base = size - window
            f.seek(base)
            data = f.read(window)
            cut = 0
            end = len(data)
            # Bytes after the last newline are a torn line (or a zero-filled tail).
            if end and not data.endswith(b"\n"):
                cut += 1
                end = data.rfind(b"\n") + 1
            while end > 0:
                start = data.rfind(b"\n", 0, end - 1) + 1
                if start == 0 and base > 0:
                    break  # this line may begin before the window: widen it
                seq = _sequence_of(data[start : end - 1])
                if seq is not None:
                    return base + end, seq, cut, data[start : end - 1]
                cut += 1
                end = start
            if base == 0 and end == 0:
                return 0, None, cut, None
            window = min(size, window * 4)


class SegmentLog:
    """The single writer of a local log directory."""

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        *,
        segment_max_bytes: int = 64 << 20,
        fsync: str = "batch",
    ) -> None:
        if fsync not in _FSYNC_MODES:
            raise ValueError(f"fsync must be one of {', '.join(_FSYNC_MODES)}, got {fsync!r}")
        if segment_max_bytes <= 0:
            raise ValueError(f"segment_max_bytes must be > 0, got {segment_max_bytes}")
        self.dir = Path(log_dir)
        self.segment_max_bytes = segment_max_bytes
        self.fsync = fsync
        self._lock_fd = -1
        self._fd = -1
        self._created: list[int] = []  # segments the current append rolled into
        self.last_line: bytes | None = None
        """The last event line in the log (the chain continues from its signature)."""
        self._segment = 0
        self._size = 0
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LogError(f"cannot create audit log directory {self.dir}: {exc.strerror}") from exc
        self._lock()
        try:
            self.recovery, self.next_sequence = self._recover()
            self._open_segment(self._segment)
        except BaseException:
            self._unlock()
            raise

    # -- opening ---------------------------------------------------------------------------

    def _lock(self) -> None:
        lock_path = self.dir / ".lock"
        try:
            fd = open_private_fd(lock_path, os.O_RDWR)
        except OSError as exc:
            raise LogError(f"cannot open {lock_path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LogLockedError(
                f"another kaudit process (pid {holder}) is writing {self.dir}; "
                "one writer per log directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _recover(self) -> tuple[RecoveryReport, int]:
        """Cut a torn tail off the last segment; find the next sequence number."""
        segments = list_segments(self.dir)
        if not segments:
            self._segment = 0
            return RecoveryReport(0, 0, None), 0
        last = segments[-1]
        path = self.dir / segment_name(last)
        good_end, last_seq, lines_cut, self.last_line = _scan_tail(path)
        size = path.stat().st_size
        if good_end < size:
            with open(path, "r+b") as f:
                f.truncate(good_end)
                os.fsync(f.fileno())
        self._segment = last
        # A segment is created at the roll with the next sequence as its name, so an
        # empty last segment means the next event is its base.
        next_sequence = last if last_seq is None else last_seq + 1
        if self.last_line is None and len(segments) > 1:
            # The chain continues from the last event of the segment before.
            self.last_line = _scan_tail(self.dir / segment_name(segments[-2]))[3]
        report = RecoveryReport(lines_cut, size - good_end, last if good_end < size else None)
        return report, next_sequence

    def _open_segment(self, base: int) -> None:
        path = self.dir / segment_name(base)
        try:
            fd = open_private_fd(path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            raise LogWriteError(f"cannot open audit log segment {path}: {exc.strerror}") from exc
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._segment = base
        self._size = os.fstat(fd).st_size
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # -- writing ---------------------------------------------------------------------------

    @property
    def segment(self) -> int:
        return self._segment

    @property
    def position(self) -> Position:
        """Where the next line will go: the current segment and its size."""
        return Position(self._segment, self._size)

    keyed = False  # one ordered stream: no partitioning keys needed

    def append(self, lines: Sequence[bytes], keys: Sequence[bytes] | None = None) -> None:
        """Append complete lines (each ending in a newline) holding consecutive sequences.

        `lines[i]` must carry sequence number `next_sequence + i`. On error nothing of the
        batch stays in the log and `next_sequence` is unchanged, so the caller can retry.
        """
        if self._fd < 0:
            raise LogWriteError("audit log is closed")
        entry_segment, entry_size, entry_sequence = self._segment, self._size, self.next_sequence
        self._created = []
        try:
            self._append(lines)
        except LogWriteError:
            self._undo(entry_segment, entry_size, entry_sequence)
            raise
        if lines:
            self.last_line = lines[-1].rstrip(b"\n")

    def _append(self, lines: Sequence[bytes]) -> None:
        start = 0
        seq = self.next_sequence
        while start < len(lines):
            # Fill the current segment; roll when the next line would not fit.
            room = self.segment_max_bytes - self._size
            end = start
            size = 0
            while end < len(lines) and (
                size + len(lines[end]) <= room or (end == start and self._size == 0)
            ):
                size += len(lines[end])
                end += 1
            if end == start:
                self._roll(seq)
                continue
            self._write(lines[start:end])
            seq += end - start
            self.next_sequence = seq
            start = end

    def _undo(self, segment: int, size: int, sequence: int) -> None:
        """Take back a batch that failed part way (e.g. after a roll): cut the segment it
        started in back to its size, remove the segments it created, continue there."""
        try:
            for base in self._created:
                (self.dir / segment_name(base)).unlink(missing_ok=True)
            if self._segment != segment:
                self._open_segment(segment)
            self._rollback(size)
        except (OSError, LogWriteError):
            # Could not undo now; reopening the log repairs the tail.
            log.exception("could not take back a failed batch in %s", self.dir)
        self.next_sequence = sequence

    def _write(self, lines: Sequence[bytes]) -> None:
        before = self._size
        try:
            if self.fsync == "always":
                for line in lines:
                    self._write_all(line)
                    os.fdatasync(self._fd)
            else:
                self._write_all(b"".join(lines))
                if self.fsync == "batch":
                    os.fdatasync(self._fd)
        except OSError as exc:
            self._rollback(before)
            reason = "disk full" if exc.errno == errno.ENOSPC else exc.strerror
            path = self.dir / segment_name(self._segment)
            raise LogWriteError(f"cannot write audit log segment {path}: {reason}") from exc

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            self._size += n
            view = view[n:]

    def _rollback(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
            self._size = size
        except OSError:
            # The segment could not be cut back; the torn tail is repaired on next open.
            self._size = os.fstat(self._fd).st_size

    def _roll(self, base: int) -> None:
        existed = (self.dir / segment_name(base)).exists()
        self._open_segment(base)
        if not existed:
            self._created.append(base)

    def close(self) -> None:
        if self._fd >= 0:
            try:
                if self.fsync != "never":
                    os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = -1
        self._unlock()

    def __enter__(self) -> SegmentLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_lines(path: Path, offset: int, max_lines: int) -> tuple[list[bytes], int]:
    """Up to `max_lines` complete lines of the file at `path` from `offset`, read a chunk
    at a time, and the number of bytes they take; when there is no complete line, the
    number of bytes there are after `offset` instead (0: nothing at all)."""
    lines: list[bytes] = []
    taken = 0
    with open(path, "rb") as f:
        f.seek(offset)
        while len(lines) < max_lines:
            data = f.read(_READ_CHUNK)
            end = data.rfind(b"\n") + 1
            if end == 0:
                if len(data) == _READ_CHUNK:
                    raise LogError(f"line longer than {_READ_CHUNK} bytes in {path}")
                if not lines:
                    return [], len(data)
                break
            chunk = data[:end].splitlines(keepends=True)
            if len(lines) + len(chunk) > max_lines:
                chunk = chunk[: max_lines - len(lines)]
                end = sum(len(x) for x in chunk)
            lines += chunk
            taken += end
            if len(data) < _READ_CHUNK:
                break  # the end of what is written so far
            f.seek(offset + taken)
    return lines, taken


class LogReader:
    """Reads complete lines of a local log from a position, across segment rolls."""

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(log_dir)

    def start(self) -> Position:
        segments = list_segments(self.dir)
        return Position(segments[0] if segments else 0, 0)

    def read(
        self, position: Position | None = None, max_lines: int = 10_000
    ) -> tuple[list[bytes], Position]:
        """Up to `max_lines` complete lines of one segment from `position`, and the position
        after them; at the end of a segment that has a successor, reading moves on to it.

        A position in a segment that no longer exists (removed by retention) moves to the
        first segment after it.
        """
        pos = position or self.start()
        segments = list_segments(self.dir)
        while True:
            if pos.segment not in segments:
                later = [s for s in segments if s > pos.segment]
                if not later:
                    return [], pos
                pos = Position(later[0], 0)
            path = self.dir / segment_name(pos.segment)
            try:
                lines, end = _read_lines(path, pos.offset, max_lines)
            except FileNotFoundError:
                segments = list_segments(self.dir)
                continue
            if not lines:
                later = [s for s in segments if s > pos.segment]
                if later and end == 0:
                    pos = Position(later[0], 0)
                    continue
                return [], pos
            return lines, Position(pos.segment, pos.offset + end)

    def iter_lines(self, position: Position | None = None) -> Iterator[tuple[Position, bytes]]:
        """Every complete line from `position` to the current end, with the position after it."""
        pos = position or self.start()
        while True:
            lines, nxt = self.read(pos)
            if not lines:
                return
            offset = nxt.offset - sum(len(x) for x in lines)
            for line in lines:
                offset += len(line)
                yield Position(nxt.segment, offset), line
            pos = nxt
