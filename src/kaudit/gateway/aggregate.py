"""Produce and fetch traffic, aggregated into one record per client, topic and window.

Recording every Produce and Fetch would multiply the log by the traffic; KIP-567 asks
for client-to-topic events "without repetition". So each request only adds to a counter
keyed by (record type, principal, client id, source address, topic, result), and every
`window_seconds` one `records.produced` / `records.consumed` record per key is audited
with `count`, `bytes`, `requests`, `first_seen` and `last_seen`. A denied request still
counts, under its own key, and its record yields `access.denied`.

`records.consumed` counts what was delivered to the client, and every fetch of a topic
as a request, also one that returned nothing (an idle consumer's polls: the broker counts
them too, and its auditor's counts are matched with these). A fetch answer that arrives
after the client went away (the gateway keeps the broker connection to audit requests in
flight) was read from the broker but never reached anyone: its records are counted apart,
as `undelivered` and `undelivered_bytes`, in the same record.

A window holds at most `max_keys` distinct keys (a client cycling through client ids or
topics must not grow the gateway's memory without bound): what arrives under any further
key is counted into one overflow record per record type and result, resource topic `*`
with `details.overflow: true`, never dropped silently. Under fail_closed the counts a
window holds are journaled (journal): `journal_lines` gives the new value of each count
changed since the last call, and `restore` reads back those of an unclean stop, recorded
with the window open then and marked `recovered`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from kaudit.auditor import (
    AUTHORIZATION_ERRORS,
    ActionEvent,
    ActionTarget,
    AuthInfo,
    RequestContext,
    RequestEvent,
)

Audit = Callable[[RequestEvent | None, RequestContext, Sequence[AuthInfo]], object]

OVERFLOW_TOPIC = "*"
"""The topic of the record that counts what came under keys past `max_keys`."""
_RECOVERED = "recovered"  # the last part of the key of a count read back from the journal
_CONTEXT_FIELDS = tuple(f.name for f in fields(RequestContext))


@dataclass(slots=True)
class _Tally:
    ctx: RequestContext
    operation: str
    error_code: int
    count: int = 0
    nbytes: int = 0
    undelivered: int = 0
    undelivered_bytes: int = 0
    requests: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    overflow: bool = False
    journaled: bool = False


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class RecordsAggregator:
    """Counts records per client and topic; `flush()` audits one record per key."""

    def __init__(self, audit: Audit, window_seconds: float, max_keys: int = 10_000) -> None:
        self._audit = audit
        self.window_seconds = window_seconds
        self.max_keys = max_keys
        self._tallies: dict[tuple[object, ...], _Tally] = {}
        self._window_start = time.monotonic()
        self.window_id = time.time_ns() // 1_000_000  # names the window's journal file
        self.dirty: set[tuple[object, ...]] | None = None  # journaled: keys changed since
        self.overflowed = 0  # requests counted into overflow records, all windows

    def add(
        self,
        event_type: str,
        ctx: RequestContext,
        topic: str,
        count: int,
        nbytes: int,
        error_code: int,
        now: float | None = None,
        delivered: bool = True,
    ) -> None:
        """One request's records for one topic (called on the event loop only);
        `delivered` False: a fetch answer the client was gone for."""
        now = time.time() if now is None else now
        denied, failed = error_code in AUTHORIZATION_ERRORS, error_code != 0
        key: tuple[object, ...] = (
            event_type, ctx.principal, ctx.client_id, ctx.client_address, topic, denied, failed,
        )  # fmt: skip
        tally = self._tallies.get(key)
        if tally is None:
            operation = "WRITE" if event_type == "records.produced" else "READ"
            if len(self._tallies) >= self.max_keys:
                self.overflowed += 1
                key = (event_type, "*", None, None, OVERFLOW_TOPIC, denied, failed)
                tally = self._tallies.get(key)
                if tally is None:
                    ctx = RequestContext(
                        principal="*", api_key=ctx.api_key, api_name=ctx.api_name,
                        api_version=ctx.api_version, source=ctx.source,
                    )  # fmt: skip
                    tally = _Tally(ctx, operation, error_code, first_seen=now, overflow=True)
                    self._tallies[key] = tally
            else:
                tally = _Tally(ctx, operation, error_code, first_seen=now)
                self._tallies[key] = tally
        elif tally.overflow:
            self.overflowed += 1
        if delivered:
            tally.count += count
            tally.nbytes += nbytes
        else:
            tally.undelivered += count
            tally.undelivered_bytes += nbytes
        tally.requests += 1
        tally.last_seen = now
        if self.dirty is not None:
            self.dirty.add(key)

    def journal_lines(self, everything: bool = False) -> list[bytes]:
        """The new value of every count changed since the last call, one JSON line each
        (`everything`: of every count, each with its context, to start a file afresh)."""
        if not self.dirty and not everything:
            return []
        if everything:
            for each in self._tallies.values():
                each.journaled = False
        lines = []
        keys: Iterable[tuple[object, ...]] = self._tallies if everything else self.dirty or ()
        for key in keys:
            tally = self._tallies.get(key)
            if tally is None:
                continue
            entry: dict[str, Any] = {
                "key": key,
                "operation": tally.operation,
                "error_code": tally.error_code,
                "count": tally.count,
                "bytes": tally.nbytes,
                "undelivered": tally.undelivered,
                "undelivered_bytes": tally.undelivered_bytes,
                "requests": tally.requests,
                "first_seen": tally.first_seen,
                "last_seen": tally.last_seen,
                "overflow": tally.overflow,
            }
            if not tally.journaled:  # the context once per key and window file
                tally.journaled = True
                entry["ctx"] = {name: getattr(tally.ctx, name) for name in _CONTEXT_FIELDS}
            lines.append(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))
        if self.dirty is not None:
            self.dirty.clear()
        return lines

    def restore(self, entries: Iterable[dict[str, Any]]) -> int:
        """Counts read back from the journal of an unclean stop, added to this window
        under keys of their own (so their records say `recovered`); returns how many."""
        restored = 0
        for entry in entries:
            key = tuple(entry["key"])
            if key[-1] != _RECOVERED:
                key = (*key, _RECOVERED)
            ctx = RequestContext(**entry["ctx"])
            tally = self._tallies.get(key)
            if tally is None:
                tally = self._tallies[key] = _Tally(
                    ctx, entry["operation"], entry["error_code"],
                    first_seen=entry["first_seen"], overflow=entry.get("overflow", False),
                )  # fmt: skip
            tally.count += entry["count"]
            tally.nbytes += entry["bytes"]
            tally.undelivered += entry.get("undelivered", 0)
            tally.undelivered_bytes += entry.get("undelivered_bytes", 0)
            tally.requests += entry["requests"]
            tally.first_seen = min(tally.first_seen, entry["first_seen"])
            tally.last_seen = max(tally.last_seen, entry["last_seen"])
            if self.dirty is not None:
                self.dirty.add(key)
            restored += 1
        return restored

    def due(self) -> bool:
        return time.monotonic() - self._window_start >= self.window_seconds

    def flush(self) -> int:
        """Audit every open tally and start a new window; returns the records made."""
        tallies, self._tallies = self._tallies, {}
        self._window_start = time.monotonic()
        self.window_id = max(self.window_id + 1, time.time_ns() // 1_000_000)
        if self.dirty is not None:
            self.dirty.clear()
        for key, tally in tallies.items():
            event_type, topic = str(key[0]), str(key[4])
            details: dict[str, Any] = {
                "topic": topic,
                "count": tally.count,
                "bytes": tally.nbytes,
                "undelivered": tally.undelivered,
                "undelivered_bytes": tally.undelivered_bytes,
                "requests": tally.requests,
                "first_seen": _iso(tally.first_seen),
                "last_seen": _iso(tally.last_seen),
                "window_seconds": self.window_seconds,
            }
            if event_type == "records.consumed":
                details["undelivered"] = tally.undelivered
                details["undelivered_bytes"] = tally.undelivered_bytes
            if tally.overflow:
                details["overflow"] = True
                details["max_keys"] = self.max_keys
            if key[-1] == _RECOVERED:
                details["recovered"] = True  # counted before an unclean stop
            ctx = replace(tally.ctx, correlation_id=None, duration_ms=None)
            code = tally.error_code
            self._audit(
                ActionEvent(
                    "produce" if event_type == "records.produced" else "consume",
                    (ActionTarget(event_type, "topic", topic, details),),
                ),
                ctx,
                (
                    AuthInfo(
                        tally.operation,
                        "TOPIC",
                        topic,
                        allowed=code not in AUTHORIZATION_ERRORS,
                        error_code=code,
                    ),
                ),
            )
        return len(tallies)

    def __len__(self) -> int:
        return len(self._tallies)
