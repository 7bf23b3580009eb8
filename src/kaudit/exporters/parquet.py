"""`encoding: parquet` for the `file` and `s3` destinations: Parquet files for query engines.

Files are partitioned by the events' UTC day, Hive style, and named by stream and
sequence range like the JSON Lines objects (exporters/s3.py):

    <prefix or folder>/dt=2026-11-22/<stream>_<first seq>-<last seq>-<digest>.parquet

with the columns of exporters/parquet_format.py. A file holds the events of one day, in
log order; the digest comes from its content, so writing the same events again gives the
same name (a retry overwrites instead of adding a copy).

Query engines want large files (64 to 256 MB), far more than a batch, and the runner
saves its cursor once `send` returns. So each batch is first written durably to a spool
folder (`<data_dir>/exporters/<name>.parquet-spool/`, one JSON Lines part per batch: the
log's lines as they are, the cheapest thing to write), and the parts become Parquet when
they would make a file of `parquet.target_size_mb` or their first event has waited
`parquet.max_age_secs`, one file per day they hold (exporters/parquet_files.py). The
files are made ahead, in a thread, as the parts are spooled; the roll publishes them.
Rolling is crash safe: the parts being rolled are moved to `rolling/` first, and a roll
found there on start is finished, with the same names, before new events are taken.

The writer's signed checkpoints follow the files (exporters/s3_checkpoints.py), to the
bucket or to the folder's `checkpoints/`, never ahead of the events published, so
`kaudit verify s3://…` (or `kaudit verify <folder>`) checks Parquet files against them as
it checks JSON Lines objects (exporters/export_verify.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

from kaudit.config import Config
from kaudit.config.destinations import FileDestination, S3Destination
from kaudit.errors import ExporterError
from kaudit.exporters.parquet_files import (
    INCREASING_KEY,
    ROW_GROUP_ROWS,
    Converter,
    DayFile,
    daily_files,
    pieces,
)
from kaudit.exporters.s3 import S3Exporter
from kaudit.exporters.s3_checkpoints import CheckpointShipper, checkpoint_shipper
from kaudit.log.cursor import safe_name

log = logging.getLogger("kaudit.exporters.parquet")

__all__ = ["INCREASING_KEY", "PARQUET_KEY", "ROW_GROUP_ROWS", "ParquetExporter", "parquet_name"]

PARQUET_KEY = re.compile(
    r"/?dt=(\d{4}-\d{2}-\d{2})/([^/]+)_(\d{12})-(\d{12})-([0-9a-f]{16})\.parquet"
)
"""What follows the prefix (or folder) in the name of a Parquet file of events: day,
stream, first and last sequence number, content digest."""

_PART = re.compile(r"(\d{12})\.jsonl")


def parquet_name(day: str, stream: str, low: int, high: int, digest: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stream) or "kaudit"
    return f"dt={day}/{safe}_{low:012d}-{high:012d}-{digest}.parquet"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    """`data` as the file `path`, whole or not at all, on disk when this returns."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class ParquetExporter:
    """Spools batches as they come and publishes them as large daily Parquet files, to
    a folder (`file`) or a bucket (`s3`)."""

    native_input = True
    wants_config = True

    def __init__(self, destination: FileDestination | S3Destination, config: Config) -> None:
        self.destination = destination
        self.name = destination.display_name
        self.target_bytes = destination.parquet.target_size_mb << 20
        self.max_age_s = destination.parquet.max_age_secs
        self.s3: S3Exporter | None = None
        self.folder: Path | None = None
        self.checkpoints: CheckpointShipper | None
        """Copies the log's checkpoints beside the files (None: not for this log)."""
        if isinstance(destination, S3Destination):
            self.s3 = S3Exporter(destination, config)
            self.checkpoints = self.s3.checkpoints
        else:
            self.folder = Path(destination.path).expanduser()
            self.checkpoints = checkpoint_shipper(
                destination, config, f"the folder {self.folder}", "", self._write_file
            )
        self.spool = config.data_path / "exporters" / f"{safe_name(self.name)}.parquet-spool"
        self.rolling = self.spool / "rolling"
        self.files_written = 0
        self.last_name: str | None = None
        """The name (under the prefix or folder) of the last file written."""
        self._published_through: int | None = None
        self._unfinished: bytes | None = None
        """The batch spooled by a `send` that then failed (a file could not be published):
        the runner's retry of it is not spooled again. Compared whole, which costs nothing
        when no send failed, where a digest of every batch was a third of `send`'s time."""
        self._ratio = 0.15
        """Size of the last files made over the size of their parts (Parquet against
        JSON Lines): how big the spooled parts will be as files."""
        self._bytes_made = 0
        self._converter: Converter | None = None
        """Making the files of the parts in the spool ahead of their roll."""
        self._spooled: list[tuple[int, int, float]] | None = None
        """Number, size and time written of each part in the spool, oldest first (read
        from the folder once, then kept as parts are written and rolled)."""
        try:
            self.rolling.mkdir(parents=True, exist_ok=True)
            for unfinished in self.spool.glob("*.parquet"):  # of a roll cut short
                unfinished.unlink()
        except OSError as exc:
            raise ExporterError(
                f"{self.name}: cannot create the spool folder {self.spool}: {exc.strerror}",
                retryable=True,
            ) from exc

    # ------------------------------------------------------------------ the spool

    def _parts(self, folder: Path) -> list[Path]:
        """The parts in `folder`, oldest first."""
        return sorted(folder / n for n in os.listdir(folder) if _PART.fullmatch(n))

    def _spool_parts(self) -> list[tuple[int, int, float]]:
        if self._spooled is None:
            self._spooled = []
            for path in self._parts(self.spool):
                stat = path.stat()
                self._spooled.append((int(path.name[:12]), stat.st_size, stat.st_mtime))
        return self._spooled

    def send(self, records: list[bytes]) -> None:
        if not records:
            return
        self._finish_roll()
        if any(r.endswith(b"\n") for r in records):
            data = b"".join(r if r.endswith(b"\n") else r + b"\n" for r in records)
        else:  # as the runner gives them: joined in one copy
            data = b"\n".join([*records, b""])
        if data != self._unfinished:
            spooled = self._spool_parts()
            number = spooled[-1][0] + 1 if spooled else 0
            path = self.spool / f"{number:012d}.jsonl"
            try:
                _write_durably(path, data)
            except OSError as exc:
                raise ExporterError(
                    f"{self.name}: cannot write to the spool {self.spool}: {exc.strerror}",
                    retryable=True,
                ) from exc
            spooled.append((number, len(data), time.time()))
            self._unfinished = data
            self._convert_ahead(path, data)
        self._roll_when_due()
        self._unfinished = None

    def _convert_ahead(self, path: Path, data: bytes) -> None:
        """Hand the part just spooled to the converter (started with the parts spooled
        before, if there is none)."""
        if self._converter is None:
            self._converter = Converter(self.spool)
            for before in self._parts(self.spool):
                if before != path:
                    self._converter.add(before)
        self._converter.add(path, data)

    def _roll_when_due(self) -> None:
        spooled = self._spool_parts()
        if spooled and (
            sum(size for _, size, _ in spooled) * self._ratio >= self.target_bytes
            or time.time() - spooled[0][2] >= self.max_age_s
        ):
            self.roll()

    def roll(self) -> None:
        """Make the files of the spooled parts now and publish them."""
        ahead: tuple[list[str], list[DayFile]] | None = None
        if self._converter is not None:
            converter, self._converter = self._converter, None
            made = converter.finish()
            ahead = None if made is None else (converter.names, made)
        for path in self._parts(self.spool):
            os.replace(path, self.rolling / path.name)
        self._spooled = []
        _fsync_dir(self.rolling)
        self._finish_roll(ahead)

    def _finish_roll(self, ahead: tuple[list[str], list[DayFile]] | None = None) -> None:
        """Publish the files of the parts in `rolling/`, then remove the parts. `ahead`:
        the names of the parts the converter took and the files it made of them, used
        when those are the parts in `rolling/` (else the files are made now)."""
        parts = self._parts(self.rolling)
        made = ahead[1] if ahead is not None else []
        try:
            if not parts:
                return
            if ahead is not None and ahead[0] == [p.name for p in parts]:
                self._publish_files(iter(made))
            else:
                lines = pieces(p.read_bytes() for p in parts)
                with closing(daily_files(lines, self.spool, "file")) as files:
                    self._publish_files(files)
        finally:
            for unpublished in made:
                unpublished.path.unlink(missing_ok=True)
        size = sum(path.stat().st_size for path in parts)
        self._ratio = self._bytes_made / size if size else self._ratio
        self._bytes_made = 0
        for path in parts:
            path.unlink()

    def _publish_files(self, files: Iterator[DayFile]) -> None:
        for made in files:
            try:
                self._publish_file(made)
            finally:
                made.path.unlink(missing_ok=True)

    def _publish_file(self, made: DayFile) -> None:
        body = made.path.read_bytes()
        low = made.low if made.low is not None else 0
        high = made.high if made.high is not None else low + made.rows - 1
        digest = hashlib.sha256(body).hexdigest()[:16]
        name = parquet_name(made.day, made.stream, low, high, digest)
        self._publish(name, body, low, high)
        self._bytes_made += len(body)
        self.last_name = name
        self.files_written += 1
        self._published_through = high
        if self.checkpoints is not None:
            self.checkpoints.ship(high)

    def _publish(self, name: str, body: bytes, low: int, high: int) -> None:
        if self.s3 is not None:
            metadata = {
                "first-sequence": str(low),
                "last-sequence": str(high),
                "format": "native",
                "encoding": "parquet",
            }
            self.s3.upload(
                f"{self.s3.prefix}{name}", body, metadata, "application/vnd.apache.parquet"
            )
            return
        self._write_file(name, body)

    def _write_file(self, name: str, body: bytes) -> None:
        """`body` as the file `name` under the folder, durably."""
        assert self.folder is not None
        target = self.folder / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_durably(target, body)
        except OSError as exc:
            raise ExporterError(
                f"{self.name}: cannot write {target}: {exc.strerror}", retryable=True
            ) from exc

    # ------------------------------------------------------------------ runner hooks

    def idle(self, delivered_through: int | None) -> None:
        """Caught up with the log: publish a file whose events have waited long enough,
        then copy the checkpoints covering what is published."""
        self._finish_roll()
        self._roll_when_due()
        published = self._published_through if self._parts(self.spool) else delivered_through
        if self.s3 is not None:
            self.s3.idle(published)
        elif self.checkpoints is not None:
            self.checkpoints.ship(published)

    def close(self) -> None:
        if self._converter is not None:
            self._converter.discard()
            self._converter = None
        if self.s3 is not None:
            self.s3.close()
