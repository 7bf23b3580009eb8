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
`parquet.max_age_secs`: read in chunks of ROW_GROUP_ROWS, one file per day they hold.
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
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kaudit.config import Config
from kaudit.config.destinations import FileDestination, S3Destination
from kaudit.errors import EventDecodeError, ExporterError
from kaudit.exporters.parquet_format import SCHEMA, WRITE_OPTIONS, ndjson_table
from kaudit.exporters.records import Progress
from kaudit.exporters.s3 import S3Exporter
from kaudit.exporters.s3_checkpoints import CheckpointShipper, checkpoint_shipper
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

INCREASING_KEY = "kaudit.sequence_increasing"
"""File metadata saying each row's sequence number is above the row's before: no event
is in the file twice (`kaudit search` then needs no event ids to count each once)."""

_PARSE_BYTES = 8 << 20
"""Lines are turned into columns this many bytes at a time: pieces that large keep the
parsing threads busy, and memory freed by one is reused by the next (a whole file's
worth at once costs as much again in page faults)."""

_US_PER_DAY = 86_400_000_000
_EPOCH = date(1970, 1, 1)

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


@dataclass
class _File:
    """A Parquet file being made of one day's events, in the spool."""

    day: str
    path: Path
    writer: pq.ParquetWriter
    low: int | None = None
    high: int | None = None
    stream: str = "kaudit"
    rows: int = 0
    increasing: bool = True
    """Whether every sequence number is above the one before (no event twice)."""

    def write(self, table: pa.Table) -> None:
        if not self.rows:
            first = table.slice(0, 1).to_pylist()[0]
            self.stream = first["context_host"] or first["context_cluster_id"] or "kaudit"
            self.low = first["sequence_number"]
        seqs = table.column("sequence_number")
        self.increasing = self.increasing and not seqs.null_count
        if self.increasing:
            after = seqs[0].as_py() > self.high if self.rows and self.high is not None else True
            later = pc.greater(seqs[1:], seqs[:-1]) if len(seqs) > 1 else None
            self.increasing = after and (later is None or pc.all(later).as_py())
        last = seqs[table.num_rows - 1]
        if last.is_valid:
            self.high = last.as_py()
        self.rows += table.num_rows
        self.writer.write_table(table, row_group_size=ROW_GROUP_ROWS)

    def close(self) -> None:
        if self.increasing:
            self.writer.add_key_value_metadata({INCREASING_KEY: "true"})
        self.writer.close()


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
        self._progress = Progress()
        self._ratio = 0.15
        """Size of the last files made over the size of their parts (Parquet against
        JSON Lines): how big the spooled parts will be as files."""
        self._bytes_made = 0
        self._spooled: list[tuple[int, int, float]] | None = None
        """Number, size and time written of each part in the spool, oldest first (read
        from the folder once, then kept as parts are written and rolled)."""
        try:
            self.rolling.mkdir(parents=True, exist_ok=True)
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
        data = b"".join(r if r.endswith(b"\n") else r + b"\n" for r in records)
        # A retry of this batch (a file could not be published) does not spool it again.
        if not self._progress.start(hashlib.sha256(data).hexdigest()):
            spooled = self._spool_parts()
            number = spooled[-1][0] + 1 if spooled else 0
            try:
                _write_durably(self.spool / f"{number:012d}.jsonl", data)
            except OSError as exc:
                raise ExporterError(
                    f"{self.name}: cannot write to the spool {self.spool}: {exc.strerror}",
                    retryable=True,
                ) from exc
            spooled.append((number, len(data), time.time()))
            self._progress.advance(1)
        self._roll_when_due()
        self._progress.finish()

    def _roll_when_due(self) -> None:
        spooled = self._spool_parts()
        if spooled and (
            sum(size for _, size, _ in spooled) * self._ratio >= self.target_bytes
            or time.time() - spooled[0][2] >= self.max_age_s
        ):
            self.roll()

    def roll(self) -> None:
        """Make the files of the spooled parts now and publish them."""
        for path in self._parts(self.spool):
            os.replace(path, self.rolling / path.name)
        self._spooled = []
        _fsync_dir(self.rolling)
        self._finish_roll()

    def _finish_roll(self) -> None:
        parts = self._parts(self.rolling)
        if not parts:
            return
        made: _File | None = None
        count = 0
        try:
            for table in self._row_groups(parts):
                days = table.column("time").cast(pa.int64()).to_numpy() // _US_PER_DAY
                ends = [*(np.flatnonzero(days[1:] != days[:-1]) + 1).tolist(), len(days)]
                start = 0
                for end in ends:
                    day = (_EPOCH + timedelta(days=int(days[start]))).isoformat()
                    if made is not None and made.day != day:
                        self._publish_file(made)
                        made = None
                    if made is None:
                        path = self.spool / f"file-{count}.parquet"
                        writer = pq.ParquetWriter(path, SCHEMA, **WRITE_OPTIONS)
                        made = _File(day, path, writer)
                        count += 1
                    made.write(table.slice(start, end - start))
                    start = end
            if made is not None:
                self._publish_file(made)
                made = None
        finally:
            if made is not None:
                made.writer.close()
        size = sum(path.stat().st_size for path in parts)
        self._ratio = self._bytes_made / size if size else self._ratio
        self._bytes_made = 0
        for path in parts:
            path.unlink()

    def _row_groups(self, parts: list[Path]) -> Iterator[pa.Table]:
        """The events of the parts, in order, ROW_GROUP_ROWS at a time (the last fewer)."""
        pending: list[pa.Table] = []
        rows = 0
        for data in _pieces(parts):
            table = self._table(data)
            pending.append(table)
            rows += table.num_rows
            while rows >= ROW_GROUP_ROWS:
                whole = pa.concat_tables(pending)
                yield whole.slice(0, ROW_GROUP_ROWS)
                pending, rows = [whole.slice(ROW_GROUP_ROWS)], rows - ROW_GROUP_ROWS
        if rows:
            yield pa.concat_tables(pending)

    def _table(self, data: bytes) -> pa.Table:
        """The lines of `data` as a table; lines that are not audit events (the log holds
        none, but a spool can be edited) are set aside in `rejected.jsonl`, with an error
        logged."""
        try:
            return ndjson_table(data)
        except EventDecodeError:
            pass
        good, bad = [], []
        for line in data.split(b"\n")[:-1]:
            try:
                ndjson_table(line + b"\n")
                good.append(line + b"\n")
            except EventDecodeError:
                bad.append(line)
        with open(self.spool / "rejected.jsonl", "ab") as f:
            f.write(b"".join(line + b"\n" for line in bad))
        log.error(
            "%s: %d line(s) of the spool are not audit events; set aside in %s",
            self.name,
            len(bad),
            self.spool / "rejected.jsonl",
        )
        return ndjson_table(b"".join(good)) if good else SCHEMA.empty_table()

    def _publish_file(self, made: _File) -> None:
        made.close()
        body = made.path.read_bytes()
        low = made.low if made.low is not None else 0
        high = made.high if made.high is not None else low + made.rows - 1
        digest = hashlib.sha256(body).hexdigest()[:16]
        name = parquet_name(made.day, made.stream, low, high, digest)
        self._publish(name, body, low, high)
        made.path.unlink()
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
        if self.s3 is not None:
            self.s3.close()


def _pieces(parts: list[Path]) -> Iterator[bytes]:
    """The lines of the parts, in order, about _PARSE_BYTES of whole lines at a time (each
    line ended by a newline)."""
    pending: list[bytes] = []
    size = 0
    for path in parts:
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            data += b"\n"
        pending.append(data)
        size += len(data)
        if size < _PARSE_BYTES:
            continue
        data = b"".join(pending)
        start = 0
        while len(data) - start >= _PARSE_BYTES:
            cut = data.index(b"\n", start + _PARSE_BYTES - 1) + 1
            yield data[start:cut]
            start = cut
        pending = [data[start:]] if start < len(data) else []
        size = len(data) - start
    if pending:
        yield b"".join(pending)
