"""Searching audit events: the filter, and the two ways of answering it.

This module owns what a search means — `Filter` (time range, type glob, actor,
resource, result, cluster, free text), newest first, `count_by` groups — and answers it
either from the search index (`IndexSearch`) or by reading a log directory, a JSON Lines
file or any source `kaudit tail` reads (`ScanSearch`, slower, no index needed).

Both give the same answers because they share one definition of a match: the index
turns each filter into an exact list of the values that match it (read from its `terms`
table with the very predicates the scan applies to each event), and full-text words are
split the same way on both sides (`schema.words`). Events repeated in a source (an
at-least-once export) are counted once, as the index does.

Matching rules: `--type` is a glob on the event type; `--actor` is the actor id
(`User:alice`) or the name after its principal type (`alice`); `--resource` is
`type:id` (`topic:orders`) or the id alone (`orders`); actor, resource and cluster
accept globs too. `--query` needs every word (a word ending in `*` is a prefix).
"""

from __future__ import annotations

import fnmatch
import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import orjson

from kaudit.config import Config
from kaudit.config.model import StoreDestination
from kaudit.errors import SearchError
from kaudit.events.model import RESULTS
from kaudit.store.index import EventIndex
from kaudit.store.schema import Fields, NotAnEvent, read_event, to_ms, words
from kaudit.timeparse import parse_time

GROUP_KEYS = ("type", "category", "actor", "resource", "result", "cluster", "day")
"""What `count_by` groups on; `day` is the UTC date."""

_GLOB_CHARS = frozenset("*?[")


def _is_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def _pattern_matches(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern) if _is_glob(pattern) else value == pattern


def actor_matches(pattern: str, actor: str) -> bool:
    """`User:alice` is matched by `User:alice`, `alice` and globs of either."""
    name = actor.partition(":")[2]
    return _pattern_matches(pattern, actor) or (bool(name) and _pattern_matches(pattern, name))


def resource_matches(pattern: str, resource: str) -> bool:
    """`topic:orders` (type:id) is matched by `topic:orders`, `orders` and globs of either."""
    rid = resource.partition(":")[2]
    return _pattern_matches(pattern, resource) or _pattern_matches(pattern, rid)


@dataclass(frozen=True)
class TextQuery:
    """Free text: every word must be in the event (`prefix` words as a word's start)."""

    exact: tuple[str, ...]
    prefix: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> TextQuery:
        exact: list[str] = []
        prefix: list[str] = []
        for term in text.split():
            found = words(term)
            if not found:
                continue
            if term.endswith("*"):
                exact.extend(found[:-1])
                prefix.append(found[-1])
            else:
                exact.extend(found)
        if not exact and not prefix:
            raise SearchError(
                f"--query {text!r} has no words to look for (letters or digits; "
                "a word ending in * matches its prefix)"
            )
        return cls(tuple(dict.fromkeys(exact)), tuple(dict.fromkeys(prefix)))

    def fts(self) -> str:
        """The FTS5 MATCH expression (words are letters and digits only: safe to quote)."""
        terms = [f'"{w}"' for w in self.exact] + [f'"{w}"*' for w in self.prefix]
        return " AND ".join(terms)

    def matches(self, text: str) -> bool:
        have = set(words(text))
        if not all(w in have for w in self.exact):
            return False
        return all(any(h.startswith(p) for h in have) for p in self.prefix)


@dataclass(frozen=True)
class Filter:
    """Which events a search selects; every given condition must hold. `until` is
    exclusive, `since` inclusive."""

    since: datetime | None = None
    until: datetime | None = None
    type: str | None = None
    actor: str | None = None
    resource: str | None = None
    result: str | None = None
    cluster: str | None = None
    query: str | None = None

    def __post_init__(self) -> None:
        if self.result is not None and self.result not in RESULTS:
            raise SearchError(f"result {self.result!r} is not one of {', '.join(RESULTS)}")
        for name in ("since", "until"):
            when = getattr(self, name)
            if when is not None and when.tzinfo is None:
                raise SearchError(f"{name} must carry a timezone, got {when.isoformat()}")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise SearchError(
                f"since ({self.since.isoformat()}) is not before until ({self.until.isoformat()})"
            )
        if self.query is not None:
            TextQuery.parse(self.query)  # refuse a query without words up front

    @cached_property
    def text(self) -> TextQuery | None:
        return TextQuery.parse(self.query) if self.query is not None else None

    @cached_property
    def since_ms(self) -> int | None:
        return to_ms(self.since) if self.since is not None else None

    @cached_property
    def until_ms(self) -> int | None:
        return to_ms(self.until) if self.until is not None else None

    def matches_fields(self, f: Fields) -> bool:
        """Every condition but the free text."""
        if self.since_ms is not None and f.ts < self.since_ms:
            return False
        if self.until_ms is not None and f.ts >= self.until_ms:
            return False
        if self.result is not None and f.result != self.result:
            return False
        if self.type is not None and not _pattern_matches(self.type, f.event_type):
            return False
        if self.actor is not None and not actor_matches(self.actor, f.actor):
            return False
        if self.resource is not None and not resource_matches(self.resource, f.resource):
            return False
        return self.cluster is None or (
            f.cluster is not None and _pattern_matches(self.cluster, f.cluster)
        )

    def term_predicates(self) -> dict[str, Callable[[str], bool]]:
        """For each filtered column with a term list: which of its values match."""
        out: dict[str, Callable[[str], bool]] = {}
        if self.type is not None:
            pattern_type = self.type
            out["type"] = lambda v: _pattern_matches(pattern_type, v)
        if self.actor is not None:
            pattern_actor = self.actor
            out["actor"] = lambda v: actor_matches(pattern_actor, v)
        if self.resource is not None:
            pattern_resource = self.resource
            out["resource"] = lambda v: resource_matches(pattern_resource, v)
        if self.cluster is not None:
            pattern_cluster = self.cluster
            out["cluster"] = lambda v: _pattern_matches(pattern_cluster, v)
        return out


