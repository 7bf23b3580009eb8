"""The footer of an exported Parquet file checked against its rows, for `kaudit verify`.

Query engines (Athena, Trino, Spark, DuckDB, pyarrow) skip row groups by the statistics
in a file's footer, and follow what else the footer points to (page indexes, bloom
filters, column chunks in other files), without reading the rows. None of that is in
the `event` column the integrity checks cover (parquet_format.check_columns checks the
rows), so a footer changed by hand would hide events from an engine's queries while the
rows still verify. A file therefore verifies only when its footer says what its rows say:

- each row group's statistics (min, max, null count, value count, distinct count) are
  recomputed from its decoded rows, on every column that has them; nested columns
  (lists) have none, as kaudit writes none;
- no page index, bloom filter, geospatial statistics, sort order or column chunk in
  another file, which kaudit never writes;
- the Parquet schema is kaudit's, and the key-value metadata holds only the Arrow schema
  and kaudit's own key, whose claim (each sequence number above the one before) holds.
"""

from __future__ import annotations

import io
from functools import cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kaudit.exporters.parquet import INCREASING_KEY
from kaudit.exporters.parquet_format import SCHEMA, WRITE_OPTIONS

_ARROW_SCHEMA_KEY = b"ARROW:schema"


@cache
def _kaudit_schema() -> pq.ParquetSchema:
    """The Parquet schema kaudit writes its files with."""
    out = io.BytesIO()
    with pq.ParquetWriter(out, SCHEMA, **WRITE_OPTIONS):
        pass
    return pq.ParquetFile(io.BytesIO(out.getvalue())).schema


def footer_problem(data: bytes) -> str | None:
    """None when the footer of the Parquet file `data` (whose rows are already checked)
    is what kaudit writes and its statistics are those of its rows; else what differs."""
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        metadata = parquet.metadata
        if not parquet.schema.equals(_kaudit_schema()):
            return "the Parquet schema in its footer is not kaudit's"
        problem = _key_values(metadata.metadata or {})
        if problem is not None:
            return problem
        flat = set(SCHEMA.names)
        with_statistics = sorted(
            {
                chunk.path_in_schema
                for group in range(metadata.num_row_groups)
                for chunk in _chunks(metadata.row_group(group))
                if chunk.is_stats_set and chunk.path_in_schema in flat
            }
        )
        increasing = INCREASING_KEY.encode() in (metadata.metadata or {})
        columns = with_statistics + (["sequence_number"] if increasing else [])
        table = parquet.read(columns=sorted(set(columns)))
    except (pa.ArrowException, OSError) as exc:
        return f"its footer cannot be read: {exc}"
    if increasing:
        seqs = table.column("sequence_number")
        rising = len(seqs) < 2 or pc.all(pc.greater(seqs[1:], seqs[:-1])).as_py()
        if seqs.null_count or not rising:
            return (
                f"its footer's {INCREASING_KEY} says each sequence number is above the one "
                "before, and they are not"
            )
    offset = 0
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        problem = _row_group_problem(row_group, table, offset)
        if problem is not None:
            return f"row group {group}, {problem}"
        offset += row_group.num_rows
    if offset != metadata.num_rows:
        return f"its footer counts {metadata.num_rows} rows, its row groups {offset}"
    return None


def _key_values(key_values: dict[bytes, bytes]) -> str | None:
    allowed = {_ARROW_SCHEMA_KEY: None, INCREASING_KEY.encode(): b"true"}
    for key, value in key_values.items():
        if key not in allowed:
            return (
                f"its footer holds metadata kaudit does not write: {key.decode(errors='replace')!r}"
            )
        if allowed[key] is not None and value != allowed[key]:
            return f"its footer's {key.decode()} is {value!r}, not {allowed[key]!r}"
    return None


def _chunks(row_group: pq.RowGroupMetaData) -> list[pq.ColumnChunkMetaData]:
    return [row_group.column(index) for index in range(row_group.num_columns)]


def _row_group_problem(row_group: pq.RowGroupMetaData, table: pa.Table, offset: int) -> str | None:
    if row_group.sorting_columns:
        return "its footer declares a sort order, which kaudit never writes"
    flat = set(SCHEMA.names)
    for chunk in _chunks(row_group):
        name = chunk.path_in_schema
        extra = [
            what
            for what, present in (
                ("a column index", chunk.has_column_index),
                ("an offset index", chunk.has_offset_index),
                ("a bloom filter", chunk.bloom_filter_offset is not None),
                ("geospatial statistics", chunk.is_geo_stats_set),
                (f"its data in another file ({chunk.file_path})", bool(chunk.file_path)),
            )
            if present
        ]
        if extra:
            return (
                f"column {name}: the footer points to {' and '.join(extra)}, "
                "which kaudit never writes"
            )
        if name in flat and chunk.num_values != row_group.num_rows:
            return (
                f"column {name}: the footer counts {chunk.num_values} values in "
                f"{row_group.num_rows} rows"
            )
        if not chunk.is_stats_set:
            continue
        if name not in flat:
            return f"column {name}: the footer holds statistics, which kaudit never writes there"
        problem = _statistics_problem(
            chunk.statistics, table.column(name).slice(offset, row_group.num_rows)
        )
        if problem is not None:
            return f"column {name}: {problem}"
    return None


def _statistics_problem(stats: pq.Statistics, rows: pa.ChunkedArray) -> str | None:
    """What the footer's statistics of a column chunk say that its rows do not."""
    nulls = rows.null_count
    values = len(rows) - nulls
    said: list[tuple[str, Any, Any]] = [("value count", stats.num_values, values)]
    if stats.has_null_count:
        said.append(("null count", stats.null_count, nulls))
    if stats.has_distinct_count:
        said.append(("distinct count", stats.distinct_count, pc.count_distinct(rows).as_py()))
    if values and not stats.has_min_max:
        # kaudit writes both with its statistics; a footer without them could hold the
        # deprecated min and max that some engines fall back on and pyarrow ignores.
        return "the footer's statistics have no min and max, which kaudit always writes"
    if stats.has_min_max:
        bounds = pc.min_max(rows)
        said.append(("min", stats.min, bounds["min"].as_py()))
        said.append(("max", stats.max, bounds["max"].as_py()))
    for what, footer, recomputed in said:
        if footer != recomputed:
            return (
                f"the footer's statistics give {what} {footer!r}, its rows {recomputed!r} "
                "(an engine skipping row groups by them would miss or misplace events)"
            )
    return None
