"""The embedded search index: one SQLite file holding every indexed event.

This module owns opening the file (schema, pragmas, version check, the upgrade of an
older index by `migrate`), adding events (idempotent on `event_id`; their hourly and
daily counts in `rollups` in the same transaction), removing events older than a time
(retention, counts included) and the connection queries read through.

How it is fast enough to keep up with the log (see bench/search.py): each line is
decoded once, and only the members the index reads (`schema.read_event`); WAL, so
searches read while events are added; a batch goes in parts of a few thousand events,
one transaction each, with consecutive ids: the lines, counts and terms added with
`executemany`, the event rows, the full-text words and the commit handed to a writer
thread while the next part is decoded (Python's collector held off meanwhile), which
splits the CPU about evenly between the two threads (also across batches: `submit`
returns before the last part is committed, and `unsettled_since` tells the exporter
when it is); duplicate event ids are found with one lookup per part rather than one
per event; only five indexes (see `schema.DDL`).
Durability: `synchronous=FULL` makes a committed batch survive a power loss, which the
exporter's cursor relies on (it moves only past batches `unsettled_since` says are
committed). A part whose commit failed is kept and written again first by the next
`submit` or `flush`, so nothing handed over is dropped while the index is open; if the
process ends first, the cursor has not moved past it and it is read from the log again.
"""

from __future__ import annotations

import gc
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import orjson

from kaudit.errors import StoreError
from kaudit.files import open_private_fd
from kaudit.store import migrate, rollups
from kaudit.store.blocks import LineBlocks, MissingLine, Packed
from kaudit.store.schema import (
    DDL,
    SCHEMA_VERSION,
    TERM_KINDS,
    Fields,
    NotAnEvent,
    read_event,
)

log = logging.getLogger("kaudit.store")

_BUSY_TIMEOUT_MS = 30_000
_DELETE_CHUNK = 5_000
FIELD_COLUMNS = (
    "ts, event_type, actor, resource_type, resource_id, result, cluster, event_id, seq, source"
)
"""The events table's columns in the order of `schema.Fields`."""

_INSERT_EVENTS = (
    f"INSERT INTO events (id, {FIELD_COLUMNS}) SELECT ? + key, "
    + ", ".join(f"value ->> {i}" for i in range(len(FIELD_COLUMNS.split(","))))
    + " FROM json_each(?)"
)
"""Rows of consecutive ids from a JSON array of arrays of `FIELD_COLUMNS` (as
`msgspec.json` writes a list of `schema.Fields`)."""

PART_EVENTS = 10000
"""Events per transaction (see `submit`): two parts to the exporter's batch, so one is
decoded while the other commits. 20,000 (one part a batch) took about 5 % less CPU
(half the commits) but left the threads less time to overlap: slower by the clock
(bench/search.py, 1M, quiet machine: 53,000 against 59,000 events/s); 5,000 made twice
the commits and full-text segments to merge, for about 5 % more CPU per event."""


@dataclass
class _Chunk:
    """A batch of decoded events, ready to be written."""

    ids: list[str] = field(default_factory=list)
    rows: list[Fields] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    blocks: list[Packed] = field(default_factory=list)
    derived: _Derived | None = None


@dataclass
class _Derived:
    """What a part's rows and words give to write, made while the part before it is
    being committed (`EventIndex._prepare`), so the time the writer thread waits for the
    next part is only the SQLite statements that must run in order."""

    counts: Counter[rollups.RollupKey]
    terms: list[tuple[str, str]]
    records: str
    """The rows as a JSON array of `FIELD_COLUMNS` arrays (`_INSERT_EVENTS`)."""
    words: str
    """The words of each row, as a JSON array of strings."""


def _derive(rows: list[Fields], texts: list[str]) -> _Derived:
    # Counted in Python: ~150 groups a part; a GROUP BY in SQLite cost four times as
    # much (it sorts the part's rows).
    counts = rollups.counts(rows)
    resources = {(f.resource_type, f.resource_id) for f in rows}
    terms = rollups.terms(counts) | {("resource", f"{t}:{i}") for t, i in resources}
    return _Derived(
        counts,
        sorted(terms),
        msgspec.json.encode(rows).decode(),
        orjson.dumps(texts).decode(),
    )


