"""`kaudit search` over a Parquet export: `s3://bucket/prefix` or a local folder of the
files the `file` and `s3` destinations write with `encoding: parquet`.

It answers the filters of store/query.py with the same matches as the index and the
scan, without indexing anything: months of audit data can be searched where they lie.
Each file is read with pyarrow, first only the columns the filter and the order need
(time and result are pushed down to the row-group statistics, files of days outside the
time range are not opened), then the `event` column of the rows found, which is the
native line the other searches print. Globs on type, actor, resource and cluster are
turned into the list of distinct values they match with the very predicates of the
index (`Filter.term_predicates`), and free text is matched on the line as the scan
matches it (`schema.read_event`). An event exported twice (at-least-once delivery) is
counted once, at its first place in log order. A search for the newest N reads the
newest days first and stops at the files all older than the N-th newest match.
"""

from __future__ import annotations

import bisect
import itertools
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pa_fs
import pyarrow.parquet as pq

from kaudit.config import Config
from kaudit.config.model import AwsAccess, S3Destination
from kaudit.config.secrets import reveal
from kaudit.errors import SearchError
from kaudit.exporters.parquet import INCREASING_KEY, PARQUET_KEY
from kaudit.exporters.parquet_format import EPOCH_DAY, TIME_TYPE, US_PER_DAY
from kaudit.store.query import Filter, Hit, check_group_keys
from kaudit.store.schema import MS_PER_DAY, NotAnEvent, day_name, read_event

_TERMS = {
    "type": ("event_type",),
    "actor": ("actor_id",),
    "resource": ("resource_type", "resource_id"),
    "cluster": ("context_cluster_id",),
    "source": ("context_source",),
}
_GROUPS = {
    **_TERMS,
    "category": ("event_type",),
    "result": ("action_result",),
    "day": (),
    "hour": (),
}
_MS_PER_HOUR = 3_600_000
_DICTIONARY = [
    "event_type",
    "actor_id",
    "resource_type",
    "resource_id",
    "action_result",
    "context_cluster_id",
    "context_source",
]
"""Columns of few distinct values, read as dictionaries: filtered and grouped by their
distinct values, never turned into one string per row."""
_FILE_BITS = 40
"""`order` is the file's number above these bits and the row's position below them."""


@dataclass(frozen=True, slots=True)
class _File:
    path: str
    day: str
    first: int
    last: int


