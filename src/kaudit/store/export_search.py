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
counted once, at its first place in log order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
from kaudit.exporters.parquet import PARQUET_KEY
from kaudit.exporters.parquet_format import TIME_TYPE
from kaudit.store.query import Filter, Hit, check_group_keys
from kaudit.store.schema import MS_PER_DAY, NotAnEvent, day_name, read_event

_KEY_COLUMNS = [
    "time",
    "event_type",
    "actor_id",
    "resource_type",
    "resource_id",
    "action_result",
    "context_cluster_id",
    "event_id",
]


@dataclass(frozen=True, slots=True)
class _File:
    path: str
    day: str
    first: int


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
                files.append(_File(info.path, match.group(1), int(match.group(3))))
        # Log order: by first sequence number (one stream) and day.
        self.files = sorted(files, key=lambda f: (f.first, f.day, f.path))

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

    def _pushed(self, flt: Filter) -> pc.Expression | None:
        """The conditions row-group statistics can answer: time and result."""
        conditions = []
        if flt.since_ms is not None:
            conditions.append(pc.field("time") >= pa.scalar(flt.since_ms * 1000, TIME_TYPE))
        if flt.until_ms is not None:
            conditions.append(pc.field("time") < pa.scalar(flt.until_ms * 1000, TIME_TYPE))
        if flt.result is not None:
            conditions.append(pc.field("action_result") == flt.result)
        if not conditions:
            return None
        expression = conditions[0]
        for condition in conditions[1:]:
            expression = expression & condition
        return expression

    def _matching(self, flt: Filter) -> pa.Table:
        """The matching rows (key columns, `ts` in ms, `pos` in log order, the file's
        number), each event once, at its first place."""
        pushed = self._pushed(flt)
        predicates = flt.term_predicates()
        tables = []
        for number, file in self._files(flt):
            table = self._read(file, _KEY_COLUMNS, pushed)
            table = table.append_column(
                "pos", pa.array(range(table.num_rows), pa.int64())
            ).append_column("file", pa.array([number] * table.num_rows, pa.int64()))
            mask = None
            for kind, predicate in predicates.items():
                column = _term_column(table, kind)
                values = [v for v in pc.unique(column).to_pylist() if v and predicate(v)]
                selected = pc.is_in(column, value_set=pa.array(values, pa.string()))
                mask = selected if mask is None else pc.and_(mask, selected)
            if mask is not None:
                table = table.filter(mask)
            if flt.text is not None and table.num_rows:
                table = table.filter(self._text_mask(file, pushed, table, flt))
            tables.append(table)
        if not tables:
            return pa.table({"event_id": pa.array([], pa.string())})
        found = pa.concat_tables(tables)
        found = found.append_column(
            "order", pc.add(pc.multiply(found.column("file"), 1 << 40), found.column("pos"))
        )
        firsts = found.group_by("event_id").aggregate([("order", "min")])
        found = found.filter(pc.is_in(found.column("order"), value_set=firsts.column("order_min")))
        ts = pc.divide(found.column("time").cast(pa.int64()), 1000)
        return found.append_column("ts", ts)

    def _read(self, file: _File, columns: list[str], pushed: pc.Expression | None) -> pa.Table:
        try:
            return pq.read_table(
                file.path, columns=columns, filters=pushed, filesystem=self.filesystem
            )
        except (OSError, pa.ArrowException) as exc:
            raise SearchError(f"cannot read {file.path}: {exc}") from exc

    def _text_mask(
        self, file: _File, pushed: pc.Expression | None, rows: pa.Table, flt: Filter
    ) -> pa.Array:
        events = self._read(file, ["event"], pushed).column("event")
        lines = pc.take(events, rows.column("pos")).to_pylist()
        text = flt.text
        assert text is not None
        keep = []
        for line in lines:
            try:
                keep.append(text.matches(read_event(line.encode())[1]))
            except NotAnEvent:
                keep.append(False)
        return pa.array(keep, pa.bool_())

    # ------------------------------------------------------------------ answers

    def search(self, flt: Filter, limit: int | None) -> list[Hit]:
        found = self._matching(flt)
        if not found.num_rows:
            return []
        keys = [("ts", "descending"), ("order", "descending")]
        if limit is None or limit >= found.num_rows:
            best = found.sort_by(keys)
        else:
            best = found.take(pc.select_k_unstable(found, k=limit, sort_keys=keys))
        lines = self._lines(best, flt)
        hits = []
        for file, pos in zip(
            best.column("file").to_pylist(), best.column("pos").to_pylist(), strict=True
        ):
            line = lines[file, pos]
            hits.append(Hit(read_event(line)[0], line))
        return hits

    def _lines(self, rows: pa.Table, flt: Filter) -> dict[tuple[int, int], bytes]:
        """The native lines of `rows`, by (file number, position in the filtered file)."""
        pushed = self._pushed(flt)
        out: dict[tuple[int, int], bytes] = {}
        wanted: dict[int, list[int]] = {}
        for file, pos in zip(
            rows.column("file").to_pylist(), rows.column("pos").to_pylist(), strict=True
        ):
            wanted.setdefault(file, []).append(pos)
        for file, positions in wanted.items():
            events = self._read(self.files[file], ["event"], pushed).column("event")
            taken = pc.take(events, pa.array(positions, pa.int64())).to_pylist()
            for pos, line in zip(positions, taken, strict=True):
                out[file, pos] = line.encode()
        return out

    def count_by(self, flt: Filter, keys: Sequence[str]) -> list[tuple[tuple[Any, ...], int]]:
        check_group_keys(keys)
        found = self._matching(flt)
        if not found.num_rows:
            return []
        columns = {f"k{i}": _group_column(found, key) for i, key in enumerate(keys)}
        grouped = pa.table(columns).group_by(list(columns)).aggregate([([], "count_all")])
        counts = [
            (tuple(row[f"k{i}"] for i in range(len(keys))), int(row["count_all"]))
            for row in grouped.to_pylist()
        ]
        # Largest count first, then by key (None last), as the other searches list them.
        return sorted(
            counts, key=lambda kc: (-kc[1], [(k is None, "" if k is None else k) for k in kc[0]])
        )

    def close(self) -> None:
        pass


def _term_column(table: pa.Table, kind: str) -> pa.ChunkedArray:
    if kind == "type":
        return table.column("event_type")
    if kind == "actor":
        return table.column("actor_id")
    if kind == "cluster":
        return table.column("context_cluster_id")
    return pc.binary_join_element_wise(
        table.column("resource_type"), table.column("resource_id"), ":"
    )


def _group_column(table: pa.Table, key: str) -> pa.ChunkedArray:
    if key == "category":
        return pc.list_element(pc.split_pattern(table.column("event_type"), ".", max_splits=1), 0)
    if key == "result":
        return table.column("action_result")
    if key == "day":
        return pc.divide(table.column("ts"), MS_PER_DAY)
    return _term_column(table, key)