def parse_filter(
    *,
    since: str | None = None,
    until: str | None = None,
    type: str | None = None,
    actor: str | None = None,
    resource: str | None = None,
    result: str | None = None,
    cluster: str | None = None,
    query: str | None = None,
) -> Filter:
    """The filter of a command line's `--since`, `--until`, ... options: times as
    `timeparse.parse_time` reads them (an empty one is no condition); SearchError naming
    the option when one cannot be read."""
    return Filter(
        since=parse_time(since, what="--since") if since else None,
        until=parse_time(until, what="--until") if until else None,
        type=type,
        actor=actor,
        resource=resource,
        result=result,
        cluster=cluster,
        query=query,
    )


@dataclass(frozen=True)
class Hit:
    """One event found: its indexed fields and the native line."""

    fields: Fields
    line: bytes

    def event(self) -> dict[str, Any]:
        obj: dict[str, Any] = orjson.loads(self.line)
        return obj


def group_key(f: Fields, key: str) -> str | int | None:
    if key == "type":
        return f.event_type
    if key == "category":
        return f.category
    if key == "actor":
        return f.actor
    if key == "resource":
        return f.resource
    if key == "result":
        return f.result
    if key == "cluster":
        return f.cluster
    return f.day


def check_group_keys(keys: Sequence[str]) -> None:
    for key in keys:
        if key not in GROUP_KEYS:
            raise SearchError(f"cannot count by {key!r}; accepted: {', '.join(GROUP_KEYS)}")


def _ordered(counts: Iterable[tuple[tuple[Any, ...], int]]) -> list[tuple[tuple[Any, ...], int]]:
    """Largest count first, then by key (None last), so both searches list ties alike."""
    return sorted(
        counts, key=lambda kc: (-kc[1], [(k is None, "" if k is None else k) for k in kc[0]])
    )


class Search(Protocol):
    """Answers searches over one set of events."""

    description: str

    def search(self, flt: Filter, limit: int | None) -> list[Hit]:
        """Matching events, newest first (ties in log order, later first), at most `limit`."""

    def count_by(self, flt: Filter, keys: Sequence[str]) -> list[tuple[tuple[Any, ...], int]]:
        """(group, count) for matching events, largest count first; `day` groups are day
        numbers (`schema.day_name`)."""

    def close(self) -> None: ...


# ---------------------------------------------------------------------------- index


_SQL_GROUP = {
    "type": "event_type",
    "category": "substr(event_type, 1, instr(event_type || '.', '.') - 1)",
    "actor": "actor",
    "resource": "resource_type || ':' || resource_id",
    "result": "result",
    "cluster": "cluster",
    "day": f"ts / {86_400_000}",
}

_SQL_TERM_COLUMN = {"type": "event_type", "actor": "actor", "cluster": "cluster"}


