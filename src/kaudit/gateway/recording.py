"""The gateway's door to the audit session: the one audit call of each request under the
failure policy, the produce/fetch windows, and the gateway's counters.

Under fail_open an audit call the session cannot take is counted and logged, and the
request goes on. Under fail_closed:
- a change is refused before it reaches the broker while the log cannot take records
  (failclosed); a request the broker has answered is always recorded: if the log cannot
  take its record now, the call is kept here (`parked`) and made, in order, as soon as
  the log can take records again;
- a response waits until its records are durable (`when_durable`): the answer to a
  change waits however long that takes (the broker applied it; an error would make the
  client believe otherwise and try again), any other answer at most `durable_timeout`,
  then the client gets its API's error instead;
- the produce/fetch window is journaled (journal), and a produce or fetch response waits
  until its counts are on disk, so a kill -9 loses no answered request's count.

Everything here runs on the gateway's event loop except the session's durability
callback and the journal's thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from kaudit.auditor import AuthInfo, RequestContext, RequestEvent, record_types
from kaudit.errors import AuditUnavailableError
from kaudit.gateway.aggregate import RecordsAggregator
from kaudit.gateway.chatter import RequestsAggregator
from kaudit.gateway.codec import CHANGES_STATE
from kaudit.gateway.exchange import Held
from kaudit.gateway.journal import WindowJournal
from kaudit.ops.latency import Latency

log = logging.getLogger("kaudit.gateway")

Audit = Callable[[RequestEvent | None, RequestContext, Sequence[AuthInfo]], None]
WhenDurable = Callable[[Callable[[str | None], None]], None]
Unavailable = Callable[[], str | None]
Done = Callable[[str | None], None]

LATENCY_SAMPLE_MASK = 7
"""One read in 8 each way is timed for kaudit_gateway_added_latency_seconds: two clock
reads and a histogram update on every read would cost the hot path a few per cent."""

_RETRY_PARKED_S = 0.1
"""How often kept calls are tried again while the log cannot take records."""


class Holder(Protocol):
    """A connection holding responses until their audit records are durable."""

    def durable(self, held: Held, error: str | None) -> None: ...


@dataclass
class GatewayMetrics:
    """kaudit_gateway_* counters (exported by kaudit.ops.metrics.watch_gateway)."""

    requests: int = 0
    audit_calls: int = 0
    audit_failures: int = 0
    refused: int = 0
    connections_total: int = 0
    connections_refused: int = 0
    parked: int = 0
    """Audit calls of answered requests kept until the log could take them."""
    bytes_from_clients: int = 0
    bytes_from_brokers: int = 0
    client_reads: int = 0
    broker_reads: int = 0
    answered: Counter[int] = field(default_factory=Counter)
    """Requests whose broker answer was passed on, per API key."""
    outcomes: Counter[tuple[int, str]] = field(default_factory=Counter)
    """Requests that ended otherwise, per API key and result: refused (answered by the
    gateway, never forwarded), failed (the answer replaced by an error: its audit record
    was not durable, or it could not be rewritten), unanswered (the connection closed
    first), client_gone (answered after the client went away)."""
    request_latency: Latency = field(default_factory=Latency)
    """Time spent on a read from a client before it is passed on (sampled)."""
    response_latency: Latency = field(default_factory=Latency)
    """Time spent on a read from a broker before it is passed on (sampled)."""

    def ended(self, api_key: int, result: str) -> None:
        """Count a request that ended other than answered (off the hot path)."""
        self.outcomes[(api_key, result)] += 1


class Recording:
    """Audit calls into the session (`audit`), with the failure policy applied."""

    def __init__(
        self,
        audit: Audit,
        metrics: GatewayMetrics,
        *,
        window_seconds: float,
        fail_closed: bool = False,
        selects: Callable[[str], bool] = lambda event_type: True,
        when_durable: WhenDurable | None = None,
        unavailable: Unavailable | None = None,
        durable_timeout: float = 5.0,
        journal: WindowJournal | None = None,
        max_window_keys: int = 10_000,
    ) -> None:
        if fail_closed and (when_durable is None or unavailable is None or journal is None):
            raise ValueError("fail_closed needs when_durable, unavailable and a journal")
        self._audit_fn = audit
        self.metrics = metrics
        self.fail_closed = fail_closed
        self.selects = selects
        self._when_durable = when_durable
        self._unavailable = unavailable
        self.durable_timeout = durable_timeout
        self.aggregator = RecordsAggregator(self.audit, window_seconds, max_window_keys)
        self.journal = journal
        self.chatter = RequestsAggregator(self.audit, window_seconds)
        self._parked: deque[tuple[RequestEvent | None, RequestContext, Sequence[AuthInfo]]]
        self._parked = deque()
        self._after_parked: list[Done] = []  # waiting for the kept calls to be made
        self._retry_armed = False
        self._recorded_since_barrier = False
        self._windows_closing: set[int] = set()  # flushed, records not yet durable
        if journal is not None:
            self.aggregator.dirty = set()
            self._recover(journal)

    def _recover(self, journal: WindowJournal) -> None:
        """Counts an unclean stop left in the journal join this window (start-up)."""
        restored = self.aggregator.restore(journal.recover())
        if not restored:
            journal.forget_recovered(keep=self.aggregator.window_id)
            return
        journal.append(self.aggregator.window_id, self.aggregator.journal_lines())
        if journal.sync_now():
            journal.forget_recovered(keep=self.aggregator.window_id)
            log.warning("%d produce/fetch counts recovered from an unclean stop", restored)
        else:
            log.error("recovered produce/fetch counts not journaled: %s", journal.failed)

    # -- the audit call ---------------------------------------------------------------------

    def audit(
        self, event: RequestEvent | None, ctx: RequestContext, auth: Sequence[AuthInfo]
    ) -> bool:
        """The one audit call of a request; True if it makes records the log keeps (so a
        fail_closed response waits for them)."""
        recorded = any(self.selects(t) for t in record_types(event, auth))
        self.metrics.audit_calls += 1
        if recorded and self.fail_closed and (self._parked or self.unavailable() is not None):
            self._park(event, ctx, auth)  # what the broker did is recorded, later
            return True
        try:
            self._audit_fn(event, ctx, auth)
        except AuditUnavailableError as exc:
            self.metrics.audit_failures += 1
            log.error("audit call for %s failed: %s", ctx.api_name, exc)
            if self.fail_closed and recorded:
                self._park(event, ctx, auth)
            return recorded
        if recorded:
            self._recorded_since_barrier = True
        return recorded

    def records(self, event_type: str) -> bool:
        """Whether records of this type are kept."""
        return self.selects(event_type)

    @property
    def counts_wait(self) -> bool:
        """Whether a produce/fetch response waits for its counts to be journaled."""
        return self.journal is not None

    def unavailable(self) -> str | None:
        """Why the log cannot take a record now (fail_closed only), or None."""
        if not self.fail_closed or self._unavailable is None:
            return None
        return self._unavailable()

    # -- calls kept while the log cannot take them ------------------------------------------

    def _park(
        self, event: RequestEvent | None, ctx: RequestContext, auth: Sequence[AuthInfo]
    ) -> None:
        if not self._parked:
            log.error("audit log cannot take records: keeping those of answered requests")
        self._parked.append((event, ctx, auth))
        self.metrics.parked += 1
        self._arm_retry()

    def _arm_retry(self) -> None:
        if self._retry_armed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the loop (start-up, stop): the caller drains them
            return
        self._retry_armed = True
        loop.call_later(_RETRY_PARKED_S, self._retry_parked)

    def _retry_parked(self) -> None:
        self._retry_armed = False
        made = 0
        while self._parked:
            if self.unavailable() is not None:
                self._arm_retry()
                return
            event, ctx, auth = self._parked[0]
            try:
                self._audit_fn(event, ctx, auth)
            except AuditUnavailableError:
                self._arm_retry()
                return
            except Exception:  # a bug in one call must not hold back the others
                log.exception("a kept audit call of %s failed; dropped", ctx.api_name)
            self._parked.popleft()
            made += 1
        log.warning("audit log takes records again: %d kept records made", made)
        self._recorded_since_barrier = True
        waiting, self._after_parked = self._after_parked, []
        if waiting:

            def release(error: str | None) -> None:
                for done in waiting:
                    done(error)

            self._after_recorder(release)

    # -- durability -------------------------------------------------------------------------

    def _after_recorder(self, done: Done) -> None:
        """`done` on this loop once every record made so far is durable (or is not)."""
        assert self._when_durable is not None
        loop = asyncio.get_running_loop()
        self._recorded_since_barrier = False

        def on_writer_thread(error: str | None) -> None:
            loop.call_soon_threadsafe(done, error)

        self._when_durable(on_writer_thread)

    def when_durable(self, conn: Holder, held: Held) -> None:
        """Tell `conn`, on the running event loop, once the records and counts made so
        far are durable (error None) or cannot be (why); an answer to anything but a
        change the broker applied is given up on after `durable_timeout`."""
        loop = asyncio.get_running_loop()
        waits: list[Callable[[Done], None]] = []
        if self._parked:
            waits.append(self._after_parked.append)
        elif self._recorded_since_barrier:
            waits.append(self._after_recorder)
        journal = self.journal
        if journal is not None:
            self._journal_counts(journal)
            if journal.behind or journal.failed:
                waits.append(journal.when_synced)
        left = len(waits)
        give_up: asyncio.TimerHandle | None = None

        def settle(error: str | None) -> None:
            if give_up is not None:
                give_up.cancel()  # a timer per held response would outlive it by seconds
            if not held.ready:
                conn.durable(held, error)

        def part(error: str | None) -> None:
            nonlocal left
            left -= 1
            if error is not None or left == 0:
                settle(error)

        if not waits:
            settle(None)
            return
        for wait in waits:
            wait(part)
        pending = held.pending
        if not held.ready and not (pending.api_key in CHANGES_STATE and not pending.refused):
            give_up = loop.call_later(
                self.durable_timeout, settle, f"not durable after {self.durable_timeout:g}s"
            )

    # -- the produce/fetch window -----------------------------------------------------------

    def _journal_counts(self, journal: WindowJournal) -> None:
        """Hand the counts changed since the last call to the journal (all of them, to
        replace the window's file, once it has grown large)."""
        aggregator = self.aggregator
        window = aggregator.window_id
        if journal.needs_compacting(window):
            journal.append(window, aggregator.journal_lines(everything=True), replace=True)
            return
        lines = aggregator.journal_lines()
        if lines:
            journal.append(window, lines)

    def flush_records(self) -> None:
        """Close the window: one produce/fetch record per client and topic (its journal
        file goes once they are durable), and one per client, API and resource of the
        aggregated requests (chatter)."""
        self.chatter.flush()
        aggregator, journal = self.aggregator, self.journal
        window = aggregator.window_id
        if journal is not None:
            self._journal_counts(journal)
        made = aggregator.flush()
        if journal is None:
            return
        if not made:
            journal.drop(window)
            return
        self._windows_closing.add(window)

        def durable(error: str | None) -> None:
            if error is None and window in self._windows_closing:
                self._windows_closing.discard(window)
                journal.drop(window)

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # off the loop: close() drops what is durable
        if self._parked:
            self._after_parked.append(durable)
        else:
            self._after_recorder(durable)

    def close(self) -> None:
        """At stop: close the window, make the kept calls (waiting for the log as the
        recorder's fail_closed does), and drop the journal once the records are durable."""
        self.flush_records()
        while self._parked:
            event, ctx, auth = self._parked.popleft()
            try:
                self._audit_fn(event, ctx, auth)
            except AuditUnavailableError as exc:
                log.error("%d records of answered requests not made at stop: %s",
                          len(self._parked) + 1, exc)  # fmt: skip
                self._parked.clear()
                break
        journal = self.journal
        if journal is None:
            return
        if self._when_durable is not None and self._windows_closing:
            done = threading.Event()
            errors: list[str | None] = []

            def on_writer_thread(error: str | None) -> None:
                errors.append(error)
                done.set()

            self._when_durable(on_writer_thread)
            if done.wait(self.durable_timeout) and errors == [None]:
                for window in self._windows_closing:
                    journal.drop(window)
                self._windows_closing.clear()
            else:
                log.error("produce/fetch records not durable at stop: kept in the journal")
        journal.drop(self.aggregator.window_id)  # empty: flushed above
        journal.close()
