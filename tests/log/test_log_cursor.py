"""Durable reader cursors: saved atomically, loaded back exactly, damage reported."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kaudit.errors import LogError
from kaudit.events.codec import encode_line
from kaudit.events.model import Action, Actor, AuditEvent, Integrity, Resource
from kaudit.log.cursor import Cursor
from kaudit.log.segments import LogReader, Position, SegmentLog


def _line(seq: int) -> bytes:
    return encode_line(
        AuditEvent(
            timestamp="2026-11-22T10:15:30.123Z",
            event_type="auth.login",
            event_id=f"evt_{seq}",
            actor=Actor(type="user", id="User:bob"),
            resource=Resource(type="cluster", id="kafka-cluster"),
            action=Action(operation="login"),
            integrity=Integrity(sequence_number=seq),
        )
    )


def test_a_missing_cursor_loads_as_none(tmp_path: Path) -> None:
    cursor = Cursor(tmp_path / "c.json")
    assert cursor.load() is None
    assert cursor.sequence() is None


def test_a_saved_position_loads_back_exactly(tmp_path: Path) -> None:
    cursor = Cursor(tmp_path / "deep" / "dir" / "c.json")  # parents are created
    cursor.save(Position(42, 1234), sequence=99)
    assert cursor.load() == Position(42, 1234)
    assert cursor.sequence() == 99
    # A new Cursor object on the same file (a restarted process) sees the same.
    assert Cursor(cursor.path).load() == Position(42, 1234)
    cursor.save(Position(43, 0))
    assert cursor.load() == Position(43, 0)
    assert cursor.sequence() is None
    assert sorted(p.name for p in cursor.path.parent.iterdir()) == ["c.json"]  # no .tmp left


def test_named_cursors_live_under_data_dir_with_a_safe_file_name(tmp_path: Path) -> None:
    cursor = Cursor.named(tmp_path, "file:/var/log/kafka backup/audit.log")
    assert cursor.path.parent == tmp_path / "cursors"
    assert cursor.path.name.startswith("file__var_log_kafka_backup_audit.log-")
    assert cursor.path.name.endswith(".json")
    cursor.save(Position(0, 10))
    assert Cursor.named(tmp_path, "file:/var/log/kafka backup/audit.log").load() == Position(0, 10)
    # Different destinations get different cursors.
    assert Cursor.named(tmp_path, "siem").path != cursor.path


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b'{"segment": 1}', b'{"segment": "x", "offset": 1}', b"[1, 2]"],
)
def test_a_damaged_cursor_is_an_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(content)
    with pytest.raises(LogError, match=f"cursor file {path} is damaged"):
        Cursor(path).load()


def test_a_cursor_resumes_a_reader_where_it_stopped(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    max_bytes = len(_line(10)) * 3
    log = SegmentLog(log_dir, segment_max_bytes=max_bytes, fsync="never")
    log.append([_line(i) for i in range(5)])
    cursor = Cursor.named(tmp_path, "exporter")
    reader = LogReader(log_dir)
    consumed: list[bytes] = []
    lines, pos = reader.read(cursor.load(), max_lines=4)
    consumed += lines
    cursor.save(pos, sequence=len(consumed) - 1)

    log.append([_line(i) for i in range(5, 12)])
    log.close()
    # A restarted reader: new objects, only the cursor file carries over.
    reader = LogReader(log_dir)
    cursor = Cursor.named(tmp_path, "exporter")
    while True:
        lines, pos = reader.read(cursor.load(), max_lines=2)
        if not lines:
            break
        consumed += lines
        cursor.save(pos)
    assert consumed == [_line(i) for i in range(12)]


_SAVER = textwrap.dedent(
    """
    import sys
    from kaudit.log.cursor import Cursor
    from kaudit.log.segments import Position
    cursor = Cursor(sys.argv[1])
    i = 0
    while True:
        cursor.save(Position(i, i * 10), sequence=i)
        if i == 5:
            print("saving", flush=True)
        i += 1
    """
)


def test_a_cursor_killed_mid_save_holds_a_whole_position(tmp_path: Path) -> None:
    """kill -9 of a process saving a cursor in a loop: the file is the old or the new
    position, never a torn mix (write to a temporary file, fsync, rename)."""
    path = tmp_path / "cursors" / "c.json"
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "saving"
        time.sleep(0.1)
        child.send_signal(signal.SIGKILL)
        child.wait()
        position = Cursor(path).load()
        assert position is not None
        assert position.offset == position.segment * 10
        assert Cursor(path).sequence() == position.segment
        assert json.loads(path.read_bytes())["segment"] == position.segment


def test_different_names_never_share_a_cursor(tmp_path: Path) -> None:
    a = Cursor.named(tmp_path, "file:/var/log/audit log.jsonl")
    b = Cursor.named(tmp_path, "file:/var/log/audit_log.jsonl")
    assert a.path != b.path
