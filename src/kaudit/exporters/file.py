"""The seed's `file` destination: events as JSON Lines in one file, rotated by size.

Rotation is logrotate's numbering: `audit.log` is written, `audit.log.1` is the newest
rotated file (`.1.gz` with `compress: true`), and at most `max_files` rotated files are
kept. Each batch is fsynced before the runner saves its cursor, so an event the cursor
has passed is on disk.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
from pathlib import Path

from kaudit.config.model import FileDestination
from kaudit.errors import ExporterError


def rotated_files(path: Path) -> list[Path]:
    """The rotated files of the destination writing `path` (`path.N`, `path.N.gz`),
    newest first; never `path` itself."""
    pattern = re.compile(rf"^{re.escape(path.name)}\.(\d+)(\.gz)?$")
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    found = [(int(m.group(1)), n) for n in names if (m := pattern.match(n))]
    return [path.parent / n for _, n in sorted(found)]


class FileExporter:
    """Appends rendered events to `path`, one per line, with size-based rotation."""

    def __init__(self, config: FileDestination) -> None:
        self.config = config
        self.name = config.display_name
        self.path = Path(config.path).expanduser()
        self.max_bytes = config.rotation.max_size_mb << 20
        self.max_files = config.rotation.max_files
        self.compress = config.rotation.compress
        self._fd = -1
        self._size = 0

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise ExporterError(
                f"file destination {self.path}: cannot open: {exc.strerror}",
                retryable=True,
            ) from exc
        self._size = os.fstat(self._fd).st_size

    def send(self, records: list[bytes]) -> None:
        if self._fd < 0:
            self._open()
        chunk: list[bytes] = []
        chunk_size = 0
        for record in records:
            line = record + b"\n"
            if self._size + chunk_size + len(line) > self.max_bytes and (self._size or chunk):
                self._write(chunk)
                chunk, chunk_size = [], 0
                self._rotate()
            chunk.append(line)
            chunk_size += len(line)
        self._write(chunk)

    def _write(self, lines: list[bytes]) -> None:
        if not lines:
            return
        data = b"".join(lines)
        before = self._size
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            os.fsync(self._fd)
        except OSError as exc:
            # Cut back what was half written so the retry does not leave a torn line.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, before)
            raise ExporterError(
                f"file destination {self.path}: write failed: {exc.strerror}", retryable=True
            ) from exc
        self._size += len(data)

    def _rotated(self, index: int) -> Path:
        suffix = f".{index}.gz" if self.compress else f".{index}"
        return self.path.with_name(self.path.name + suffix)

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        try:
            oldest = self._rotated(self.max_files)
            oldest.unlink(missing_ok=True)
            for index in range(self.max_files - 1, 0, -1):
                src = self._rotated(index)
                if src.exists():
                    src.rename(self._rotated(index + 1))
            plain = self.path.with_name(self.path.name + ".1")
            self.path.rename(plain)
            if self.compress:
                tmp = self._rotated(1).with_suffix(".gz.tmp")
                # Same mode as the live file (0640): audit data is not for every user.
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
                with (
                    open(plain, "rb") as src_f,
                    open(fd, "wb") as raw,
                    gzip.GzipFile(fileobj=raw, mode="wb") as dst_f,
                ):
                    shutil.copyfileobj(src_f, dst_f)
                    dst_f.close()
                    raw.flush()
                    os.fsync(raw.fileno())
                os.replace(tmp, self._rotated(1))
                plain.unlink()
        except OSError as exc:
            raise ExporterError(
                f"file destination {self.path}: rotation failed: {exc.strerror}", retryable=True
            ) from exc
        self._open()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
