"""Reading audit events from wherever they are: a log directory, a data directory, a
JSON Lines file (plain or gzipped) or standard input — once, or following new events.

Yields raw canonical lines; rendering and filtering are the caller's choice, so `tail`
can pass native lines through untouched.
"""

from __future__ import annotations

import gzip
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from kaudit.errors import KauditError
from kaudit.log.segments import LogReader, Position, list_segments


class SourceError(KauditError):
    """A SOURCE argument that names nothing kaudit can read."""


def resolve_log_dir(path: Path) -> Path | None:
    """`path` itself if it holds log segments, or its `log/` (a data dir), else None."""
    if list_segments(path):
        return path
    if list_segments(path / "log"):
        return path / "log"
    if (path / "log").is_dir():
        return path / "log"
    if path.is_dir() and (path / ".lock").exists():
        return path
    return None


def open_source(source: str) -> tuple[str, Path | None]:
    """Classify SOURCE: ("dir", log dir) / ("file", path) / ("stdin", None)."""
    if source == "-":
        return "stdin", None
    if "://" in source:
        scheme = source.split("://", 1)[0]
        raise SourceError(
            f"cannot read {source!r}: the {scheme}:// source is not available in this "
            "version; accepted: a log directory, a data directory, a .jsonl/.jsonl.gz file, -"
        )
    path = Path(source).expanduser()
    if path.is_dir():
        log_dir = resolve_log_dir(path)
        if log_dir is None:
            raise SourceError(
                f"{path} holds no audit log segments (expected NNN.jsonl files, "
                "or a data directory with log/)"
            )
        return "dir", log_dir
    if path.is_file():
        return "file", path
    raise SourceError(f"{path} does not exist")


def iter_lines(source: str, *, follow: bool = False, poll_s: float = 0.25) -> Iterator[bytes]:
    """Every event line of SOURCE; with `follow`, keep yielding new ones as they come.

    While following, an empty line (`b""`) is yielded each time the reader has caught up
    and waits, so a caller can tell the backlog from what arrives later.
    """
    kind, path = open_source(source)
    if kind == "stdin":
        yield from (line for line in sys.stdin.buffer if line.strip())
        return
    assert path is not None
    if kind == "dir":
        yield from _dir_lines(path, follow, poll_s)
    else:
        yield from _file_lines(path, follow, poll_s)


def _dir_lines(log_dir: Path, follow: bool, poll_s: float) -> Iterator[bytes]:
    reader = LogReader(log_dir)
    position: Position | None = None
    while True:
        lines, position = reader.read(position)
        if lines:
            yield from lines
            continue
        if not follow:
            return
        yield b""
        time.sleep(poll_s)


def _file_lines(path: Path, follow: bool, poll_s: float) -> Iterator[bytes]:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as gz:
            yield from (line for line in gz if line.strip())
        return
    f: BinaryIO = open(path, "rb")  # noqa: SIM115 - reopened below when the file is rotated
    try:
        inode = os.fstat(f.fileno()).st_ino
        pending = b""
        while True:
            chunk = f.read(1 << 20)
            if chunk:
                data = pending + chunk
                cut = data.rfind(b"\n") + 1
                pending = data[cut:]
                yield from (line for line in data[:cut].splitlines(keepends=True) if line.strip())
                continue
            if not follow:
                if pending.strip():
                    yield pending
                return
            yield b""
            time.sleep(poll_s)
            try:
                if os.stat(path).st_ino != inode:  # rotated: continue with the new file
                    f.close()
                    f = open(path, "rb")  # noqa: SIM115
                    inode = os.fstat(f.fileno()).st_ino
                    pending = b""
            except FileNotFoundError:
                continue
    finally:
        f.close()
