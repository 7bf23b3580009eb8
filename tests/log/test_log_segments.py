"""The local segment log: append/read, rolling, readers, the writer lock, torn-tail recovery.

Everything here runs against real files in a temporary directory. Where a write has to
fail, the failure is real too: a directory sitting where the next segment file must be
created (open() fails with EISDIR, which stops root as well as anyone), or
RLIMIT_FSIZE in a child process (writes past the limit fail with EFBIG once SIGXFSZ is
ignored). chmod cannot be used: the tests run as root, which ignores permissions.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kaudit.errors import LogError, LogLockedError, LogWriteError
from kaudit.events.codec import decode, encode_line
from kaudit.events.model import Action, Actor, AuditEvent, Integrity, Resource
from kaudit.log.segments import (
    LogReader,
    Position,
    RecoveryReport,
    SegmentLog,
    list_segments,
    segment_name,
)


def event_line(seq: int, pad: int = 0) -> bytes:
    """A real canonical event line carrying sequence number `seq`."""
    return encode_line(
        AuditEvent(
            timestamp="2026-11-22T10:15:30.123Z",
            event_type="topic.created",
            event_id=f"evt_{seq:08d}",
            actor=Actor(type="user", id="User:alice"),
            resource=Resource(type="topic", id="orders"),
            action=Action(operation="create"),
            details={"pad": "x" * pad} if pad else {},
            integrity=Integrity(sequence_number=seq),
        )
    )


def all_lines(log_dir: Path) -> list[bytes]:
    return [line for _, line in LogReader(log_dir).iter_lines()]


def sequences(log_dir: Path) -> list[int]:
    out = []
    for line in all_lines(log_dir):
        integrity = decode(line).integrity
        assert integrity is not None
        out.append(integrity.sequence_number)
    return out


def segment_files(log_dir: Path) -> list[Path]:
    return [log_dir / segment_name(base) for base in list_segments(log_dir)]


# -- append and read ------------------------------------------------------------------------


def test_appended_lines_read_back_byte_for_byte_in_order(tmp_path: Path) -> None:
    lines = [event_line(i) for i in range(10)]
    with SegmentLog(tmp_path, fsync="never") as log:
        assert log.next_sequence == 0
        assert log.recovery == RecoveryReport(0, 0, None)
        log.append(lines[:3])
        log.append(lines[3:])
        assert log.next_sequence == 10
    assert all_lines(tmp_path) == lines
    # Reopening a cleanly closed log repairs nothing and continues after the last event.
    with SegmentLog(tmp_path) as log:
        assert log.recovery == RecoveryReport(0, 0, None)
        assert log.next_sequence == 10


@pytest.mark.parametrize("fsync", ["never", "batch", "always"])
def test_every_fsync_mode_writes_the_same_bytes(tmp_path: Path, fsync: str) -> None:
    lines = [event_line(i) for i in range(5)]
    with SegmentLog(tmp_path, fsync=fsync) as log:
        log.append(lines)
    assert b"".join(p.read_bytes() for p in segment_files(tmp_path)) == b"".join(lines)


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync must be one of never, batch, always"):
        SegmentLog(tmp_path, fsync="sometimes")
    with pytest.raises(ValueError, match="segment_max_bytes"):
        SegmentLog(tmp_path, segment_max_bytes=0)
    # Refused settings must not leave the directory locked.
    with SegmentLog(tmp_path) as log:
        log.append([event_line(0)])


def test_append_after_close_is_a_log_write_error(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path)
    log.close()
    with pytest.raises(LogWriteError, match="closed"):
        log.append([event_line(0)])


# -- rolling ----------------------------------------------------------------------------------


def test_segments_roll_by_size_and_are_named_by_their_first_sequence(tmp_path: Path) -> None:
    line_size = len(event_line(50))
    max_bytes = line_size * 3 + 10
    batches = [1, 2, 7, 1, 1, 5, 12, 3]  # batches that fit, straddle and span several rolls
    seq = 0
    with SegmentLog(tmp_path, segment_max_bytes=max_bytes, fsync="never") as log:
        for n in batches:
            log.append([event_line(seq + i) for i in range(n)])
            seq += n
            assert log.next_sequence == seq
    total = sum(batches)

    files = segment_files(tmp_path)
    assert len(files) >= total // 4  # many segments, not one
    expected_seq = 0
    for index, path in enumerate(files):
        data = path.read_bytes()
        lines = data.splitlines(keepends=True)
        assert lines, f"{path.name} is empty"
        first = decode(lines[0]).integrity
        assert first is not None
        assert path.name == segment_name(first.sequence_number)
        assert len(data) <= max_bytes
        for line in lines:
            integrity = decode(line).integrity
            assert integrity is not None
            assert integrity.sequence_number == expected_seq
            expected_seq += 1
        if index + 1 < len(files):
            # A segment is rolled only when the next line would not fit.
            next_first = files[index + 1].read_bytes().splitlines(keepends=True)[0]
            assert len(data) + len(next_first) > max_bytes
    assert expected_seq == total
    assert sequences(tmp_path) == list(range(total))


def test_a_line_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    small = 400
    with SegmentLog(tmp_path, segment_max_bytes=small, fsync="never") as log:
        log.append([event_line(0), event_line(1, pad=2000), event_line(2)])
    files = segment_files(tmp_path)
    assert [p.name for p in files] == [segment_name(0), segment_name(1), segment_name(2)]
    assert len(files[1].read_bytes().splitlines()) == 1
    assert sequences(tmp_path) == [0, 1, 2]


def test_reopening_continues_in_the_last_segment_and_keeps_rolling(tmp_path: Path) -> None:
    max_bytes = len(event_line(10)) * 4
    with SegmentLog(tmp_path, segment_max_bytes=max_bytes, fsync="never") as log:
        log.append([event_line(i) for i in range(6)])
        last_segment = log.segment
    with SegmentLog(tmp_path, segment_max_bytes=max_bytes, fsync="never") as log:
        assert log.next_sequence == 6
        assert log.segment == last_segment
        log.append([event_line(i) for i in range(6, 15)])
    assert sequences(tmp_path) == list(range(15))


# -- readers ---------------------------------------------------------------------------------


def test_a_reader_resumes_from_a_saved_position_across_rolls(tmp_path: Path) -> None:
    max_bytes = len(event_line(10)) * 3
    log = SegmentLog(tmp_path, segment_max_bytes=max_bytes, fsync="never")
    log.append([event_line(i) for i in range(8)])
    reader = LogReader(tmp_path)

    seen: list[bytes] = []
    pos: Position | None = None
    while len(seen) < 5:
        lines, pos = reader.read(pos, max_lines=5 - len(seen))
        assert lines
        seen += lines
    assert pos is not None
    saved = Position(*pos)  # what a cursor would persist

    log.append([event_line(i) for i in range(8, 20)])
    log.close()

    # A fresh reader starting at the saved position sees exactly the rest, once.
    rest = [line for _, line in LogReader(tmp_path).iter_lines(saved)]
    assert seen + rest == [event_line(i) for i in range(20)]
    # iter_lines hands out the position after each line: resuming there skips that line.
    positions = list(LogReader(tmp_path).iter_lines(saved))
    p7, line7 = positions[2]
    assert line7 == event_line(7)
    assert [line for _, line in LogReader(tmp_path).iter_lines(p7)] == [
        event_line(i) for i in range(8, 20)
    ]


def test_read_respects_max_lines_and_stays_within_one_segment(tmp_path: Path) -> None:
    max_bytes = len(event_line(10)) * 4
    with SegmentLog(tmp_path, segment_max_bytes=max_bytes, fsync="never") as log:
        log.append([event_line(i) for i in range(10)])
    reader = LogReader(tmp_path)
    lines, pos = reader.read(None, max_lines=2)
    assert lines == [event_line(0), event_line(1)]
    assert pos == Position(0, len(event_line(0)) + len(event_line(1)))
    lines, pos = reader.read(pos, max_lines=100)
    assert lines == [event_line(2), event_line(3)]  # the rest of segment 0 only
    lines, pos = reader.read(pos, max_lines=100)
    assert lines[0] == event_line(4)
    assert pos.segment == 4


def test_one_read_gathers_up_to_max_lines_across_several_chunks(tmp_path: Path) -> None:
    # Lines of ~3 KiB, 5 MiB in all: one read of the segment spans several 1 MiB chunks,
    # most of which end in the middle of a line.
    lines_in = [event_line(i, pad=3000) for i in range(1700)]
    torn = event_line(1700, pad=3000)
    with SegmentLog(tmp_path, fsync="never") as log:
        log.append(lines_in)
    with open(segment_files(tmp_path)[-1], "ab") as f:
        f.write(torn[:100])
    reader = LogReader(tmp_path)
    lines, pos = reader.read(None, max_lines=1000)
    assert lines == lines_in[:1000]
    assert pos.offset == sum(len(x) for x in lines_in[:1000])
    lines, pos = reader.read(pos, max_lines=5000)
    assert lines == lines_in[1000:]  # all the complete lines, not the torn one
    assert pos.offset == sum(len(x) for x in lines_in)
    assert reader.read(pos, max_lines=5000) == ([], pos)


def test_a_reader_never_returns_a_partial_line(tmp_path: Path) -> None:
    with SegmentLog(tmp_path, fsync="never") as log:
        log.append([event_line(0), event_line(1)])
    segment = segment_files(tmp_path)[-1]
    torn = event_line(2)
    half = len(torn) // 2
    with open(segment, "ab") as f:
        f.write(torn[:half])

    reader = LogReader(tmp_path)
    lines, pos = reader.read(None)
    assert lines == [event_line(0), event_line(1)]
    assert pos.offset == len(event_line(0)) + len(event_line(1))
    # At the partial line the reader stays put, however often it is asked.
    assert reader.read(pos) == ([], pos)
    assert list(reader.iter_lines(pos)) == []

    with open(segment, "ab") as f:
        f.write(torn[half:])
    lines, pos2 = reader.read(pos)
    assert lines == [torn]
    assert pos2.offset == pos.offset + len(torn)


def test_a_reader_moves_on_when_retention_removed_its_segment(tmp_path: Path) -> None:
    max_bytes = len(event_line(10)) * 3
    with SegmentLog(tmp_path, segment_max_bytes=max_bytes, fsync="never") as log:
        log.append([event_line(i) for i in range(9)])
    files = segment_files(tmp_path)
    assert [p.name for p in files] == [segment_name(0), segment_name(3), segment_name(6)]

    reader = LogReader(tmp_path)
    lines, pos = reader.read(None, max_lines=1)
    assert lines == [event_line(0)]
    files[0].unlink()  # retention removed the segment the reader is in
    lines, pos = reader.read(pos)
    assert lines == [event_line(3), event_line(4), event_line(5)]
    assert pos.segment == 3

    # A cursor pointing at a long-gone segment starts at the first one after it.
    files[1].unlink()
    assert [line for _, line in reader.iter_lines(Position(1, 12345))] == [
        event_line(6),
        event_line(7),
        event_line(8),
    ]
    # And reading from the start of a log whose first segments are gone begins at the
    # oldest remaining one.
    assert reader.start() == Position(6, 0)


def test_a_reader_of_a_missing_or_empty_directory_sees_nothing(tmp_path: Path) -> None:
    assert LogReader(tmp_path / "nope").read() == ([], Position(0, 0))
    SegmentLog(tmp_path / "empty").close()
    assert list(LogReader(tmp_path / "empty").iter_lines()) == []


def test_an_empty_segment_left_by_a_roll_is_skipped_by_readers(tmp_path: Path) -> None:
    with SegmentLog(tmp_path, fsync="never") as log:
        log.append([event_line(0), event_line(1)])
    # A crash right after a roll leaves an empty segment named after the next sequence.
    (tmp_path / segment_name(2)).touch()
    with SegmentLog(tmp_path, fsync="never") as log:
        assert log.next_sequence == 2
        assert log.recovery.torn_lines == 0
        log.append([event_line(2)])
    assert sequences(tmp_path) == [0, 1, 2]


# -- the writer lock --------------------------------------------------------------------------


def test_a_second_writer_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = SegmentLog(tmp_path)
    with pytest.raises(LogLockedError, match=f"pid {os.getpid()}"):
        SegmentLog(tmp_path)
    first.append([event_line(0)])  # the refused writer did not disturb the holder
    first.close()
    with SegmentLog(tmp_path) as again:  # released on close
        assert again.next_sequence == 1


_HOLD_LOCK = textwrap.dedent(
    """
    import sys
    from kaudit.log.segments import SegmentLog
    log = SegmentLog(sys.argv[1])
    print("locked", flush=True)
    sys.stdin.readline()
    log.close()
    """
)

_TRY_LOCK = textwrap.dedent(
    """
    import sys
    from kaudit.errors import LogLockedError
    from kaudit.log.segments import SegmentLog
    try:
        SegmentLog(sys.argv[1]).close()
    except LogLockedError as exc:
        print("LOCKED", exc)
        sys.exit(3)
    print("OPENED")
    """
)


def test_the_lock_holds_across_processes(tmp_path: Path) -> None:
    # Another process holds the directory: this one is refused, naming the holder.
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(LogLockedError, match=f"pid {child.pid}"):
            SegmentLog(tmp_path)
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    SegmentLog(tmp_path).close()

    # This process holds it: another process is refused.
    with SegmentLog(tmp_path):
        result = subprocess.run(
            [sys.executable, "-c", _TRY_LOCK, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 3, result.stdout + result.stderr
        assert f"pid {os.getpid()}" in result.stdout
    result = subprocess.run(
        [sys.executable, "-c", _TRY_LOCK, str(tmp_path)], capture_output=True, text=True
    )
    assert result.stdout.strip() == "OPENED"


def test_a_lock_left_by_a_killed_process_does_not_block_the_next_writer(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "locked"
    child.kill()
    child.wait()
    with SegmentLog(tmp_path) as log:  # flock dies with its holder
        log.append([event_line(0)])


# -- torn tail recovery ------------------------------------------------------------------------

_PARTIAL = event_line(3)[:57]

TORN_TAILS = {
    "garbage without newline": (b'{"timestamp":"2026-11-22T10:1', 1),
    "zero-filled tail": (b"\x00" * 4096, 1),
    "truncated json line with newline": (_PARTIAL + b"\n", 1),
    "invalid line then a partial one": (b"not json at all\n" + _PARTIAL, 2),
    "json that is not an event": (b'{"hello": "world"}\n', 1),
    "partial line then zeros": (_PARTIAL + b"\x00" * 100, 1),
}


@pytest.mark.parametrize("tail", TORN_TAILS.values(), ids=TORN_TAILS.keys())
def test_reopen_cuts_exactly_a_torn_tail(tmp_path: Path, tail: tuple[bytes, int]) -> None:
    garbage, torn_lines = tail
    good = [event_line(i) for i in range(3)]
    with SegmentLog(tmp_path, fsync="never") as log:
        log.append(good)
    segment = segment_files(tmp_path)[-1]
    with open(segment, "ab") as f:
        f.write(garbage)

    with SegmentLog(tmp_path, fsync="never") as log:
        assert log.recovery == RecoveryReport(torn_lines, len(garbage), 0)
        assert segment.read_bytes() == b"".join(good)  # exactly the garbage was cut
        assert log.next_sequence == 3
        log.append([event_line(3), event_line(4)])

    # The next event is on a line of its own, not merged with what was cut.
    lines = all_lines(tmp_path)
    assert lines == [*good, event_line(3), event_line(4)]
    assert sequences(tmp_path) == [0, 1, 2, 3, 4]
    # Repairs are reported once: a clean reopen has nothing to cut.
    with SegmentLog(tmp_path) as log:
        assert log.recovery == RecoveryReport(0, 0, None)


def test_a_zero_tail_longer_than_the_scan_window_is_cut(tmp_path: Path) -> None:
    with SegmentLog(tmp_path, fsync="never") as log:
        log.append([event_line(i) for i in range(4)])
    segment = segment_files(tmp_path)[-1]
    good_size = segment.stat().st_size
    with open(segment, "ab") as f:
        f.write(b"\x00" * (3 << 19))  # 1.5 MiB: more than one read window
    with SegmentLog(tmp_path, fsync="never") as log:
        assert log.recovery == RecoveryReport(1, 3 << 19, 0)
        assert log.next_sequence == 4
    assert segment.stat().st_size == good_size


def test_torn_tail_in_a_rolled_segment_continues_from_the_last_good_event(
    tmp_path: Path,
) -> None:
    max_bytes = len(event_line(10)) * 3
    with SegmentLog(tmp_path, segment_max_bytes=max_bytes, fsync="never") as log:
        log.append([event_line(i) for i in range(7)])
    last = segment_files(tmp_path)[-1]
    assert last.name == segment_name(6)
    with open(last, "ab") as f:
        f.write(b"\x00\x00\x00")
    with SegmentLog(tmp_path, segment_max_bytes=max_bytes, fsync="never") as log:
        assert log.recovery == RecoveryReport(1, 3, 6)
        assert log.next_sequence == 7
        log.append([event_line(7)])
    assert sequences(tmp_path) == list(range(8))


def test_a_last_segment_holding_only_garbage_restarts_at_its_base(tmp_path: Path) -> None:
    max_bytes = len(event_line(10)) * 3
    with SegmentLog(tmp_path, segment_max_bytes=max_bytes, fsync="never") as log:
        log.append([event_line(i) for i in range(3)])
    # The crash came right after a roll, in the middle of the new segment's first write.
    (tmp_path / segment_name(3)).write_bytes(event_line(3)[:40])
    with SegmentLog(tmp_path, segment_max_bytes=max_bytes, fsync="never") as log:
        assert log.recovery == RecoveryReport(1, 40, 3)
        assert log.next_sequence == 3
        log.append([event_line(3), event_line(4)])
    assert sequences(tmp_path) == [0, 1, 2, 3, 4]


# -- failed writes ---------------------------------------------------------------------------


def test_a_failed_roll_leaves_nothing_of_the_batch_and_next_sequence_unchanged(
    tmp_path: Path,
) -> None:
    """append() promises all-or-nothing: on error nothing of the batch stays in the log and
    next_sequence is unchanged, so the caller can retry the same lines.

    The failure is real: a directory sits where the next segment file must be created, so
    opening it fails with EISDIR (root included) when the batch reaches the roll.
    """
    line_size = len(event_line(10))
    with SegmentLog(tmp_path, segment_max_bytes=line_size * 4, fsync="never") as log:
        log.append([event_line(0), event_line(1)])
        blocker = tmp_path / segment_name(4)
        blocker.mkdir()
        before = segment_files(tmp_path)[0].read_bytes()
        batch = [event_line(i) for i in range(2, 7)]  # 2, 3 fit; 4 needs a new segment
        with pytest.raises(LogWriteError, match="Is a directory"):
            log.append(batch)
        assert log.next_sequence == 2, "a failed append moved next_sequence"
        assert (tmp_path / segment_name(0)).read_bytes() == before, (
            "a failed append left part of its batch in the log"
        )
        # The caller retries the same batch once the cause is gone.
        blocker.rmdir()
        log.append(batch)
    assert sequences(tmp_path) == list(range(7))


_FSIZE_CHILD = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    from kaudit.errors import LogWriteError
    from kaudit.log.segments import SegmentLog, segment_name
    sys.path.insert(0, sys.argv[2])
    from test_log_segments import event_line

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    log_dir = sys.argv[1]
    log = SegmentLog(log_dir, fsync="batch")
    log.append([event_line(i) for i in range(3)])
    size = os.path.getsize(os.path.join(log_dir, segment_name(0)))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # Room for about half of the next line: the write is cut short, then refused.
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + len(event_line(3)) // 2, hard))
    out = {}
    try:
        log.append([event_line(3), event_line(4)])
        out["error"] = None
    except LogWriteError as exc:
        out["error"] = str(exc)
    out["next_after_failure"] = log.next_sequence
    out["size_after_failure"] = os.path.getsize(os.path.join(log_dir, segment_name(0)))
    out["size_before"] = size
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    log.append([event_line(3), event_line(4)])
    log.close()
    print(json.dumps(out))
    """
)


def test_a_write_refused_by_the_filesystem_is_rolled_back(tmp_path: Path) -> None:
    """A real short-then-failed write: RLIMIT_FSIZE in a child process (SIGXFSZ ignored)
    makes the kernel write part of the batch and refuse the rest with EFBIG. The writer
    must cut the partial bytes back off, keep next_sequence, and accept the retry."""
    import json

    log_dir = tmp_path / "log"
    result = subprocess.run(
        [sys.executable, "-c", _FSIZE_CHILD, str(log_dir), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["error"] is not None and "File too large" in out["error"]
    assert out["next_after_failure"] == 3
    assert out["size_after_failure"] == out["size_before"]
    assert sequences(log_dir) == [0, 1, 2, 3, 4]


def test_a_directory_that_cannot_be_created_is_a_log_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(LogError, match="cannot create audit log directory"):
        SegmentLog(blocker / "log")
