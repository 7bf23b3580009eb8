"""Where signed checkpoints are kept: beside the local log, one file per segment.

`<log_dir>/<segment base>.checkpoints.jsonl` holds, one JSON object per line, each
checkpoint written while that segment was the current one:
`{"size", "segment", "offset", "frontier", "note"}` — `note` is the signed note (the
only part a verifier trusts), `segment`/`offset` say where in the log the tree ended
and `frontier` (hex) lets the writer resume its tree without rereading the log.
A segment deleted with its checkpoint file still leaves the later checkpoints, whose
tree sizes reveal the missing events.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from kaudit.errors import LogError
from kaudit.files import open_private_fd
from kaudit.log.segments import segment_name

SUFFIX = ".checkpoints.jsonl"
_FILE_RE = re.compile(r"^(\d{20})\.checkpoints\.jsonl$")


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    segment: int
    offset: int
    frontier: tuple[bytes, ...]
    note: bytes


def checkpoint_files(log_dir: Path) -> list[Path]:
    try:
        names = os.listdir(log_dir)
    except FileNotFoundError:
        return []
    return sorted(log_dir / n for n in names if _FILE_RE.match(n))


def parse_record(raw: bytes) -> StoredCheckpoint | str:
    """One checkpoint record, or why it cannot be read."""
    try:
        obj = orjson.loads(raw)
        return StoredCheckpoint(
            size=int(obj["size"]),
            segment=int(obj["segment"]),
            offset=int(obj["offset"]),
            frontier=tuple(bytes.fromhex(h) for h in obj["frontier"]),
            note=str(obj["note"]).encode(),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return f"unreadable checkpoint record: {exc}"


def read_checkpoint_file(path: Path) -> Iterator[tuple[Path, int, StoredCheckpoint | str]]:
    """The checkpoint records of one file (beside a segment, or an external anchor):
    (file, line number, checkpoint or why the line could not be read)."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                yield path, number, "torn line (unclean stop while writing)"
                continue
            yield path, number, parse_record(raw)


def read_checkpoints(log_dir: Path) -> Iterator[tuple[Path, int, StoredCheckpoint | str]]:
    """Every checkpoint record beside the log's segments, in log order."""
    for path in checkpoint_files(log_dir):
        yield from read_checkpoint_file(path)


def last_checkpoint(log_dir: Path) -> StoredCheckpoint | None:
    last = None
    for _, _, item in read_checkpoints(log_dir):
        if isinstance(item, StoredCheckpoint):
            last = item
    return last


class LocalCheckpointStore:
    """Appends checkpoints to the current segment's checkpoint file, durably."""

    def __init__(self, log_dir: Path, single_file: Path | None = None) -> None:
        self.log_dir = log_dir
        self.single_file = single_file  # an external anchor: every checkpoint in one file
        self._checked: set[Path] = set()

    def _cut_torn_tail(self, path: Path) -> None:
        """A record torn by an unclean stop is cut before appending, once per file, so
        the next record does not run on from it (the log's segments get the same)."""
        self._checked.add(path)
        try:
            with open(path, "r+b") as f:
                data = f.read()
                if data and not data.endswith(b"\n"):
                    f.truncate(data.rfind(b"\n") + 1)
        except FileNotFoundError:
            pass

    def write(self, stored: StoredCheckpoint) -> None:
        path = self.single_file or self.log_dir / (
            segment_name(stored.segment).removesuffix(".jsonl") + SUFFIX
        )
        record = orjson.dumps(
            {
                "size": stored.size,
                "segment": stored.segment,
                "offset": stored.offset,
                "frontier": [h.hex() for h in stored.frontier],
                "note": stored.note.decode(),
            }
        )
        if path not in self._checked:
            self._cut_torn_tail(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = open_private_fd(path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, record + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise LogError(f"cannot write checkpoint to {path}: {exc.strerror}") from exc
