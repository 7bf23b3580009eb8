"""Answering searches from the SQLite index (`IndexSearch`), with the query shapes that
keep them fast as the index grows.

- A filter becomes exact lists of values (read from the `terms` table with the very
  predicates the scan applies to each event), so every condition is an equality or an
  `IN` list that the composite `(column, ts)` indexes answer.
- Newest first with an `IN` list of several values (`--type 'acl.*'`): one query per
  value, each read newest first from its index and stopped at the limit, merged. One
  query for all values would collect every match of every value and sort them.
- Free text: the full-text index gives the matching rows newest id first, in steps that
  grow; the walk stops once the blocks' `max_ts` shows that no older row can be newer
  than the last of the `limit` found. A time range's start gives the first id to look at.
- Count-by reads the hourly rollups (`rollups`) when every condition and group is one
  of theirs; the parts of the time range inside an hour, and other filters (resource,
  free text) or groups (resource), are counted from the rows.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from kaudit.store import rollups
from kaudit.store.filters import Filter, Hit, check_group_keys, ordered
from kaudit.store.index import FIELD_COLUMNS, EventIndex
from kaudit.store.rollups import floor_div
from kaudit.store.schema import MS_PER_DAY, MS_PER_HOUR, Fields, from_ms

_SQL_GROUP = {
    "type": "event_type",
    "category": "substr(event_type, 1, instr(event_type || '.', '.') - 1)",
    "actor": "actor",
    "resource": "resource_type || ':' || resource_id",
    "result": "result",
    "cluster": "cluster",
    "source": "source",
    "day": floor_div("ts", MS_PER_DAY),
    "hour": floor_div("ts", MS_PER_HOUR),
}

_SQL_TERM_COLUMN = {
    "type": "event_type",
    "actor": "actor",
    "cluster": "cluster",
    "source": "source",
}

_SPLIT_INDEX = {
    "type": "events_type_ts",
    "actor": "events_actor_ts",
    "resource": "events_resource_ts",
}
"""Columns with a `(column, ts)` index: a newest-first search may split on their lists."""
_MAX_SPLIT = 64
_MAX_INLINE_VALUES = 200
_FIRST_TEXT_STEP = 1_000
_MAX_TEXT_STEP = 64_000

Terms = dict[str, list[str]]


def _in(column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
    """`column` is one of `values`: inline for a few, one JSON array for many (SQLite
    limits the number of parameters)."""
    if len(values) == 1:
        return f"{column} = ?", [values[0]]
    if len(values) <= _MAX_INLINE_VALUES:
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)
    return f"{column} IN (SELECT value FROM json_each(?))", [orjson.dumps(list(values)).decode()]


def _newest(row: tuple[Any, ...]) -> tuple[int, int]:
    """(ts, id) of a row of `id, FIELD_COLUMNS`: the order of a search, newest first."""
    return row[1], row[0]


class IndexSearch:
    """Searches the SQLite index."""

    def __init__(self, path: str | Path) -> None:
        self.index = EventIndex(path, readonly=True)
        self.description = f"index {self.index.path}"

    # -- conditions --------------------------------------------------------------------

    def _terms(self, flt: Filter) -> Terms | None:
        """For each filtered term kind, the indexed values that match; None when one
        has none (nothing can match)."""
        out: Terms = {}
        for kind, predicate in flt.term_predicates().items():
            values = [v for v in self.index.terms(kind) if predicate(v)]
            if not values:
                return None
            out[kind] = values
        return out

    def _clauses(self, flt: Filter, terms: Terms, *, text: bool = True) -> tuple[str, list[Any]]:
        """The WHERE clause over `events` and its parameters (without the free text when
        `text` is false)."""
        clauses: list[str] = []
        params: list[Any] = []
        if flt.since_ms is not None:
            clauses.append("ts >= ?")
            params.append(flt.since_ms)
        if flt.until_ms is not None:
            clauses.append("ts < ?")
            params.append(flt.until_ms)
        if flt.result is not None:
            clauses.append("result = ?")
            params.append(flt.result)
            if flt.result != "success":
                # Lets SQLite use the index that holds only unsuccessful events.
                clauses.append("result <> 'success'")
        for kind, values in terms.items():
            if kind == "resource":
                # The id column has the index; the type:id check keeps group:orders out
                # of a search for topic:orders.
                ids = sorted({v.partition(":")[2] for v in values})
                for column, wanted in (
                    ("resource_id", ids),
                    ("resource_type || ':' || resource_id", values),
                ):
                    clause, args = _in(column, wanted)
                    clauses.append(clause)
                    params.extend(args)
            else:
                clause, args = _in(_SQL_TERM_COLUMN[kind], values)
                clauses.append(clause)
                params.extend(args)
        if text and flt.text is not None:
            clauses.append("id IN (SELECT rowid FROM events_text WHERE events_text MATCH ?)")
            params.append(flt.text.fts())
        return (" AND ".join(clauses) or "1"), params

    # -- search ------------------------------------------------------------------------

    def search(self, flt: Filter, limit: int | None) -> list[Hit]:
        terms = self._terms(flt)
        if terms is None:
            return []
        if flt.text is not None:
            rows = self._text_rows(flt, terms, limit)
        else:
            rows = self._rows(flt, terms, limit)
        lines = self.index.lines([row[0] for row in rows])
        return [Hit(Fields(*row[1:]), lines[row[0]]) for row in rows]

    def _rows(self, flt: Filter, terms: Terms, limit: int | None) -> list[tuple[Any, ...]]:
        conn = self.index.conn
        order = "ORDER BY ts DESC, id DESC LIMIT ?"
        # One value of an indexed column (or a rare result) already reads newest first.
        ordered_by_index = flt.result not in (None, "success") or any(
            len(terms.get(k, ())) == 1 for k in _SPLIT_INDEX
        )
        split = min(
            (k for k in _SPLIT_INDEX if 1 < len(terms.get(k, ())) <= _MAX_SPLIT),
            key=lambda k: len(terms[k]),
            default=None,
        )
        if limit is None or split is None or ordered_by_index:
            sql, params = self._clauses(flt, terms)
            return conn.execute(
                f"SELECT id, {FIELD_COLUMNS} FROM events WHERE {sql} {order}",
                [*params, -1 if limit is None else limit],
            ).fetchall()
        arms: list[str] = []
        arm_params: list[Any] = []
        for value in terms[split]:
            sql, params = self._clauses(flt, {**terms, split: [value]})
            arms.append(
                f"SELECT * FROM (SELECT id, {FIELD_COLUMNS} FROM events "
                f"INDEXED BY {_SPLIT_INDEX[split]} WHERE {sql} {order})"
            )
            arm_params += [*params, limit]
        return conn.execute(f"{' UNION ALL '.join(arms)} {order}", [*arm_params, limit]).fetchall()

    def _text_rows(self, flt: Filter, terms: Terms, limit: int | None) -> list[tuple[Any, ...]]:
        """Rows matching a filter with free text, newest first: see the module's notes."""
        assert flt.text is not None
        conn = self.index.conn
        sql, params = self._clauses(flt, terms, text=False)
        match = flt.text.fts()
        lowest = None
        if flt.since_ms is not None:
            first = conn.execute(
                "SELECT first_id FROM blocks WHERE max_ts >= ? ORDER BY max_ts, first_id LIMIT 1",
                (flt.since_ms,),
            ).fetchone()
            if first is None:
                return []
            lowest = first[0]
        found: list[tuple[Any, ...]] = []
        below: int | None = None
        step = _FIRST_TEXT_STEP
        while True:
            bounds = ["events_text MATCH ?"]
            bound_params: list[Any] = [match]
            if below is not None:
                bounds.append("rowid < ?")
                bound_params.append(below)
            if lowest is not None:
                bounds.append("rowid >= ?")
                bound_params.append(lowest)
            ids = [
                r[0]
                for r in conn.execute(
                    f"SELECT rowid FROM events_text WHERE {' AND '.join(bounds)} "
                    "ORDER BY rowid DESC LIMIT ?",
                    [*bound_params, step],
                )
            ]
            if ids:
                # CROSS JOIN: look the ids up, rather than let a time or type index
                # lead and test each of its rows against them.
                found += conn.execute(
                    f"SELECT e.id, {FIELD_COLUMNS} FROM json_each(?) AS j CROSS JOIN events AS e "
                    f"ON e.id = j.value WHERE {sql}",
                    [orjson.dumps(ids).decode(), *params],
                ).fetchall()
            if len(ids) < step:
                break
            below = ids[-1]
            if limit is not None and len(found) >= limit:
                last_ts = heapq.nlargest(limit, found, key=_newest)[-1][1]
                older = conn.execute(
                    "SELECT max_ts FROM blocks WHERE first_id < ? ORDER BY first_id DESC LIMIT 1",
                    (below,),
                ).fetchone()
                # Every row older than `below` has a timestamp of at most `older`: not
                # newer than the last found (a tie ranks below it, by its smaller id).
                if older is None or older[0] <= last_ts:
                    break
            step = min(step * 4, _MAX_TEXT_STEP)
        found.sort(key=_newest, reverse=True)
        return found if limit is None else found[:limit]

    # -- count_by ----------------------------------------------------------------------

    def count_by(self, flt: Filter, keys: Sequence[str]) -> list[tuple[tuple[Any, ...], int]]:
        check_group_keys(keys)
        terms = self._terms(flt)
        if terms is None:
            return []
        if (
            flt.text is None
            and "resource" not in terms
            and all(k in rollups.GROUP_SQL for k in keys)
        ):
            counts = self._rollup_counts(flt, terms, keys)
        else:
            counts = self._row_counts(flt, terms, keys)
        return ordered(counts.items())

    def _row_counts(self, flt: Filter, terms: Terms, keys: Sequence[str]) -> Counter[Any]:
        sql, params = self._clauses(flt, terms)
        columns = ", ".join(_SQL_GROUP[k] for k in keys)
        positions = ", ".join(str(i + 1) for i in range(len(keys)))
        rows = self.index.conn.execute(
            f"SELECT {columns}, count(*) FROM events WHERE {sql} GROUP BY {positions}", params
        )
        return Counter({tuple(row[:-1]): int(row[-1]) for row in rows})

    def _rollup_counts(self, flt: Filter, terms: Terms, keys: Sequence[str]) -> Counter[Any]:
        """Whole hours from the rollups, the rest of the time range from the rows."""
        first, end = rollups.full_hours(flt.since_ms, flt.until_ms)
        if first is not None and end is not None and first >= end:
            return self._row_counts(flt, terms, keys)  # within an hour or two
        conditions: list[tuple[str, list[Any]]] = []
        if flt.result is not None:
            conditions.append(("result = ?", [flt.result]))
        for kind, values in terms.items():
            conditions.append(_in(_SQL_TERM_COLUMN[kind], values))
        counts = rollups.rollup_counts(self.index.conn, (first, end), conditions, keys)
        if first is not None and flt.since_ms is not None and flt.since_ms < first * MS_PER_HOUR:
            head = replace(flt, until=from_ms(first * MS_PER_HOUR))
            counts.update(self._row_counts(head, terms, keys))
        if end is not None and flt.until_ms is not None and end * MS_PER_HOUR < flt.until_ms:
            tail = replace(flt, since=from_ms(end * MS_PER_HOUR))
            counts.update(self._row_counts(tail, terms, keys))
        return counts

    def close(self) -> None:
        self.index.close()
