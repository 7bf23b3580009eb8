"""Produce and fetch traffic, aggregated into one record per client, topic and window.

Recording every Produce and Fetch would multiply the log by the traffic; KIP-567 asks
for client-to-topic events "without repetition". So each request only adds to a counter
keyed by (record type, principal, client id, source address, topic, result), and every
`window_seconds` one `records.produced` / `records.consumed` record per key is audited
with `count`, `bytes`, `requests`, `first_seen` and `last_seen`. A denied request still
counts, under its own key, and its record yields `access.denied`.

`records.consumed` counts what was delivered to the client. A fetch answer that arrives
after the client went away (the gateway keeps the broker connection to audit requests in
flight) was read from the broker but never reached anyone: its records are counted apart,
as `undelivered` and `undelivered_bytes`, in the same record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from kaudit.auditor import (
    AUTHORIZATION_ERRORS,
    ActionEvent,
    ActionTarget,
    AuthInfo,
    RequestContext,
    RequestEvent,
)

Audit = Callable[[RequestEvent | None, RequestContext, Sequence[AuthInfo]], object]


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


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class RecordsAggregator:
    """Counts records per client and topic; `flush()` audits one record per key."""

    def __init__(self, audit: Audit, window_seconds: float) -> None:
        self._audit = audit
        self.window_seconds = window_seconds
        self._tallies: dict[tuple[object, ...], _Tally] = {}
        self._window_start = time.monotonic()

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
        key = (
            event_type,
            ctx.principal,
            ctx.client_id,
            ctx.client_address,
            topic,
            error_code in AUTHORIZATION_ERRORS,
            error_code != 0,
        )
        tally = self._tallies.get(key)
        if tally is None:
            operation = "WRITE" if event_type == "records.produced" else "READ"
            tally = _Tally(ctx, operation, error_code, first_seen=now)
            self._tallies[key] = tally
        if delivered:
            tally.count += count
            tally.nbytes += nbytes
        else:
            tally.undelivered += count
            tally.undelivered_bytes += nbytes
        tally.requests += 1
        tally.last_seen = now

    def due(self) -> bool:
        return time.monotonic() - self._window_start >= self.window_seconds

    def flush(self) -> int:
        """Audit every open tally and start a new window; returns the records made."""
        tallies, self._tallies = self._tallies, {}
        self._window_start = time.monotonic()
        for key, tally in tallies.items():
            event_type, topic = str(key[0]), str(key[4])
            details = {
                "topic": topic,
                "count": tally.count,
                "bytes": tally.nbytes,
                "requests": tally.requests,
                "first_seen": _iso(tally.first_seen),
                "last_seen": _iso(tally.last_seen),
                "window_seconds": self.window_seconds,
            }
            if event_type == "records.consumed":
                details["undelivered"] = tally.undelivered
                details["undelivered_bytes"] = tally.undelivered_bytes
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
