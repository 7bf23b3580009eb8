"""Counts of indexed events per hour: the rollups that count-by queries, reports and
the console's charts read instead of counting rows.

This module owns the `rollups` table: one row per hour and combination of event type,
actor, result, resource type, cluster and source, with how many indexed events have
them. The index adds to it in the transaction that adds the rows (`add`) and retention
takes from it in the transaction that removes them (`subtract`), so the counts always
agree with the rows. `rollup_counts` answers a count-by from it when every condition
and every group is one of its columns; where a time range starts or ends inside an
hour, that part of the hour is counted from the rows (which the time index finds
quickly), so the answer is exact.

A missing cluster or source is kept as '' (a key column cannot be NULL); the index
never stores '' for either (`schema.fields_of` reads an empty one as missing).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from kaudit.store.schema import MS_PER_HOUR, Fields

ROLLUPS_DDL = """
CREATE TABLE IF NOT EXISTS rollups (
    hour INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    actor TEXT NOT NULL,
    result TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    cluster TEXT NOT NULL,
    source TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (hour, event_type, actor, result, resource_type, cluster, source)
) WITHOUT ROWID;
"""

_KEY = ("hour", "event_type", "actor", "result", "resource_type", "cluster", "source")
_UPSERT = (
    f"INSERT INTO rollups VALUES ({', '.join('?' * (len(_KEY) + 1))}) "
    f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET count = count + excluded.count"
)
_TAKE = "UPDATE rollups SET count = count - ? WHERE " + " AND ".join(
    f"{column} = ?" for column in _KEY
)

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


def add(conn: sqlite3.Connection, rows: Iterable[Fields]) -> None:
    """Count `rows`, which are being added in the open transaction."""
    conn.executemany(_UPSERT, [(*key, n) for key, n in counts(rows).items()])


def subtract(conn: sqlite3.Connection, rows: Iterable[Fields]) -> None:
    """Stop counting `rows`, which are being removed in the open transaction."""
    taken = counts(rows)
    conn.executemany(_TAKE, [(n, *key) for key, n in taken.items()])
    hours = sorted({key[0] for key in taken})
    conn.executemany(
        "DELETE FROM rollups WHERE hour = ? AND count <= 0", [(hour,) for hour in hours]
    )


def rebuild(conn: sqlite3.Connection) -> None:
    """Count every indexed event again (in the open transaction)."""
    conn.execute("DELETE FROM rollups")
    conn.execute(
        f"INSERT INTO rollups SELECT {floor_div('ts', MS_PER_HOUR)}, event_type, actor, "
        "result, resource_type, ifnull(cluster, ''), ifnull(source, ''), count(*) "
        "FROM events GROUP BY 1, 2, 3, 4, 5, 6, 7"
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
"""The groups rollups can give, as SQL over the rollups table."""

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
    that meet every condition (SQL over rollup columns, and its parameters)."""
    clauses: list[str] = []
    params: list[Any] = []
    first, end = hours
    if first is not None:
        clauses.append("hour >= ?")
        params.append(first)
    if end is not None:
        clauses.append("hour < ?")
        params.append(end)
    for clause, args in conditions:
        clauses.append(clause)
        params.extend(args)
    columns = ", ".join(GROUP_SQL[k] for k in keys)
    positions = ", ".join(str(i + 1) for i in range(len(keys)))
    rows = conn.execute(
        f"SELECT {columns}, sum(count) FROM rollups WHERE {' AND '.join(clauses) or '1'} "
        f"GROUP BY {positions}",
        params,
    )
    return Counter({tuple(row[:-1]): int(row[-1]) for row in rows})
