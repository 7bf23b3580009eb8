"""`encoding: parquet` for the `file` and `s3` destinations: Parquet files for query engines.

Files are partitioned by the events' UTC day, Hive style, and named by stream and
sequence range like the JSON Lines objects (exporters/s3.py):

    <prefix or folder>/dt=2026-11-22/<stream>_<first seq>-<last seq>-<digest>.parquet

with the columns of exporters/parquet_format.py. A file holds the events of one day, in
log order; the digest comes from its content, so writing the same events again gives the
same name (a retry overwrites instead of adding a copy).

Query engines want large files (64 to 256 MB), far more than a batch, and the runner
saves its cursor once `send` returns. So each batch is first written durably to a spool
folder (`<data_dir>/exporters/<name>.parquet-spool/`, one small Parquet part per batch
and day), and the parts become one file when they reach `parquet.target_size_mb`, when
their first event has waited `parquet.max_age_secs`, or when the day changes. Rolling is
crash safe: the parts being rolled are moved to `rolling/` first, and a roll found there
on start is finished, with the same name, before new events are taken.

On S3, the writer's signed checkpoints follow the files (exporters/s3_checkpoints.py),
never ahead of the events uploaded, so `kaudit verify s3://…` checks Parquet objects as
it checks JSON Lines ones (exporters/s3_verify.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kaudit.config import Config
from kaudit.config.destinations import FileDestination, S3Destination
from kaudit.errors import EventDecodeError, ExporterError
from kaudit.exporters.parquet_format import SCHEMA, WRITE_OPTIONS, lines_table
from kaudit.exporters.records import Progress, batch_key
from kaudit.exporters.s3 import S3Exporter
from kaudit.log.cursor import safe_name

log = logging.getLogger("kaudit.exporters.parquet")

PARQUET_KEY = re.compile(
    r"/?dt=(\d{4}-\d{2}-\d{2})/([^/]+)_(\d{12})-(\d{12})-([0-9a-f]{16})\.parquet"
)
"""What follows the prefix (or folder) in the name of a Parquet file of events: day,
stream, first and last sequence number, content digest."""

ROW_GROUP_ROWS = 65_536
"""Rows per row group of a finished file: large enough for engines to read efficiently,
small enough to hold in memory while rolling."""

_PART = re.compile(r"(\d{12})-(\d{4}-\d{2}-\d{2})\.parquet")


def parquet_name(day: str, stream: str, low: int, high: int, digest: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stream) or "kaudit"
    return f"dt={day}/{safe}_{low:012d}-{high:012d}-{digest}.parquet"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_part(path: Path, table: pa.Table) -> None:
    """`table` as a spool part at `path`, whole or not at all, durably: quick to write
    (lz4, no dictionaries), as it is read again once, to make the file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        pq.write_table(table, f, compression="lz4", use_dictionary=False, write_statistics=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class ParquetExporter:
    """Spools batches as Parquet parts and publishes them as large daily files, to a
    folder (`file`) or a bucket (`s3`)."""

    native_input = True
    wants_config = True

    def __init__(self, destination: FileDestination | S3Destination, config: Config) -> None:
        self.destination = destination
        self.name = destination.display_name
        self.target_bytes = destination.parquet.target_size_mb << 20
        self.max_age_s = destination.parquet.max_age_secs
        self.s3: S3Exporter | None = None
        self.folder: Path | None = None
        if isinstance(destination, S3Destination):
            self.s3 = S3Exporter(destination, config)
        else:
            self.folder = Path(destination.path).expanduser()
        self.spool = config.data_path / "exporters" / f"{safe_name(self.name)}.parquet-spool"
        self.rolling = self.spool / "rolling"
        self.files_written = 0
        self.last_name: str | None = None
        """The name (under the prefix or folder) of the last file written."""
        self._published_through: int | None = None
        self._progress = Progress()
        self._ratio = 0.5
        """Size of the last file made over the size of its parts (zstd and dictionaries
        against lz4): how big the spooled parts will be as a file."""
        try:
            self.rolling.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExporterError(
                f"{self.name}: cannot create the spool folder {self.spool}: {exc.strerror}",
                retryable=True,
            ) from exc

    # ------------------------------------------------------------------ the spool

    def _parts(self, folder: Path) -> list[tuple[Path, str]]:
        """The parts in `folder`, oldest first, with their day."""
        found = []
        for name in os.listdir(folder):
            match = _PART.fullmatch(name)
            if match:
                found.append((int(match.group(1)), folder / name, match.group(2)))
        return [(path, day) for _, path, day in sorted(found)]

    def send(self, records: list[bytes]) -> None:
        if not records:
            return
        self._finish_roll()
        try:
            table = lines_table(records)
        except EventDecodeError as exc:
            raise ExporterError(f"{self.name}: {exc}", retryable=False) from exc
        days = pc.strftime(table.column("time"), format="%Y-%m-%d").to_pylist()
        runs = []
        start = 0
        for end in range(1, len(days) + 1):
            if end == len(days) or days[end] != days[start]:
                runs.append((start, end, days[start]))
                start = end
        # A retry of this batch (a file could not be published) spools only what it has
        # not yet: the runs spooled before the failure are in the spool already.
        done = self._progress.start(batch_key(records))
        for index, (start, end, day) in enumerate(runs):
            if index >= done:
                self._add_part(table.slice(start, end - start), day)
                self._progress.advance(index + 1)
        self._roll_when_due()
        self._progress.finish()

    def _add_part(self, table: pa.Table, day: str) -> None:
        parts = self._parts(self.spool)
        if parts and parts[-1][1] != day:
            self.roll()  # a file holds one day
            parts = []
        number = int(parts[-1][0].name[:12]) + 1 if parts else 0
        try:
            _write_part(self.spool / f"{number:012d}-{day}.parquet", table)
        except OSError as exc:
            raise ExporterError(
                f"{self.name}: cannot write to the spool {self.spool}: {exc.strerror}",
                retryable=True,
            ) from exc

    def _roll_when_due(self) -> None:
        parts = self._parts(self.spool)
        if not parts:
            return
        sizes = [path.stat() for path, _ in parts]
        if (
            sum(s.st_size for s in sizes) * self._ratio >= self.target_bytes
            or time.time() - sizes[0].st_mtime >= self.max_age_s
        ):
            self.roll()

    def roll(self) -> None:
        """Make one file of the spooled parts now and publish it."""
        for path, _ in self._parts(self.spool):
            os.replace(path, self.rolling / path.name)
        _fsync_dir(self.rolling)
        self._finish_roll()

    def _finish_roll(self) -> None:
        parts = self._parts(self.rolling)
        if not parts:
            return
        out = self.spool / "file.parquet"
        low, high, stream = self._write_rolled(parts, out)
        digest = hashlib.sha256()
        with open(out, "rb") as f:
            body = f.read()
        digest.update(body)
        parts_size = sum(path.stat().st_size for path, _ in parts)
        self._ratio = len(body) / parts_size if parts_size else self._ratio
        name = parquet_name(parts[0][1], stream, low, high, digest.hexdigest()[:16])
        self._publish(name, out, body, low, high)
        for path, _ in parts:
            path.unlink()
        out.unlink()
        self.last_name = name
        self.files_written += 1
        self._published_through = high
        if self.s3 is not None and self.s3.checkpoints is not None:
            self.s3.checkpoints.ship(high)

    def _write_rolled(self, parts: list[tuple[Path, str]], out: Path) -> tuple[int, int, str]:
        """The parts as one file at `out`, in row groups of ROW_GROUP_ROWS; the first and
        last sequence numbers and the stream (host or cluster of the first event)."""
        low = high = None
        stream = "kaudit"
        rows = 0
        pending: list[pa.Table] = []
        with pq.ParquetWriter(out, SCHEMA, **WRITE_OPTIONS) as writer:
            for index, (path, _) in enumerate(parts):
                table = pq.read_table(path, schema=SCHEMA)
                if low is None and table.num_rows:
                    first = table.slice(0, 1).to_pylist()[0]
                    stream = first["context_host"] or first["context_cluster_id"] or "kaudit"
                    low = first["sequence_number"]
                seqs = table.column("sequence_number")
                if table.num_rows and seqs[table.num_rows - 1].is_valid:
                    high = seqs[table.num_rows - 1].as_py()
                rows += table.num_rows
                pending.append(table)
                if sum(t.num_rows for t in pending) >= ROW_GROUP_ROWS or index == len(parts) - 1:
                    writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                    pending = []
        low = low if low is not None else 0
        high = high if high is not None else low + rows - 1
        return low, high, stream

    def _publish(self, name: str, out: Path, body: bytes, low: int, high: int) -> None:
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
        assert self.folder is not None
        target = self.folder / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            with open(tmp, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        except OSError as exc:
            raise ExporterError(
                f"{self.name}: cannot write {target}: {exc.strerror}", retryable=True
            ) from exc

    # ------------------------------------------------------------------ runner hooks

    def idle(self, delivered_through: int | None) -> None:
        """Caught up with the log: publish a file whose events have waited long enough,
        then (S3) upload the checkpoints covering what is published."""
        self._finish_roll()
        self._roll_when_due()
        if self.s3 is not None:
            spooled = bool(self._parts(self.spool))
            self.s3.idle(self._published_through if spooled else delivered_through)

    def close(self) -> None:
        if self.s3 is not None:
            self.s3.close()
