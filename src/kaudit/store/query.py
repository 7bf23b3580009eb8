"""Searching audit events: the two ways of answering a search, and which one to use.

This module owns the `Search` contract — matching events newest first, and `count_by`
groups — and answers it either from the search index (`IndexSearch`, in
`index_search`) or by reading a log directory, a JSON Lines file or any source
`kaudit tail` reads (`ScanSearch`, slower, no index needed); `open_search` picks one.
What a search means (`Filter`, `Hit`, the groups) is in `filters`; it is importable
from here too.

Both give the same answers because they share one definition of a match: the index
turns each filter into an exact list of the values that match it (read from its `terms`
table with the very predicates the scan applies to each event), and full-text words are
split the same way on both sides (`schema.words`). Events repeated in a source (an
at-least-once export) are counted once, as the index does.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kaudit.config import Config
from kaudit.config.model import StoreDestination
from kaudit.store.filters import (
    GROUP_KEYS,
    Filter,
    Hit,
    TextQuery,
    actor_matches,
    check_group_keys,
    group_key,
    ordered,
    parse_filter,
    resource_matches,
)
from kaudit.store.index_search import IndexSearch
from kaudit.store.schema import Fields, NotAnEvent, read_event

__all__ = [
    "GROUP_KEYS",
    "Filter",
    "Hit",
    "IndexSearch",
    "ScanSearch",
    "Search",
    "TextQuery",
    "actor_matches",
    "check_group_keys",
    "group_key",
    "is_index_file",
    "open_search",
    "parse_filter",
    "resource_matches",
    "store_destination",
]


class Search(Protocol):
    """Answers searches over one set of events."""

    description: str

    def search(self, flt: Filter, limit: int | None) -> list[Hit]:
        """Matching events, newest first (ties in log order, later first), at most `limit`."""

    def count_by(self, flt: Filter, keys: Sequence[str]) -> list[tuple[tuple[Any, ...], int]]:
        """(group, count) for matching events, largest count first; `day` groups are day
        numbers (`schema.day_name`)."""

    def close(self) -> None: ...


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
        return ordered(counts.items())

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
