"""What a search means: which events a `Filter` selects (time range, type glob, actor,
resource, result, cluster, source, free text), the groups `count_by` counts by, and a
found event (`Hit`). The index (`index_search`) and the scan (`query.ScanSearch`) both
answer from these definitions, so they give the same answers.

Matching rules: `--type` is a glob on the event type; `--actor` is the actor id
(`User:alice`) or the name after its principal type (`alice`); `--resource` is
`type:id` (`topic:orders`) or the id alone (`orders`); actor, resource, cluster and
source accept globs too. `--query` needs every word (a word ending in `*` is a prefix).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import orjson

from kaudit.errors import SearchError
from kaudit.events.model import RESULTS
from kaudit.store.schema import Fields, to_ms, words
from kaudit.timeparse import parse_time

GROUP_KEYS = (
    "type",
    "category",
    "actor",
    "resource",
    "result",
    "cluster",
    "day",
    "source",
    "hour",
)
"""What `count_by` groups on; `day` is the UTC date (a day number, `schema.day_name`),
`hour` the UTC hour (an hour number: milliseconds since the epoch // 3,600,000)."""

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
    source: str | None = None

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
        if self.source is not None and (
            f.source is None or not _pattern_matches(self.source, f.source)
        ):
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
        if self.source is not None:
            pattern_source = self.source
            out["source"] = lambda v: _pattern_matches(pattern_source, v)
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
    source: str | None = None,
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
        source=source,
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
    if key == "source":
        return f.source
    if key == "hour":
        return f.hour
    return f.day


def check_group_keys(keys: Sequence[str]) -> None:
    for key in keys:
        if key not in GROUP_KEYS:
            raise SearchError(f"cannot count by {key!r}; accepted: {', '.join(GROUP_KEYS)}")


def ordered(counts: Iterable[tuple[tuple[Any, ...], int]]) -> list[tuple[tuple[Any, ...], int]]:
    """Largest count first, then by key (None last), so both searches list ties alike."""
    return sorted(
        counts, key=lambda kc: (-kc[1], [(k is None, "" if k is None else k) for k in kc[0]])
    )
