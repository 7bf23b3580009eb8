"""Reading search results a page at a time, for the console's audit-log pages.

This module owns what the pages need beyond a plain search: keyset pages over the very
search `kaudit search` runs (`Search.search` with the filter narrowed to before the
page's last event, so a page shows the rows `kaudit search` lists, in its order), a
filter on the event's source (`context.source`, which the index does not hold: checked
on the lines found), one event by id, counts per hour, and the client–topic flows of
`records.produced` / `records.consumed` events for the map.

A cursor is the (time, event id) of the last row shown: the next page is the rest of
that millisecond after it, then everything older. No OFFSET, so a deep page costs what
the first does.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from kaudit.errors import SearchError, StoreError
from kaudit.store.query import Filter, Hit, IndexSearch, Search
from kaudit.store.schema import Fields, from_ms

__all__ = [
    "Cursor",
    "Flow",
    "FlowCache",
    "Page",
    "event_by_id",
    "hourly_counts",
    "narrowed",
    "page",
    "source_of",
]

MS_PER_HOUR = 3_600_000
SOURCE_SCAN_BUDGET = 20_000
"""Rows looked at for one page when filtering by source (a filter the index cannot
answer); past it the page ends early and its cursor carries on from there."""


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the time (ms) and event id of its last row."""

    ts: int
    event_id: str

    def encode(self) -> str:
        return f"{self.ts}:{self.event_id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        ts, sep, event_id = text.partition(":")
        if not sep or not event_id or not ts.isdigit():
            raise SearchError(
                f"page cursor {text!r} is not one this console made; accepted: "
                "<milliseconds>:<event id> as in the page's 'older' link"
            )
        return cls(int(ts), event_id)

    @classmethod
    def of(cls, hit: Hit) -> Cursor:
        return cls(hit.fields.ts, hit.fields.event_id)


@dataclass(frozen=True)
class Page:
    hits: list[Hit]
    next: Cursor | None
    """Where the next (older) page starts; None on the last page."""
    searched_to: int | None = None
    """With a source filter: the time (ms) the search reached when it stopped early."""


def narrowed(
    flt: Filter, since_ms: int | None = None, until_ms: int | None = None
) -> Filter | None:
    """`flt` limited to [since_ms, until_ms) as well; None when nothing is left."""
    since = flt.since_ms
    if since_ms is not None and (since is None or since_ms > since):
        since = since_ms
    until = flt.until_ms
    if until_ms is not None and (until is None or until_ms < until):
        until = until_ms
    if since is not None and until is not None and since >= until:
        return None
    return replace(
        flt,
        since=from_ms(since) if since is not None else None,
        until=from_ms(until) if until is not None else None,
    )


def _older(search: Search, flt: Filter, after: Cursor | None, limit: int) -> list[Hit]:
    """Up to `limit` matches that come after `after` in the search's order."""
    if after is None:
        return search.search(flt, limit)
    found: list[Hit] = []
    same = narrowed(flt, after.ts, after.ts + 1)
    if same is not None:
        tie = search.search(same, None)
        ids = [h.fields.event_id for h in tie]
        if after.event_id in ids:
            found = tie[ids.index(after.event_id) + 1 :][:limit]
    if len(found) < limit:
        rest = narrowed(flt, None, after.ts)
        if rest is not None:
            found += search.search(rest, limit - len(found))
    return found


class _Context(msgspec.Struct):
    source: Any = None


class _Sourced(msgspec.Struct):
    context: _Context | None = None


_decode_sourced = msgspec.json.Decoder(_Sourced).decode


def source_of(line: bytes) -> str | None:
    """The event's `context.source` (gateway, console, sdk, ingest...)."""
    try:
        context = _decode_sourced(line).context
    except msgspec.MsgspecError:
        return None
    source = context.source if context is not None else None
    return source if isinstance(source, str) else None