class IndexSearch:
    """Searches the SQLite index."""

    def __init__(self, path: str | Path) -> None:
        self.index = EventIndex(path, readonly=True)
        self.description = f"index {self.index.path}"

    def _where(self, flt: Filter) -> tuple[str, list[Any]] | None:
        """The WHERE clause and its parameters, or None when nothing can match."""
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
        for kind, predicate in flt.term_predicates().items():
            values = [v for v in self.index.terms(kind) if predicate(v)]
            if not values:
                return None
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
        if flt.text is not None:
            clauses.append("id IN (SELECT rowid FROM events_text WHERE events_text MATCH ?)")
            params.append(flt.text.fts())
        return (" AND ".join(clauses) or "1"), params

    def search(self, flt: Filter, limit: int | None) -> list[Hit]:
        where = self._where(flt)
        if where is None:
            return []
        sql, params = where
        rows = self.index.conn.execute(
            "SELECT id, ts, event_type, actor, resource_type, resource_id, result, cluster, "
            f"event_id, seq FROM events WHERE {sql} ORDER BY ts DESC, id DESC LIMIT ?",
            [*params, -1 if limit is None else limit],
        ).fetchall()
        lines = self.index.lines([row[0] for row in rows])
        return [Hit(Fields(*row[1:]), lines[row[0]]) for row in rows]

    def count_by(self, flt: Filter, keys: Sequence[str]) -> list[tuple[tuple[Any, ...], int]]:
        check_group_keys(keys)
        where = self._where(flt)
        if where is None:
            return []
        sql, params = where
        columns = ", ".join(_SQL_GROUP[k] for k in keys)
        positions = ", ".join(str(i + 1) for i in range(len(keys)))
        rows = self.index.conn.execute(
            f"SELECT {columns}, count(*) FROM events WHERE {sql} GROUP BY {positions}", params
        )
        return _ordered((tuple(row[:-1]), int(row[-1])) for row in rows)

    def close(self) -> None:
        self.index.close()


_MAX_INLINE_VALUES = 200


def _in(column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
    """`column` is one of `values`: inline for a few, one JSON array for many (SQLite
    limits the number of parameters)."""
    if len(values) == 1:
        return f"{column} = ?", [values[0]]
    if len(values) <= _MAX_INLINE_VALUES:
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)
    return f"{column} IN (SELECT value FROM json_each(?))", [orjson.dumps(list(values)).decode()]


# ---------------------------------------------------------------------------- scan


@dataclass
class _Scanned:
    fields: Fields
    line: bytes


class ScanSearch:
    """Searches by reading every event of a source (see `kaudit.reading`)."""

    def __init__(self, source: str, lines: Callable[[], Iterator[bytes]] | None = None) -> None:
        from kaudit.reading import iter_lines, open_source

        if lines is None:
            open_source(source)  # a source that names nothing fails here, not mid-search
            self._lines: Callable[[], Iterator[bytes]] = lambda: iter_lines(source)
        else:
            self._lines = lines
        self.description = f"scan of {source}"

    def _matching(self, flt: Filter) -> Iterator[_Scanned]:
        seen: set[str] = set()
        text = flt.text
        for raw in self._lines():
            line = raw.rstrip(b"\r\n")
            if not line:
                continue
            try:
                f, words_of_event = read_event(line)
            except NotAnEvent:
                continue  # the index refuses these too
            if f.event_id in seen:
                continue
            seen.add(f.event_id)
            if not flt.matches_fields(f):
                continue
            if text is not None and not text.matches(words_of_event):
                continue
            yield _Scanned(f, line)

    def search(self, flt: Filter, limit: int | None) -> list[Hit]:
        ranked = ((s.fields.ts, position, s) for position, s in enumerate(self._matching(flt)))
        if limit is None:
            best = sorted(ranked, key=lambda r: (r[0], r[1]), reverse=True)
        else:
            best = heapq.nlargest(limit, ranked, key=lambda r: (r[0], r[1]))
        return [Hit(s.fields, s.line) for _, _, s in best]

    def count_by(self, flt: Filter, keys: Sequence[str]) -> list[tuple[tuple[Any, ...], int]]:
        check_group_keys(keys)
        counts: Counter[tuple[Any, ...]] = Counter(
            tuple(group_key(s.fields, k) for k in keys) for s in self._matching(flt)
        )
        return _ordered(counts.items())

    def close(self) -> None:
        pass


def is_index_file(path: Path) -> bool:
    """Whether `path` is an SQLite file (the search index) rather than a log."""
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def store_destination(config: Config) -> StoreDestination | None:
    """The configured `store` destination (the first, if several)."""
    return next((d for d in config.audit.all_destinations if isinstance(d, StoreDestination)), None)


def open_search(source: str | None, config: Config) -> Search:
    """What to search: SOURCE when given (an index file, a Parquet export, or anything
    `kaudit tail` reads), else the configured index, else the configured log itself."""
    if source is not None:
        path = Path(source).expanduser()
        if source.startswith("s3://") or any(path.glob("dt=*/*.parquet")):
            from kaudit.store.export_search import ExportSearch  # pyarrow: only when needed

            return ExportSearch.open(source, config)
        if path.is_file() and is_index_file(path):
            return IndexSearch(path)
        return ScanSearch(source)
    store = store_destination(config)
    if store is not None:
        return IndexSearch(store.index_path(config.data_path))
    from kaudit.reading import configured_source

    return ScanSearch(configured_source(config))
