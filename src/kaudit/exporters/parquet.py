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
from collections.abc import Iterator
from dataclasses import dataclass
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

INCREASING_KEY = "kaudit.sequence_increasing"
"""File metadata saying each row's sequence number is above the row's before: no event
is in the file twice (`kaudit search` then needs no event ids to count each once)."""

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
        self._ratio = 0.15
        """Size of the last files made over the size of their parts (Parquet against
        JSON Lines): how big the spooled parts will be as files."""
        self._bytes_made = 0
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

    def send(self, records: list[bytes]) -> None:
        if not records:
            return
        self._finish_roll()
        # A retry of this batch (a file could not be published) does not spool it again.
        if not self._progress.start(batch_key(records)):
            parts = self._parts(self.spool)
            number = int(parts[-1].name[:12]) + 1 if parts else 0
            data = b"".join(r if r.endswith(b"\n") else r + b"\n" for r in records)
            try:
                _write_durably(self.spool / f"{number:012d}.jsonl", data)
            except OSError as exc:
                raise ExporterError(
                    f"{self.name}: cannot write to the spool {self.spool}: {exc.strerror}",
                    retryable=True,
                ) from exc
            self._progress.advance(1)
        self._roll_when_due()
        self._progress.finish()

    def _roll_when_due(self) -> None:
        parts = self._parts(self.spool)
        if not parts:
            return
        sizes = [path.stat() for path in parts]
        if (
            sum(s.st_size for s in sizes) * self._ratio >= self.target_bytes
            or time.time() - sizes[0].st_mtime >= self.max_age_s
        ):
            self.roll()

    def roll(self) -> None:
        """Make the files of the spooled parts now and publish them."""
        for path in self._parts(self.spool):
            os.replace(path, self.rolling / path.name)
        _fsync_dir(self.rolling)
        self._finish_roll()

    def _finish_roll(self) -> None:
        parts = self._parts(self.rolling)
        if not parts:
            return
        made: _File | None = None
        count = 0
        try:
            for chunk in _chunks(parts):
                table = self._table(chunk)
                days = pc.strftime(table.column("time"), format="%Y-%m-%d").to_pylist()
                start = 0
                for end in range(1, len(days) + 1):
                    if end < len(days) and days[end] == days[start]:
                        continue
                    if made is not None and made.day != days[start]:
                        self._publish_file(made)
                        made = None
                    if made is None:
                        path = self.spool / f"file-{count}.parquet"
                        writer = pq.ParquetWriter(path, SCHEMA, **WRITE_OPTIONS)
                        made = _File(days[start], path, writer)
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

    def _table(self, lines: list[bytes]) -> pa.Table:
        """The lines as a table; lines that are not audit events (the log holds none, but
        a spool can be edited) are set aside in `rejected.jsonl`, with an error logged."""
        try:
            return lines_table(lines)
        except EventDecodeError:
            pass
        good, bad = [], []
        for line in lines:
            try:
                lines_table([line])
                good.append(line)
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
        return lines_table(good) if good else SCHEMA.empty_table()

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
        if self.s3 is not None and self.s3.checkpoints is not None:
            self.s3.checkpoints.ship(high)

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
        then (S3) upload the checkpoints covering what is published."""
        self._finish_roll()
        self._roll_when_due()
        if self.s3 is not None:
            spooled = bool(self._parts(self.spool))
            self.s3.idle(self._published_through if spooled else delivered_through)

    def close(self) -> None:
        if self.s3 is not None:
            self.s3.close()


def _chunks(parts: list[Path]) -> Iterator[list[bytes]]:
    """The lines of the parts, in order, ROW_GROUP_ROWS at a time (the last fewer)."""
    pending: list[bytes] = []
    for path in parts:
        pending.extend(path.read_bytes().splitlines())
        while len(pending) >= ROW_GROUP_ROWS:
            yield pending[:ROW_GROUP_ROWS]
            pending = pending[ROW_GROUP_ROWS:]
    if pending:
        yield pending
