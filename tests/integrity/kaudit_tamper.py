"""What an attacker with write access to a local log directory does to it, by hand.

Each helper edits the real segment files in place (not through kaudit), so the tests
see exactly the bytes a tampered log would hold.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from kaudit.integrity.store import read_checkpoints
from kaudit.log.segments import list_segments, segment_name


def segments(log_dir: Path) -> list[Path]:
    return [log_dir / segment_name(base) for base in list_segments(log_dir)]


def _read(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _write(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def sequence_of(line: bytes) -> int:
    seq: int = orjson.loads(line)["integrity"]["sequence_number"]
    return seq


def locate(log_dir: Path, seq: int) -> tuple[Path, int]:
    """The segment holding event `seq` and the line's index in it."""
    for path in segments(log_dir):
        for i, line in enumerate(_read(path)):
            if sequence_of(line) == seq:
                return path, i
    raise LookupError(f"event {seq} is not in {log_dir}")


def event_count(log_dir: Path) -> int:
    return sum(len(_read(p)) for p in segments(log_dir))


def change_byte(log_dir: Path, seq: int) -> None:
    """Change one byte of event `seq`: the actor's name (User:alice -> User:blice)."""
    path, i = locate(log_dir, seq)
    lines = _read(path)
    assert b"User:alice" in lines[i]
    lines[i] = lines[i].replace(b"User:alice", b"User:blice", 1)
    _write(path, lines)


def delete_event(log_dir: Path, seq: int) -> None:
    path, i = locate(log_dir, seq)
    lines = _read(path)
    del lines[i]
    _write(path, lines)


def insert_forged_copy(log_dir: Path, seq: int, *, before: bool = False) -> None:
    """A copy of event `seq` with a new event_id, next to the real one."""
    path, i = locate(log_dir, seq)
    lines = _read(path)
    forged = re.sub(
        rb'"event_id":"evt_[0-9A-Z]+"', b'"event_id":"evt_FORGED0000000000000000000000"', lines[i]
    )
    assert forged != lines[i]
    lines.insert(i if before else i + 1, forged)
    _write(path, lines)


def offset_of(log_dir: Path, seq: int) -> int:
    """The byte offset of event `seq` in its segment."""
    path, i = locate(log_dir, seq)
    return sum(len(line) for line in _read(path)[:i])


def renumber(log_dir: Path, seq: int, new: int) -> None:
    """Change the sequence number written in event `seq` to `new`."""
    path, i = locate(log_dir, seq)
    lines = _read(path)
    old = b'"sequence_number":%d,' % seq
    assert old in lines[i]
    lines[i] = lines[i].replace(old, b'"sequence_number":%d,' % new)
    _write(path, lines)


def insert_line(log_dir: Path, seq: int, line: bytes) -> None:
    """Put `line` (without newline) just before event `seq`."""
    path, i = locate(log_dir, seq)
    lines = _read(path)
    lines.insert(i, line + b"\n")
    _write(path, lines)


def swap(log_dir: Path, seq: int) -> None:
    """Swap event `seq` and the event after it (same segment)."""
    path, i = locate(log_dir, seq)
    lines = _read(path)
    assert i + 1 < len(lines) and sequence_of(lines[i + 1]) == seq + 1
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    _write(path, lines)


def cut_tail(log_dir: Path, count: int) -> int:
    """Remove the last `count` events of the last segment; the first removed sequence."""
    path = segments(log_dir)[-1]
    lines = _read(path)
    assert len(lines) > count
    first_cut = sequence_of(lines[-count])
    _write(path, lines[:-count])
    return first_cut


def delete_segment(log_dir: Path, index: int) -> tuple[str, int, int]:
    """Delete segment number `index` (in log order) and its checkpoint file; its name
    and the first and last sequence numbers it held."""
    path = segments(log_dir)[index]
    lines = _read(path)
    first, last = sequence_of(lines[0]), sequence_of(lines[-1])
    path.unlink()
    path.with_name(path.name.removesuffix(".jsonl") + ".checkpoints.jsonl").unlink(missing_ok=True)
    return path.name, first, last


def checkpoint_sizes(log_dir: Path) -> list[int]:
    """The tree sizes of every stored checkpoint record (not their signatures)."""
    return sorted(
        {item.size for _, _, item in read_checkpoints(log_dir) if not isinstance(item, str)}
    )


def drop_checkpoints_from(log_dir: Path, size: int) -> None:
    """Remove every checkpoint record of tree size `size` or more (the closing one too)."""
    for path in sorted(log_dir.glob("*.checkpoints.jsonl")):
        kept = [ln for ln in _read(path) if orjson.loads(ln)["size"] < size]
        _write(path, kept)


def alter_checkpoint_note(log_dir: Path) -> int:
    """Move the time in the newest checkpoint note back a year (its signature stays);
    the tree size of that checkpoint."""
    path = sorted(log_dir.glob("*.checkpoints.jsonl"))[-1]
    lines = _read(path)
    record = orjson.loads(lines[-1])
    note = record["note"]
    year = re.search(r"\ntime (\d{4})-", note)
    assert year is not None
    record["note"] = note.replace(f"time {year[1]}-", f"time {int(year[1]) - 1}-", 1)
    lines[-1] = orjson.dumps(record) + b"\n"
    _write(path, lines)
    return int(record["size"])
