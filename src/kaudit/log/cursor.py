"""Durable reader cursors: where an exporter or reader has got to in the local log.

A cursor is a small JSON file replaced atomically (write, fsync, rename, fsync the
directory), so after a crash it holds either the old or the new position, never a torn
one. It is saved only after the reader's work for those events is done, which is what
makes delivery at-least-once.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import orjson

from kaudit.errors import LogError
from kaudit.files import open_private
from kaudit.log.segments import Position


def safe_name(name: str) -> str:
    """`name` as a file name; when characters had to be replaced, a hash of the original
    keeps two names that differ only in those characters apart."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    if safe != name:
        safe = f"{safe[:80]}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"
    return safe


class Cursor:
    """One named, durable position in a local log."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def named(cls, data_dir: str | os.PathLike[str], name: str) -> Cursor:
        return cls(Path(data_dir) / "cursors" / f"{safe_name(name)}.json")

    def load(self) -> Position | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            obj = orjson.loads(raw)
            return Position(int(obj["segment"]), int(obj["offset"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise LogError(f"cursor file {self.path} is damaged: {exc}") from exc

    def save(self, position: Position, *, sequence: int | None = None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        body = {"segment": position.segment, "offset": position.offset, "sequence": sequence}
        with open_private(tmp) as f:
            f.write(orjson.dumps(body))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def sequence(self) -> int | None:
        """The sequence number of the last event done, if the saver recorded it."""
        try:
            obj = orjson.loads(self.path.read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        seq = obj.get("sequence") if isinstance(obj, dict) else None
        return seq if isinstance(seq, int) else None