def _s3(url: str, config: Config) -> tuple[pa_fs.FileSystem, str]:
    """The filesystem and base path of an s3://bucket/prefix SOURCE: the endpoint and
    credentials of the configured s3 destination for the bucket, else of the environment
    ($AWS_ENDPOINT_URL, the AWS credential chain)."""
    parsed = urlsplit(url)
    if not parsed.netloc:
        raise SearchError(f"{url!r} is not an S3 location; accepted: s3://bucket/prefix")
    bucket, prefix = parsed.netloc, unquote(parsed.path.lstrip("/"))
    destination = next(
        (
            d
            for d in config.audit.all_destinations
            if isinstance(d, S3Destination) and d.bucket == bucket
        ),
        None,
    )
    access = (
        AwsAccess.model_validate(destination.model_dump(include=set(AwsAccess.model_fields)))
        if destination is not None
        else AwsAccess(endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
    )
    region = access.region or os.environ.get("AWS_REGION") or "us-east-1"
    options: dict[str, Any] = {"region": region}
    if access.access_key_id:
        options["access_key"] = access.access_key_id
        options["secret_key"] = reveal(access.secret_access_key)
        if access.session_token is not None:
            options["session_token"] = reveal(access.session_token)
    if access.endpoint_url:
        endpoint = urlsplit(access.endpoint_url)
        options["endpoint_override"] = endpoint.netloc or access.endpoint_url
        options["scheme"] = endpoint.scheme or "https"
    return pa_fs.S3FileSystem(**options), f"{bucket}/{prefix}".rstrip("/")


class ExportSearch:
    """Searches the Parquet files under one folder or S3 prefix."""

    def __init__(self, filesystem: pa_fs.FileSystem, base: str, description: str) -> None:
        self.filesystem = filesystem
        self.description = description
        try:
            infos = filesystem.get_file_info(pa_fs.FileSelector(base, recursive=True))
        except (OSError, pa.ArrowException) as exc:
            raise SearchError(f"cannot list {description}: {exc}") from exc
        files = []
        for info in infos:
            match = PARQUET_KEY.fullmatch(info.path[len(base) :])
            if match is not None:
                first, last = int(match.group(3)), int(match.group(4))
                files.append(_File(info.path, match.group(1), first, last))
        # Log order: by sequence range (one stream), then day.
        self.files = sorted(files, key=lambda f: (f.first, f.last, f.day, f.path))
        self._opened: dict[str, pq.ParquetFile] = {}
        self._overlap = any(b.first <= a.last for a, b in itertools.pairwise(self.files))
        """Whether two files claim a sequence number: an event may be in both."""

    @classmethod
    def open(cls, source: str, config: Config) -> ExportSearch:
        if source.startswith("s3://"):
            filesystem, base = _s3(source, config)
            return cls(filesystem, base, f"Parquet export {source}")
        path = Path(source).expanduser().resolve()
        return cls(pa_fs.LocalFileSystem(), str(path), f"Parquet export {path}")

    # ------------------------------------------------------------------ matching

    def _files(self, flt: Filter) -> Iterator[tuple[int, _File]]:
        since = day_name(flt.since_ms // MS_PER_DAY) if flt.since_ms is not None else None
        until = day_name((flt.until_ms - 1) // MS_PER_DAY) if flt.until_ms is not None else None
        for number, file in enumerate(self.files):
            if (since is None or file.day >= since) and (until is None or file.day <= until):
                yield number, file

    def _open(self, file: _File) -> pq.ParquetFile:
        """The file, opened once per search (its footer read once)."""
        opened = self._opened.get(file.path)
        if opened is not None:
            return opened
        try:
            opened = pq.ParquetFile(
                self.filesystem.open_input_file(file.path), read_dictionary=_DICTIONARY
            )
        except (OSError, pa.ArrowException) as exc:
            raise SearchError(f"cannot read {file.path}: {exc}") from exc
        self._opened[file.path] = opened
        return opened

    def _read(self, pf: pq.ParquetFile, file: _File, columns: list[str]) -> pa.Table:
        try:
            return pf.read(columns=columns)
        except (OSError, pa.ArrowException) as exc:
            raise SearchError(f"cannot read {file.path}: {exc}") from exc

    def _matching(
        self, flt: Filter, group_keys: Sequence[str] = (), newest: int | None = None
    ) -> pa.Table:
        """The matching rows: `ts` (ms), `order` (file and position: log order), the
        columns `group_keys` need; each event once, at its first place. With `newest`,
        at least the `newest` newest of them (all rows of their times), not all: files
        are read newest day first, and once that many are found, a file whose times are
        all older (its day, else its row groups' statistics say so) is not read."""
        self._opened.clear()  # a new search sees files as they are now
        predicates = flt.term_predicates()
        columns = {"time"}
        columns.update(c for kind in predicates for c in _TERMS[kind])
        columns.update(c for key in group_keys for c in _GROUPS[key])
        if flt.result is not None:
            columns.add("action_result")
        tables = []
        files = list(self._files(flt))
        # With files that overlap, an event's first place may be in any of them.
        pruning = newest is not None and not self._overlap
        if pruning:
            files.sort(key=lambda item: (item[1].day, item[0]), reverse=True)
        floor_us: int | None = None
        """No row older than this (microseconds) can be among the newest."""
        for number, file in files:
            if floor_us is not None and _day_end_us(file.day) <= floor_us:
                break  # this day and every one after it in `files` are older
            pf = self._open(file)
            if floor_us is not None and (_max_time_us(pf) or floor_us) < floor_us:
                continue
            wanted_columns = sorted(columns)
            if not _says_increasing(pf):
                wanted_columns.append("sequence_number")
            table = self._read(pf, file, wanted_columns)
            mask = _mask(table, flt, predicates)
            positions = pc.indices_nonzero(mask).cast(pa.int64())
            wanted = ["time", *sorted({c for key in group_keys for c in _GROUPS[key]})]
            rows = table.select(wanted).filter(mask)
            if flt.text is not None and rows.num_rows:
                keep = [
                    _has_words(line, flt) for line in self._events(pf, file, positions.to_pylist())
                ]
                positions = positions.filter(pa.array(keep, pa.bool_()))
                rows = rows.filter(pa.array(keep, pa.bool_()))
            order = pc.add(positions, number << _FILE_BITS)
            rows = rows.append_column("order", order)
            in_order = _increasing(pf, table)
            if self._overlap or not in_order:
                # The same event may be here twice (or in another file): its id says so.
                ids = self._read(pf, file, ["event_id"]).column("event_id")
                rows = rows.append_column("event_id", pc.take(ids, positions))
                if not self._overlap:
                    rows = _first_of_each(rows).drop_columns(["event_id"])
            tables.append(rows)
            if pruning and newest and sum(t.num_rows for t in tables) >= newest:
                tables, floor_us = _newest_rows(tables, newest)
        if not tables:
            return pa.table({"ts": pa.array([], pa.int64()), "order": pa.array([], pa.int64())})
        found = pa.concat_tables(tables)
        if self._overlap:
            found = _first_of_each(found)
        ts = pc.divide(found.column("time").cast(pa.int64()), 1000)
        return found.append_column("ts", ts)

    def _events(self, pf: pq.ParquetFile, file: _File, positions: list[int]) -> list[bytes]:
        """The native lines at `positions` of a file, reading only their row groups."""
        starts = [0]
        for index in range(pf.metadata.num_row_groups):
            starts.append(starts[-1] + pf.metadata.row_group(index).num_rows)
        out: list[bytes] = []
        group, events = -1, None
        for pos in positions:
            if group < 0 or not starts[group] <= pos < starts[group + 1]:
                group = bisect.bisect_right(starts, pos) - 1
                try:
                    events = pf.read_row_group(group, columns=["event"]).column("event")
                except (OSError, pa.ArrowException) as exc:
                    raise SearchError(f"cannot read {file.path}: {exc}") from exc
            assert events is not None
            out.append(events[pos - starts[group]].as_py().encode())
        return out

    # ------------------------------------------------------------------ answers

    def search(self, flt: Filter, limit: int | None) -> list[Hit]:
        found = self._matching(flt, newest=limit)
        if not found.num_rows:
            return []
        keys = [("ts", "descending"), ("order", "descending")]
        if limit is not None and limit < found.num_rows:
            # The newest `limit` times first (one key: fast), then all rows of those times.
            ts = found.column("ts").combine_chunks()
            newest = pc.take(ts, pc.select_k_unstable(ts, k=limit, sort_keys=[("", "descending")]))
            found = found.filter(pc.greater_equal(found.column("ts"), pc.min(newest)))
        best = found.select(["ts", "order"]).sort_by(keys)
        if limit is not None:
            best = best.slice(0, limit)
        orders = best.column("order").to_pylist()
        wanted: dict[int, list[int]] = {}
        for order in orders:
            wanted.setdefault(order >> _FILE_BITS, []).append(order & ((1 << _FILE_BITS) - 1))
        lines: dict[int, bytes] = {}
        for number, positions in wanted.items():
            file = self.files[number]
            ordered = sorted(positions)
            for pos, line in zip(
                ordered, self._events(self._open(file), file, ordered), strict=True
            ):
                lines[(number << _FILE_BITS) + pos] = line
        return [Hit(read_event(lines[order])[0], lines[order]) for order in orders]

    def count_by(self, flt: Filter, keys: Sequence[str]) -> list[tuple[tuple[Any, ...], int]]:
        check_group_keys(keys)
        found = self._matching(flt, keys)
        if not found.num_rows:
            return []
        columns = sorted({c for key in keys for c in _GROUPS[key]})
        for key, ms in (("day", MS_PER_DAY), ("hour", _MS_PER_HOUR)):
            if key in keys:
                found = found.append_column(key, pc.divide(found.column("ts"), ms))
                columns.append(key)
        grouped = (
            found.unify_dictionaries()
            .group_by(columns, use_threads=False)
            .aggregate([([], "count_all")])
        )
        counts: Counter[tuple[Any, ...]] = Counter()
        for row in grouped.to_pylist():
            counts[tuple(_group_value(row, key) for key in keys)] += row["count_all"]
        # Largest count first, then by key (None last), as the other searches list them.
        return sorted(
            counts.items(),
            key=lambda kc: (-kc[1], [(k is None, "" if k is None else k) for k in kc[0]]),
        )

    def close(self) -> None:
        self._opened.clear()


def _mask(table: pa.Table, flt: Filter, predicates: dict[str, Any]) -> pa.ChunkedArray:
    """Which rows of `table` match every condition but the free text."""
    mask = pc.is_valid(table.column("time"))
    if flt.since_ms is not None:
        mask = pc.and_(mask, pc.greater_equal(table.column("time"), _time(flt.since_ms)))
    if flt.until_ms is not None:
        mask = pc.and_(mask, pc.less(table.column("time"), _time(flt.until_ms)))
    if flt.result is not None:
        mask = pc.and_(mask, pc.equal(table.column("action_result"), flt.result))
    for kind, predicate in predicates.items():
        if kind == "resource":
            matched = _resource_mask(table, predicate)
        else:
            column = table.column(_TERMS[kind][0])
            values = [v for v in pc.unique(column).to_pylist() if v and predicate(v)]
            matched = _is_in(column, values)
        mask = pc.and_(mask, matched)
    return mask


def _resource_mask(table: pa.Table, predicate: Any) -> pa.ChunkedArray:
    """`type:id` matched by pairs of distinct types and ids (not one string per row)."""
    types, ids = table.column("resource_type"), table.column("resource_id")
    distinct_ids = [v for v in pc.unique(ids).to_pylist() if v is not None]
    mask = pc.equal(pc.is_valid(types), False)
    for kind in pc.unique(types).to_pylist():
        if kind is None:
            continue
        wanted = [v for v in distinct_ids if predicate(f"{kind}:{v}")]
        if wanted:
            ours = pc.and_(_is_in(types, [kind]), _is_in(ids, wanted))
            mask = pc.or_(mask, ours)
    return mask


def _is_in(column: pa.ChunkedArray, values: list[str]) -> pa.ChunkedArray:
    """Which rows of a dictionary column hold one of `values`: decided once per distinct
    value, not per row."""
    wanted = pa.array(values, pa.string())
    chunks = []
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            chunk_mask = pc.take(pc.is_in(chunk.dictionary, value_set=wanted), chunk.indices)
            chunks.append(pc.fill_null(chunk_mask, False))
        else:
            chunks.append(pc.is_in(chunk, value_set=wanted))
    return pa.chunked_array(chunks, pa.bool_())


def _says_increasing(pf: pq.ParquetFile) -> bool:
    return bool((pf.metadata.metadata or {}).get(INCREASING_KEY.encode()) == b"true")


def _increasing(pf: pq.ParquetFile, table: pa.Table) -> bool:
    """Whether no event is twice in the file: its exporter says so, or its sequence
    numbers (read when it does not) go up from row to row."""
    if _says_increasing(pf):
        return True
    seqs = table.column("sequence_number")
    return not seqs.null_count and (
        len(seqs) < 2 or bool(pc.all(pc.greater(seqs[1:], seqs[:-1])).as_py())
    )


def _first_of_each(rows: pa.Table) -> pa.Table:
    """Each event id once: the row of it that comes first in log order."""
    firsts = rows.group_by("event_id", use_threads=False).aggregate([("order", "min")])
    return rows.filter(pc.is_in(rows.column("order"), value_set=firsts["order_min"]))


def _newest_rows(tables: list[pa.Table], newest: int) -> tuple[list[pa.Table], int]:
    """The rows of `tables` that may be among the `newest` newest (by `ts`, in ms, as the
    search orders them: all rows of the newest-th time are kept), and the time in
    microseconds below which no row can be."""
    times = pa.chunked_array([t.column("time").cast(pa.int64()) for t in tables], pa.int64())
    kth = pc.min(pc.take(times, pc.select_k_unstable(times, newest, [("", "descending")])))
    ms = pc.divide(kth, 1000).as_py()  # truncated, as `ts`
    # The first microsecond whose time in ms (truncated toward zero) can be `ms`.
    floor_us = ms * 1000 - 999
    kept = [t.filter(pc.greater_equal(t.column("time").cast(pa.int64()), floor_us)) for t in tables]
    return [t for t in kept if t.num_rows], floor_us


def _day_end_us(day: str) -> int:
    """The first microsecond after UTC day `day` (YYYY-MM-DD)."""
    return (date.fromisoformat(day) - EPOCH_DAY).days * US_PER_DAY + US_PER_DAY


def _max_time_us(pf: pq.ParquetFile) -> int | None:
    """The newest `time` of a file by its row groups' statistics; None when it has none."""
    if pf.schema_arrow.field("time").type != TIME_TYPE:
        return None
    metadata = pf.metadata
    leaf = next(
        (i for i in range(metadata.num_columns) if metadata.schema.column(i).path == "time"), None
    )
    if leaf is None or not metadata.num_row_groups:
        return None
    newest = None
    for group in range(metadata.num_row_groups):
        statistics = metadata.row_group(group).column(leaf).statistics
        if statistics is None or not statistics.has_min_max:
            return None
        value = int(statistics.max_raw)
        newest = value if newest is None else max(newest, value)
    return newest


def _time(ms: int) -> pa.Scalar:
    return pa.scalar(ms * 1000, TIME_TYPE)


def _has_words(line: bytes, flt: Filter) -> bool:
    assert flt.text is not None
    try:
        return flt.text.matches(read_event(line)[1])
    except NotAnEvent:
        return False


def _group_value(row: dict[str, Any], key: str) -> Any:
    if key == "type":
        return row["event_type"]
    if key == "category":
        return row["event_type"].partition(".")[0]
    if key == "actor":
        return row["actor_id"]
    if key == "resource":
        return f"{row['resource_type']}:{row['resource_id']}"
    if key == "result":
        return row["action_result"]
    if key == "cluster":
        return row["context_cluster_id"]
    if key == "source":
        return row["context_source"]
    return row[key]  # day or hour