def page(
    search: Search, flt: Filter, *, size: int, after: Cursor | None = None,
    source: str | None = None, keep: Callable[[bytes], bool] | None = None,
) -> Page:  # fmt: skip
    """One page of matches, newest first, after `after`; `source` keeps only events
    from that source, and `keep` only the lines it accepts (both checked on the lines
    found, within `SOURCE_SCAN_BUDGET` rows a page)."""
    if size < 1:
        raise SearchError(f"page size {size} must be at least 1")
    if source is None and keep is None:
        hits = _older(search, flt, after, size + 1)
        more = len(hits) > size
        hits = hits[:size]
        return Page(hits, Cursor.of(hits[-1]) if more and hits else None)
    kept: list[Hit] = []
    scanned = 0
    cursor = after
    batch = max(4 * size, 200)
    while len(kept) <= size:
        found = _older(search, flt, cursor, batch)
        scanned += len(found)
        kept += [
            h for h in found
            if (source is None or source_of(h.line) == source) and (keep is None or keep(h.line))
        ]  # fmt: skip
        if len(found) < batch:  # the end of the matches
            cursor = None
            break
        cursor = Cursor.of(found[-1])
        if scanned >= SOURCE_SCAN_BUDGET and len(kept) <= size:
            return Page(kept, cursor, searched_to=cursor.ts)
    if len(kept) > size:
        return Page(kept[:size], Cursor.of(kept[size - 1]))
    return Page(kept, cursor)


def event_by_id(search: Search, event_id: str) -> Hit | None:
    """The event with this id, or None."""
    if isinstance(search, IndexSearch):
        row = search.index.conn.execute(
            "SELECT id, ts, event_type, actor, resource_type, resource_id, result, cluster, "
            "event_id, seq FROM events WHERE event_id = ?",
            (event_id,),
        ).fetchone()
        if row is None:
            return None
        return Hit(Fields(*row[1:]), search.index.lines([row[0]])[row[0]])
    return next((h for h in search.search(Filter(), None) if h.fields.event_id == event_id), None)


def hourly_counts(
    search: Search, flt: Filter, key: str, since_ms: int, until_ms: int
) -> list[tuple[int, dict[str, int]]]:
    """For each hour from `since_ms` to `until_ms` (whole hours): the hour's start (ms)
    and the matching events counted by `key` (a `count_by` key), as `count_by` answers."""
    first = since_ms - since_ms % MS_PER_HOUR
    out: list[tuple[int, dict[str, int]]] = []
    for start in range(first, until_ms, MS_PER_HOUR):
        hour = narrowed(flt, start, start + MS_PER_HOUR)
        counts = search.count_by(hour, [key]) if hour is not None else []
        out.append((start, {str(k[0]): n for k, n in counts}))
    return out


# ---------------------------------------------------------------------------- flows


@dataclass(frozen=True)
class Flow:
    """Records that went between a client and a topic over a period."""

    direction: str
    """`produce` (client to topic) or `consume` (topic to client)."""
    principal: str
    client: str | None
    topic: str
    group: str | None
    records: int
    bytes: int
    events: int


class _Actor(msgspec.Struct):
    id: str
    client_id: Any = None


class _Resource(msgspec.Struct):
    id: str


class _Details(msgspec.Struct):
    count: Any = None
    bytes: Any = None
    group: Any = None
    group_id: Any = None


class _FlowEvent(msgspec.Struct):
    event_type: str
    actor: _Actor
    resource: _Resource
    details: _Details | None = None


_decode_flow = msgspec.json.Decoder(_FlowEvent).decode
_FLOW_TYPES = {"records.produced": "produce", "records.consumed": "consume"}
_Key = tuple[str, str, str | None, str, str | None]


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _flow_key(line: bytes) -> tuple[_Key, int, int] | None:
    try:
        ev = _decode_flow(line)
    except msgspec.MsgspecError:
        return None
    direction = _FLOW_TYPES.get(ev.event_type)
    if direction is None:
        return None
    d = ev.details or _Details()
    group = d.group if isinstance(d.group, str) else d.group_id
    client = ev.actor.client_id
    key: _Key = (
        direction,
        ev.actor.id,
        client if isinstance(client, str) else None,
        ev.resource.id,
        group if isinstance(group, str) else None,
    )
    return key, _number(d.count), _number(d.bytes)


def _flows(totals: dict[_Key, list[int]]) -> list[Flow]:
    return sorted(
        (Flow(*key, records=r, bytes=b, events=e) for key, (r, b, e) in totals.items()),
        key=lambda f: (-f.records, f.direction, f.principal, f.topic),
    )


