"""Counts of indexed events per hour and per day: the rollups that count-by queries,
reports and the console's charts read instead of counting rows.

This module owns the `rollups` table: one row per hour and combination of event type,
actor, result, resource type, cluster and source, with how many indexed events have
them; and `rollups_daily`, the same per UTC day, so a month is read from thirty rows a
combination rather than seven hundred. The index adds to both in the transaction that
adds the rows (`add`), retention takes from both in the transaction that
removes them (`subtract`), so the counts always agree with the rows. `rollup_counts` answers a
count-by when every condition and every group is one of their columns: whole days from
the daily rows, whole hours from the hourly ones; the caller counts the parts of a
time range inside an hour from the rows (which the time index finds quickly), so the
answer is exact.

A missing cluster or source is kept as '' (a key column cannot be NULL); the index
never stores '' for either (`schema.fields_of` reads an empty one as missing).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from kaudit.store.schema import MS_PER_HOUR, Fields

_TABLES = {"rollups": "hour", "rollups_daily": "day"}
"""Each rollup table and its time column."""

ROLLUPS_DDL = "".join(
    f"""
CREATE TABLE IF NOT EXISTS {table} (
    {period} INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    actor TEXT NOT NULL,
    result TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    cluster TEXT NOT NULL,
    source TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY ({period}, event_type, actor, result, resource_type, cluster, source)
) WITHOUT ROWID;
"""
    for table, period in _TABLES.items()
)

_DIMENSIONS = ("event_type", "actor", "result", "resource_type", "cluster", "source")


def _take(table: str) -> str:
    key = " AND ".join(f"{column} = ?" for column in (_TABLES[table], *_DIMENSIONS))
    return f"UPDATE {table} SET count = count - ? WHERE {key}"


RollupKey = tuple[int, str, str, str, str, str, str]


def counts(rows: Iterable[Fields]) -> Counter[RollupKey]:
    """How many of `rows` fall in each rollup row."""
    return Counter(
        (
            f.ts // MS_PER_HOUR,
            f.event_type,
            f.actor,
            f.result,
            f.resource_type,
            f.cluster or "",
            f.source or "",
        )
        for f in rows
    )


def _by_day(hourly: Counter[RollupKey]) -> Counter[RollupKey]:
    daily: Counter[RollupKey] = Counter()
    for (hour, event_type, actor, result, resource_type, cluster, source), n in hourly.items():
        daily[(hour // 24, event_type, actor, result, resource_type, cluster, source)] += n
    return daily


def _upsert(table: str) -> str:
    key = ", ".join((_TABLES[table], *_DIMENSIONS))
    return (
        f"INSERT INTO {table} VALUES ({', '.join('?' * (len(_DIMENSIONS) + 2))}) "
        f"ON CONFLICT ({key}) DO UPDATE SET count = count + excluded.count"
    )


def add(conn: sqlite3.Connection, hourly: Counter[RollupKey]) -> None:
    """Count events being added in the open transaction (`counts` of their fields)."""
    for table, found in (("rollups", hourly), ("rollups_daily", _by_day(hourly))):
        conn.executemany(_upsert(table), [(*key, n) for key, n in found.items()])


def terms(hourly: Counter[RollupKey]) -> set[tuple[str, str]]:
    """The terms (`schema.TERM_KINDS`, but resources) of the counted events."""
    out: set[tuple[str, str]] = set()
    for _, event_type, actor, _, _, cluster, source in hourly:
        out.add(("type", event_type))
        out.add(("actor", actor))
        if cluster:
            out.add(("cluster", cluster))
        if source:
            out.add(("source", source))
    return out


def subtract(conn: sqlite3.Connection, rows: Iterable[Fields]) -> None:
    """Stop counting `rows`, which are being removed in the open transaction."""
    hourly = counts(rows)
    for table, taken in (("rollups", hourly), ("rollups_daily", _by_day(hourly))):
        conn.executemany(_take(table), [(n, *key) for key, n in taken.items()])
        period = _TABLES[table]
        conn.executemany(
            f"DELETE FROM {table} WHERE {period} = ? AND count <= 0",
            [(p,) for p in sorted({key[0] for key in taken})],
        )


def rebuild(conn: sqlite3.Connection) -> None:
    """Count every indexed event again (in the open transaction)."""
    dimensions = ", ".join(_DIMENSIONS)
    conn.execute("DELETE FROM rollups")
    conn.execute(
        f"INSERT INTO rollups SELECT {floor_div('ts', MS_PER_HOUR)}, event_type, actor, "
        "result, resource_type, ifnull(cluster, ''), ifnull(source, ''), count(*) "
        "FROM events GROUP BY 1, 2, 3, 4, 5, 6, 7"
    )
    conn.execute("DELETE FROM rollups_daily")
    conn.execute(
        f"INSERT INTO rollups_daily SELECT {floor_div('hour', 24)}, {dimensions}, sum(count) "
        "FROM rollups GROUP BY 1, 2, 3, 4, 5, 6, 7"
    )


def floor_div(expr: str, by: int) -> str:
    """SQL for `expr // by` as Python floors it (SQLite's `/` truncates towards zero)."""
    return f"(CASE WHEN {expr} >= 0 THEN {expr} / {by} ELSE ({expr} - {by - 1}) / {by} END)"


GROUP_SQL = {
    "type": "event_type",
    "category": "substr(event_type, 1, instr(event_type || '.', '.') - 1)",
    "actor": "actor",
    "result": "result",
    "cluster": "nullif(cluster, '')",
    "source": "nullif(source, '')",
    "day": floor_div("hour", 24),
    "hour": "hour",
}
"""The groups rollups can give, as SQL over the hourly table."""
_DAILY_GROUP_SQL = {**GROUP_SQL, "day": "day"}

FILTER_COLUMNS = frozenset(("type", "actor", "result", "cluster", "source"))
"""The term kinds a rollup row can be filtered on."""


def full_hours(since_ms: int | None, until_ms: int | None) -> tuple[int | None, int | None]:
    """The hours wholly inside [since_ms, until_ms): first and end (exclusive), None for
    an open side."""
    first = None if since_ms is None else -(-since_ms // MS_PER_HOUR)
    end = None if until_ms is None else until_ms // MS_PER_HOUR
    return first, end


def rollup_counts(
    conn: sqlite3.Connection,
    hours: tuple[int | None, int | None],
    conditions: Sequence[tuple[str, list[Any]]],
    keys: Sequence[str],
) -> Counter[tuple[Any, ...]]:
    """Counts per group (`keys`, from GROUP_SQL) of the events in the given whole hours
    that meet every condition (SQL over rollup columns, and its parameters): the whole
    days among them from the daily table, unless grouped by hour."""
    first, end = hours
    if "hour" in keys:
        return _read(conn, "rollups", (first, end), conditions, keys)
    first_day = None if first is None else -(-first // 24)
    end_day = None if end is None else end // 24
    if first_day is not None and end_day is not None and first_day >= end_day:
        return _read(conn, "rollups", (first, end), conditions, keys)
    found = _read(conn, "rollups_daily", (first_day, end_day), conditions, keys)
    if first is not None and first_day is not None and first < first_day * 24:
        found.update(_read(conn, "rollups", (first, first_day * 24), conditions, keys))
    if end is not None and end_day is not None and end_day * 24 < end:
        found.update(_read(conn, "rollups", (end_day * 24, end), conditions, keys))
    return found


def _read(
    conn: sqlite3.Connection,
    table: str,
    periods: tuple[int | None, int | None],
    conditions: Sequence[tuple[str, list[Any]]],
    keys: Sequence[str],
) -> Counter[tuple[Any, ...]]:
    period = _TABLES[table]
    clauses: list[str] = []
    params: list[Any] = []
    first, end = periods
    if first is not None:
        clauses.append(f"{period} >= ?")
        params.append(first)
    if end is not None:
        clauses.append(f"{period} < ?")
        params.append(end)
    for clause, args in conditions:
        clauses.append(clause)
        params.extend(args)
    groups = _DAILY_GROUP_SQL if table == "rollups_daily" else GROUP_SQL
    columns = ", ".join(groups[k] for k in keys)
    positions = ", ".join(str(i + 1) for i in range(len(keys)))
    rows = conn.execute(
        f"SELECT {columns}, sum(count) FROM {table} WHERE {' AND '.join(clauses) or '1'} "
        f"GROUP BY {positions}",
        params,
    )
    return Counter({tuple(row[:-1]): int(row[-1]) for row in rows})