def _rollback(c: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not done so itself (it does on a
    full disk or an I/O error), so the error raised is the one that happened."""
    if c.in_transaction:
        c.execute("ROLLBACK")


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector held off while a part is decoded.

    Decoding makes a few objects per event that live as long as the part (its fields,
    words and lines), so the collector would run every few hundred events and look at
    the part's objects again each time, for nothing: they hold no cycles. Held off, it
    runs once after the part (about a fifth of `schema.read_event`'s CPU). A caller that
    had disabled the collector keeps it disabled."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@dataclass
class _InFlight:
    """The part being committed on the writer thread (`future`), or whose commit failed
    and is to be written again (`future` None); `since` is when it was handed over."""

    chunk: _Chunk
    future: Future[int] | None
    since: float


def _wrap(path: Path, doing: str, exc: sqlite3.Error) -> StoreError:
    # Locked, disk full, I/O errors pass; a damaged file or a broken constraint does not.
    transient = isinstance(exc, sqlite3.OperationalError)
    return StoreError(f"search index {path}: cannot {doing}: {exc}", retryable=transient)


class EventIndex:
    """One SQLite index file; `readonly` opens an existing one for searching only."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.readonly = readonly
        self.rejected = 0
        """Records that were not audit events (counted, logged, not indexed)."""
        self.added = 0
        """Events newly added (committed) through this object."""
        self._in_flight: _InFlight | None = None
        self._blocks = LineBlocks()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="kaudit-index")
        try:
            if readonly:
                if not self.path.is_file():
                    raise StoreError(
                        f"no search index at {self.path}: add a `store` destination and run "
                        "`kaudit run`, or search the log itself (give its directory)"
                    )
                self.conn = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, isolation_level=None
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Created 0640 here: SQLite gives its -wal and -shm files the same mode.
                os.close(open_private_fd(self.path, os.O_RDWR))
                # The writer thread commits; `add` never uses the connection meanwhile.
                self.conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False
                )
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"search index {self.path}: cannot open: {exc}") from exc
        try:
            self._setup()
        except sqlite3.Error as exc:
            self.conn.close()
            raise _wrap(self.path, "open", exc) from exc
        except StoreError:
            self.conn.close()
            raise

    def _setup(self) -> None:
        c = self.conn
        c.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        c.execute("PRAGMA cache_size = -65536")  # 64 MiB
        if self.readonly:
            version = self._version()
            if version is None:
                raise StoreError(f"{self.path} is not a kaudit search index")
            if version in migrate.UPGRADABLE:
                # Upgraded by a writable connection of its own; this one reads on.
                try:
                    EventIndex(self.path).close()
                except StoreError as exc:
                    raise StoreError(
                        f"search index {self.path} was made by an earlier kaudit (schema "
                        f"version {version}) and is upgraded once when opened, which needs "
                        f"write access to it and its directory: {exc}",
                        retryable=exc.retryable,
                    ) from exc
                version = self._version()
        else:
            # Set before the first table is made (a file keeps the size it was made
            # with): 16 KiB pages make the six B-trees shallower and split less often,
            # about a tenth faster to fill than the default 4 KiB (bench/search.py).
            c.execute("PRAGMA page_size = 16384")
            c.execute("PRAGMA journal_mode = WAL")
            c.execute("PRAGMA synchronous = FULL")
            # Checkpoint the WAL into the file every ~40 MiB rather than every 4 MiB:
            # fewer, larger copies (and fsyncs) while the exporter catches up.
            c.execute("PRAGMA wal_autocheckpoint = 10000")
            version = self._version()
            if version is None:
                c.executescript(DDL + rollups.ROLLUPS_DDL)
                c.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                version = SCHEMA_VERSION
            elif version in migrate.UPGRADABLE:
                migrate.upgrade(c, self.path, self._blocks.decompress)
                version = self._version()
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"search index {self.path} has schema version {version}, this kaudit reads "
                f"version {SCHEMA_VERSION}: remove the file and let the store destination "
                "rebuild it from the log"
            )

    def _version(self) -> int | None:
        try:
            row = self.conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
        except sqlite3.OperationalError:
            return None  # no meta table: a new file (or not ours)
        return int(row[0]) if row else None

    # -- writing ---------------------------------------------------------------------------

    def add(self, lines: Sequence[bytes]) -> int:
        """Index native event lines; the number newly added. Every event is committed
        when this returns (`submit` and `flush`)."""
        before = self.added
        self.submit(lines)
        self.flush()
        return self.added - before

    def submit(self, lines: Sequence[bytes]) -> None:
        """Hand native event lines over to be indexed; the last part may still be
        committing when this returns (`unsettled_since`, `flush`).

        An event whose `event_id` is already indexed (a redelivery) is skipped; a record
        that is not an audit event is counted in `rejected` and logged.

        The lines are added in parts of `PART_EVENTS`, one transaction each, and each
        part is decoded while the previous one commits on the writer thread: SQLite
        runs a commit (the full-text segment, the WAL) without holding Python's lock,
        so on a machine with a free core the two overlap.
        """
        if self.readonly:
            raise StoreError(f"search index {self.path} was opened read-only")
        try:
            flight = self._in_flight
            if flight is not None and flight.future is None:
                self._settle()  # a part whose commit failed goes first
            # A part still committing is waited for only once the next one is decoded.
            for at in range(0, len(lines), PART_EVENTS):
                with _collector_paused():
                    chunk = self._prepare(lines[at : at + PART_EVENTS])
                self._settle()
                if chunk.rows:
                    # In flight before it is written, so a part that cannot be written
                    # is kept too.
                    flight = self._in_flight = _InFlight(chunk, None, time.monotonic())
                    flight.future = self._write_chunk(chunk)
        except sqlite3.Error as exc:
            raise _wrap(self.path, "add events", exc) from exc

    def flush(self) -> None:
        """Wait until everything handed over is committed (writing a part whose commit
        failed again); StoreError when it cannot be."""
        try:
            self._settle()
        except sqlite3.Error as exc:
            raise _wrap(self.path, "add events", exc) from exc

    def unsettled_since(self) -> float | None:
        """When the oldest part not yet committed was handed over (`time.monotonic()`),
        or None when every event handed over is committed."""
        flight = self._in_flight
        future = flight.future if flight is not None else None
        if future is not None and future.done() and future.exception() is None:
            self.added += future.result()
            self._in_flight = None
        return None if self._in_flight is None else self._in_flight.since

    def _settle(self) -> None:
        """Wait for the part in flight to be committed, writing it again first if its
        commit failed. Raises the commit's sqlite3.Error (the part stays in flight)."""
        flight = self._in_flight
        if flight is None:
            return
        if flight.future is None:
            flight.future = self._write_chunk(flight.chunk)
        try:
            count = flight.future.result()
        except sqlite3.Error:
            flight.future = None  # kept, to be written again
            raise
        self.added += count
        self._in_flight = None

    def _prepare(self, lines: Sequence[bytes]) -> _Chunk:
        chunk = _Chunk()
        seen: set[str] = set()
        for line in lines:
            try:
                f, text = read_event(line)
            except NotAnEvent as exc:
                self.rejected += 1
                log.error("search index %s: skipped a record: %s", self.path, exc)
                continue
            if f.event_id in seen:
                continue
            seen.add(f.event_id)
            chunk.ids.append(f.event_id)
            chunk.rows.append(f)
            chunk.lines.append(line.rstrip(b"\n"))
            chunk.texts.append(text)
        if chunk.rows:
            chunk.blocks = self._blocks.pack(chunk.lines, chunk.rows)
            chunk.derived = _derive(chunk.rows, chunk.texts)
        return chunk

    def _write_chunk(self, chunk: _Chunk) -> Future[int]:
        """Begin a transaction, add the lines, counts and terms of `chunk`, and leave the
        event rows, the words and the commit to the writer thread: its future gives the
        number added."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            known = {
                r[0]
                for r in c.execute(
                    "SELECT event_id FROM events WHERE event_id IN "
                    "(SELECT value FROM json_each(?))",
                    (orjson.dumps(chunk.ids).decode(),),
                )
            }
            rows, blocks, derived = chunk.rows, chunk.blocks, chunk.derived
            if known or derived is None:
                keep = [i for i, eid in enumerate(chunk.ids) if eid not in known]
                rows = [rows[i] for i in keep]
                blocks = self._blocks.pack([chunk.lines[i] for i in keep], rows)
                derived = _derive(rows, [chunk.texts[i] for i in keep])
            first = (c.execute("SELECT max(id) FROM events").fetchone()[0] or 0) + 1
            self._blocks.insert(c, first, blocks)
            rollups.add(c, derived.counts)
            c.executemany("INSERT OR IGNORE INTO terms VALUES (?, ?)", derived.terms)
        except BaseException:
            _rollback(c)
            raise
        return self._writer.submit(
            self._commit_rows, first, derived.records, derived.words, len(rows)
        )

    def _commit_rows(self, first: int, records: str, words: str, count: int) -> int:
        """On the writer thread: the event rows and the full-text rows of ids `first`...,
        and the commit. One statement each, so SQLite does all of it without taking
        Python's lock: `executemany` takes it back for every row, and waits for it while
        the next part is decoded. The rows come as one JSON array of `FIELD_COLUMNS`
        arrays, which costs SQLite a little more to read than bound values."""
        c = self.conn
        try:
            c.execute(_INSERT_EVENTS, (first, records))
            c.execute(
                "INSERT INTO events_text (rowid, words) SELECT ? + key, value FROM json_each(?)",
                (first, words),
            )
            c.execute("COMMIT")
        except BaseException:
            _rollback(c)
            raise
        return count

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            _rollback(c)
            raise
        c.execute("COMMIT")

    def delete_before(self, cutoff_ms: int) -> int:
        """Remove every event with a timestamp before `cutoff_ms`; the number removed.

        Works in chunks of a few thousand rows, each its own transaction, so searches and
        the exporter are not held up by a large removal. A block of lines goes when none
        of its events is left.
        """
        removed = 0
        self.flush()
        try:
            while True:
                with self._transaction() as c:
                    found = c.execute(
                        f"SELECT id, {FIELD_COLUMNS} FROM events WHERE ts < ? LIMIT ?",
                        (cutoff_ms, _DELETE_CHUNK),
                    ).fetchall()
                    if not found:
                        break
                    ids = [r[0] for r in found]
                    rollups.subtract(c, [Fields(*r[1:]) for r in found])
                    lines, blocks = self._lines(ids)
                    # A contentless full-text table forgets a row when given its words.
                    c.executemany(
                        "INSERT INTO events_text (events_text, rowid, words) "
                        "VALUES ('delete', ?, ?)",
                        [(i, read_event(lines[i])[1]) for i in ids],
                    )
                    c.executemany("DELETE FROM events WHERE id = ?", [(i,) for i in ids])
                    c.executemany(
                        "DELETE FROM blocks WHERE first_id = ? AND NOT EXISTS "
                        "(SELECT 1 FROM events WHERE id >= ? AND id < ?)",
                        [(b, b, b + n) for b, n in blocks],
                    )
                removed += len(ids)
            if removed:
                with self._transaction() as c:
                    self._forget_unused_terms(c)
        except sqlite3.Error as exc:
            raise _wrap(self.path, "remove old events", exc) from exc
        return removed

    def _forget_unused_terms(self, c: sqlite3.Connection) -> None:
        columns = {
            "type": "event_type",
            "actor": "actor",
            "cluster": "cluster",
            "source": "source",
            "resource": "resource_type || ':' || resource_id",
        }
        for kind in TERM_KINDS:
            c.execute(
                f"DELETE FROM terms WHERE kind = ? AND value NOT IN "
                f"(SELECT DISTINCT {columns[kind]} FROM events WHERE {columns[kind]} "
                "IS NOT NULL)",
                (kind,),
            )

    # -- reading ---------------------------------------------------------------------------

    def terms(self, kind: str) -> list[str]:
        """The distinct values of one filtered column (`TERM_KINDS`)."""
        self.flush()
        return [r[0] for r in self.conn.execute("SELECT value FROM terms WHERE kind = ?", (kind,))]

    def lines(self, ids: Sequence[int]) -> dict[int, bytes]:
        """The native lines of the events with these row ids."""
        self.flush()
        try:
            return self._lines(ids)[0]
        except sqlite3.Error as exc:
            raise _wrap(self.path, "read events", exc) from exc

    def _lines(self, ids: Sequence[int]) -> tuple[dict[int, bytes], list[tuple[int, int]]]:
        """The lines of `ids`, and the blocks (first id, count) they were read from."""
        try:
            return self._blocks.read(self.conn, ids)
        except MissingLine as exc:
            raise StoreError(f"search index {self.path}: event row {exc} has no line") from None

    def count(self) -> int:
        self.flush()
        return int(self.conn.execute("SELECT count(*) FROM events").fetchone()[0])

    def optimize(self) -> None:
        """Refresh the query planner's statistics (cheap; worth it after a bulk load)."""
        self.flush()
        try:
            self.conn.execute("PRAGMA analysis_limit = 1000")
            self.conn.execute("ANALYZE")
        except sqlite3.Error as exc:
            raise _wrap(self.path, "analyze", exc) from exc

    def close(self) -> None:
        if not self.readonly:
            try:
                self.flush()
            except StoreError as exc:
                # The exporter's cursor has not moved past these events: they are read
                # from the log and indexed again at the next start.
                log.error("%s", exc)
            try:
                self.conn.execute("PRAGMA optimize")
            except sqlite3.Error:
                log.warning("search index %s: could not refresh statistics", self.path)
        self._writer.shutdown()
        self.conn.close()

    def __enter__(self) -> EventIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