def _add(totals: dict[_Key, list[int]], items: Iterable[tuple[_Key, int, int]]) -> None:
    for key, records, size in items:
        t = totals.get(key)
        if t is None:
            totals[key] = [records, size, 1]
        else:
            t[0] += records
            t[1] += size
            t[2] += 1


class FlowCache:
    """The flows of an index kept in memory per hour (and per UTC day, to add a week up
    quickly) and brought up to date on each call: only events indexed since the last
    call are read, so the map of a week costs a sum over days and hours rather than
    reading every produce and consume event again.

    Times are whole hours: a period's first and last hours are counted whole, and so is
    the hour retention cut into (its removed events still count until the hour goes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_id = 0
        self._hours: dict[int, dict[_Key, list[int]]] = defaultdict(dict)
        self._days: dict[int, dict[_Key, list[int]]] = defaultdict(dict)

    def update(self, search: IndexSearch) -> None:
        """Read the produce and consume events indexed since the last update."""
        with self._lock:
            self._update(search)

    def _update(self, search: IndexSearch) -> None:
        conn = search.index.conn
        # `+event_type`: walk the rows after the last one read (the primary key), not
        # every produce and consume event through the type index.
        rows = conn.execute(
            "SELECT id, ts FROM events WHERE id > ? AND +event_type IN "
            "('records.produced', 'records.consumed') ORDER BY id",
            (self._last_id,),
        ).fetchall()
        step = 4096
        for at in range(0, len(rows), step):
            part = rows[at : at + step]
            lines = search.index.lines([r[0] for r in part])
            for row_id, ts in part:
                found = _flow_key(lines[row_id])
                if found is not None:
                    hour = ts // MS_PER_HOUR
                    _add(self._hours[hour], (found,))
                    _add(self._days[hour // 24], (found,))
        if rows:
            self._last_id = rows[-1][0]
        oldest = conn.execute("SELECT min(ts) FROM events").fetchone()[0]
        if oldest is not None:
            self._forget_before(oldest // MS_PER_HOUR)

    def _forget_before(self, first_hour: int) -> None:
        """Retention removed older events: forget their hours, and add up again the
        day they were cut from."""
        gone = [h for h in self._hours if h < first_hour]
        for hour in gone:
            del self._hours[hour]
        for day in {h // 24 for h in gone}:
            totals: dict[_Key, list[int]] = {}
            for hour in range(day * 24, day * 24 + 24):
                _sum_into(totals, self._hours.get(hour, {}))
            if totals:
                self._days[day] = totals
            else:
                self._days.pop(day, None)

    def flows(self, search: Search, since_ms: int, until_ms: int, wait: float = 5.0) -> list[Flow]:
        """The flows between `since_ms` and `until_ms`, most records first; StoreError
        (retryable) when the index is still being read, the first time, after `wait`
        seconds."""
        totals: dict[_Key, list[int]] = {}
        if not isinstance(search, IndexSearch):
            flt = Filter(type="records.*", since=from_ms(since_ms), until=from_ms(until_ms))
            _add(totals, (k for h in search.search(flt, None) if (k := _flow_key(h.line))))
            return _flows(totals)
        if not self._lock.acquire(timeout=wait):
            raise StoreError(
                "the map is still reading the produce and consume events of the index; "
                "reload in a moment",
                retryable=True,
            )
        try:
            self._update(search)
            hour, last = since_ms // MS_PER_HOUR, (until_ms - 1) // MS_PER_HOUR
            while hour <= last:
                if hour % 24 == 0 and hour + 23 <= last:
                    _sum_into(totals, self._days.get(hour // 24, {}))
                    hour += 24
                else:
                    _sum_into(totals, self._hours.get(hour, {}))
                    hour += 1
            return _flows(totals)
        finally:
            self._lock.release()


def _sum_into(totals: dict[_Key, list[int]], bucket: dict[_Key, list[int]]) -> None:
    for key, (r, b, e) in bucket.items():
        t = totals.get(key)
        if t is None:
            totals[key] = [r, b, e]
        else:
            t[0] += r
            t[1] += b
            t[2] += e
