"""Spooled parts to daily Parquet files: the row groups, the split by day, and a converter
that makes the files in a thread of its own while the parts are being spooled.

The files depend only on the parts' lines, in order: rows are gathered into row groups of
ROW_GROUP_ROWS (a group is cut short where the day changes, and a new file starts), so a
roll that converts its parts at once and the converter, fed the same parts one by one as
they are spooled, write the same bytes (the same digest, so the same names).

The converter exists because a roll is long (a file of 128 MB is about a gigabyte of
lines to parse, encode and compress), and `send` only has to make each batch durable:
converting the parts as they come uses the time and the cores that spooling leaves idle,
instead of holding the exporter at the roll. It only ever writes its own temporary files
in the spool; the parts stay the durable record until the files are published, and a
roll finds its work done only when the converter took exactly the parts being rolled
(anything else, or a failure, and the roll converts the parts itself).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kaudit.errors import EventDecodeError
from kaudit.exporters.parquet_format import (
    EPOCH_DAY,
    POOL,
    SCHEMA,
    US_PER_DAY,
    WRITE_OPTIONS,
    ndjson_table,
)

log = logging.getLogger("kaudit.exporters.parquet")

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

_QUEUED_BYTES = 64 << 20
"""At most this many bytes of parts wait in memory for the converter; parts beyond are
read back from the spool when their turn comes (page cache, most likely)."""


@dataclass
class DayFile:
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

    def discard(self) -> None:
        self.writer.close()
        self.path.unlink(missing_ok=True)


def daily_files(
    pieces: Iterable[bytes], spool: Path, prefix: str
) -> Generator[DayFile, None, None]:
    """The Parquet files (closed, in `spool`, named `<prefix>-<n>.parquet`) of the lines
    of `pieces`, one per day in order; lines that are not audit events are set aside in
    the spool's `rejected.jsonl`."""
    made: DayFile | None = None
    count = 0
    try:
        for table in _ahead(_row_groups(pieces, spool)):
            days = table.column("time").cast(pa.int64()).to_numpy() // US_PER_DAY
            ends = [*(np.flatnonzero(days[1:] != days[:-1]) + 1).tolist(), len(days)]
            start = 0
            for end in ends:
                day = (EPOCH_DAY + timedelta(days=int(days[start]))).isoformat()
                if made is not None and made.day != day:
                    made.close()
                    yield made
                    made = None
                if made is None:
                    path = spool / f"{prefix}-{count}.parquet"
                    writer = pq.ParquetWriter(path, SCHEMA, memory_pool=POOL, **WRITE_OPTIONS)
                    made = DayFile(day, path, writer)
                    count += 1
                made.write(table.slice(start, end - start))
                start = end
        if made is not None:
            made.close()
            yield made
            made = None
    finally:
        if made is not None:
            made.discard()


_END = object()


def _ahead(tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """`tables`, each made while the one before is being written: in a thread of its own,
    one ahead (parsing and encoding both run in Arrow's C++, without Python's lock, so
    they take both cores; one row group more is held in memory)."""
    slot: queue.Queue[tuple[object, Exception | None]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def make() -> None:
        try:
            for table in tables:
                slot.put((table, None))
                if stop.is_set():
                    break
        except Exception as exc:  # raised by the reader, below
            slot.put((_END, exc))
            return
        slot.put((_END, None))

    thread = threading.Thread(target=make, name="parquet-parse", daemon=True)
    thread.start()
    ended = False
    try:
        while True:
            item, error = slot.get()
            if item is _END:
                ended = True
                if error is not None:
                    raise error
                return
            assert isinstance(item, pa.Table)
            yield item
    finally:
        stop.set()
        while not ended:  # the maker stops after the table it is making
            ended = slot.get()[0] is _END
        thread.join()


def _row_groups(pieces: Iterable[bytes], spool: Path) -> Iterator[pa.Table]:
    """The events of `pieces`, in order, ROW_GROUP_ROWS at a time (the last fewer)."""
    pending: list[pa.Table] = []
    rows = 0
    for data in pieces:
        table = _table(data, spool)
        pending.append(table)
        rows += table.num_rows
        while rows >= ROW_GROUP_ROWS:
            whole = pa.concat_tables(pending, memory_pool=POOL)
            yield whole.slice(0, ROW_GROUP_ROWS)
            pending, rows = [whole.slice(ROW_GROUP_ROWS)], rows - ROW_GROUP_ROWS
    if rows:
        yield pa.concat_tables(pending, memory_pool=POOL)


def _table(data: bytes, spool: Path) -> pa.Table:
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
    with open(spool / "rejected.jsonl", "ab") as f:
        f.write(b"".join(line + b"\n" for line in bad))
    log.error(
        "%s: %d line(s) of the spool are not audit events; set aside in %s",
        spool.name,
        len(bad),
        spool / "rejected.jsonl",
    )
    return ndjson_table(b"".join(good)) if good else SCHEMA.empty_table()


def pieces(parts: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of the parts' contents, in order, about _PARSE_BYTES of whole lines at a
    time (each line ended by a newline)."""
    pending: list[bytes] = []
    size = 0
    for data in parts:
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


class _Discarded(Exception):
    """The converter's files are no longer wanted: it stops at the next part."""


class Converter:
    """Makes the daily files of the parts it is given, in order, in a thread of its own
    (the parsing, encoding and compressing run in Arrow's C++ without Python's lock)."""

    def __init__(self, spool: Path) -> None:
        self.spool = spool
        self.names: list[str] = []
        """The parts given, in order."""
        self._files: list[DayFile] = []
        self._error: Exception | None = None
        self._ended = False
        self._discarded = False
        self._queue: queue.SimpleQueue[tuple[Path, bytes | None] | None] = queue.SimpleQueue()
        self._queued = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="parquet-convert", daemon=True)
        self._thread.start()

    def add(self, path: Path, data: bytes | None = None) -> None:
        """Convert the part `path` next (`data`: its content, when at hand)."""
        self.names.append(path.name)
        with self._lock:
            if data is not None and self._queued + len(data) > _QUEUED_BYTES:
                data = None
            self._queued += len(data or b"")
        self._queue.put((path, data))

    def finish(self) -> list[DayFile] | None:
        """The files of all the parts given, once made; None when they could not be (the
        reason is logged, and the parts are to be converted again)."""
        self._queue.put(None)
        self._thread.join()
        if self._error is None:
            return self._files
        log.warning("%s: converting ahead failed (%s); converting again", self.spool, self._error)
        self.discard()
        return None

    def discard(self) -> None:
        """Stop (after the piece being converted), and remove the files made."""
        self._discarded = True
        self._queue.put(None)
        self._thread.join()
        for made in self._files:
            made.path.unlink(missing_ok=True)
        self._files = []

    def _parts(self) -> Iterator[bytes]:
        while (item := self._queue.get()) is not None:
            if self._discarded:
                raise _Discarded
            path, data = item
            if data is None:
                data = path.read_bytes()
            else:
                with self._lock:
                    self._queued -= len(data)
            yield data
        self._ended = True

    def _run(self) -> None:
        try:
            for made in daily_files(pieces(self._parts()), self.spool, "ahead"):
                self._files.append(made)
        except Exception as exc:  # reported by finish(), which converts again
            self._error = exc
            while not self._ended and self._queue.get() is not None:
                pass
