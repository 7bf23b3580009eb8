"""Event selection: `events` / `exclude_events` globs decide which types are recorded.

The decision per type is computed once and cached, so the hot path is one dict lookup.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable


class EventFilter:
    """Selects event types by include and exclude globs; exclusion wins."""

    __slots__ = ("_cache", "exclude", "include")

    def __init__(self, include: Iterable[str] = ("*",), exclude: Iterable[str] = ()) -> None:
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self._cache: dict[str, bool] = {}

    def __call__(self, event_type: str) -> bool:
        try:
            return self._cache[event_type]
        except KeyError:
            selected = any(fnmatch.fnmatchcase(event_type, g) for g in self.include) and not any(
                fnmatch.fnmatchcase(event_type, g) for g in self.exclude
            )
            self._cache[event_type] = selected
            return selected
