"""The bounded in-memory queue between callers and the writer, and its failure policy.

Callers append without I/O, JSON or locks (`admit`); the writer takes batches (`take`)
and tells the queue whether the log is healthy. When the queue is full or the log cannot
be written:
- fail_open: the caller never waits; every dropped event is counted
  (`kaudit_events_dropped_total`) and reported in an `audit.degraded` event once writing
  works again.
- fail_closed: the caller waits up to `block_timeout_ms` for room (and for a healthy log),
  then gets `AuditUnavailableError`; nothing it was not told about is dropped.

Barriers ride the same queue: each is released once everything before it is durable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from kaudit.errors import AuditUnavailableError
from kaudit.recorder.settings import FailurePolicy

log = logging.getLogger("kaudit.recorder")

DurableCallback = Callable[[str | None], None]
"""Called on the writer thread with None once durable, or with why it could not be."""


class Barrier:
    """A queue item that is released once everything before it is durable."""

    __slots__ = ("callback", "done", "error")

    def __init__(self, callback: DurableCallback | None = None) -> None:
        self.done = threading.Event()
        self.error: str | None = None
        self.callback = callback

    def release(self) -> None:
        self.done.set()
        if self.callback is not None:
            try:
                self.callback(self.error)
            except Exception:  # a caller's callback must not stop the writer
                log.exception("durability callback failed")


class AuditQueue:
    """Queued items (events and barriers), the health of the log behind them, and the
    count of events dropped on the way."""

    def __init__(
        self, failure_policy: FailurePolicy, max_events: int, block_timeout_ms: int
    ) -> None:
        self.items: deque[Any] = deque()
        self.max_events = max_events
        self.block_timeout = block_timeout_ms / 1000
        self._fail_closed = failure_policy == "fail_closed"
        self.wake = threading.Event()
        self._writer_idle = False
        self._space = threading.Condition()
        self._space_waiters = 0
        self.healthy = True
        self.last_error: str | None = None
        self.closed = False
        self._counts_lock = threading.Lock()
        self.dropped_total = 0
        self.dropped_on_admit = 0  # of dropped_total: never queued (the rest were, then lost)
        self._dropped_unreported = 0
        self._first_drop_ns = 0

    # -- caller side -------------------------------------------------------------------------

    def admit(self, item: Any) -> None:
        """Queue one event, or wait for room, or drop it, as the failure policy says."""
        if self.closed:
            raise AuditUnavailableError("the recorder is closed")
        q = self.items
        # Under concurrent callers the bound can be overshot by at most one item per
        # thread: a lock here would cost every caller more than the slack is worth.
        if len(q) < self.max_events and (self.healthy or not self._fail_closed):
            q.append(item)
        elif self._fail_closed:
            self._wait_for_room(item)
        else:
            self._drop()
            return
        if self._writer_idle:
            self.wake.set()

    def _wait_for_room(self, item: Any) -> None:
        deadline = time.monotonic() + self.block_timeout
        with self._space:
            self._space_waiters += 1
            try:
                while len(self.items) >= self.max_events or not self.healthy:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        reason = (
                            self.last_error
                            if not self.healthy
                            else (f"the queue is full ({self.max_events} events)")
                        )
                        raise AuditUnavailableError(
                            f"audit event not accepted after waiting {self.block_timeout:g}s "
                            f"(failure_policy: fail_closed): {reason}"
                        )
                    self._space.wait(remaining)
                self.items.append(item)
            finally:
                self._space_waiters -= 1

    def _drop(self) -> None:
        with self._counts_lock:
            if self._dropped_unreported == 0:
                self._first_drop_ns = time.time_ns()
            self.dropped_total += 1
            self.dropped_on_admit += 1
            self._dropped_unreported += 1

    def add_barrier(self, barrier: Barrier, *, wake: bool = False) -> None:
        """Queue a barrier (never refused: it is not an event); `wake` wakes the writer
        even when it is busy, for a caller about to wait on it."""
        self.items.append(barrier)
        if wake or self._writer_idle:
            self.wake.set()

    def unavailable_reason(self) -> str | None:
        """Why an event accepted now could not be made durable soon, or None."""
        if self.closed:
            return "the recorder is closed"
        if not self.healthy:
            return f"the audit log is failing: {self.last_error}"
        if len(self.items) >= self.max_events:
            return f"the audit queue is full ({self.max_events} events)"
        return None

    # -- writer side -------------------------------------------------------------------------

    def idle_wait(self, timeout: float) -> None:
        """Sleep until something is queued (or `wake` is set), at most `timeout` seconds."""
        self._writer_idle = True
        if not self.items:
            self.wake.wait(timeout)
        self.wake.clear()
        self._writer_idle = False

    def take(self, batch_max: int) -> tuple[list[Any], list[Barrier]]:
        """Up to `batch_max` events from the head of the queue, and the barriers among them."""
        q = self.items
        items: list[Any] = []
        barriers: list[Barrier] = []
        while q and len(items) < batch_max:
            item = q.popleft()
            if type(item) is Barrier:
                # Released after this batch is written: everything before it is in
                # the batch, and writing a few later events first does no harm.
                barriers.append(item)
                continue
            items.append(item)
        if self._space_waiters:
            with self._space:
                self._space.notify_all()
        return items, barriers

    def failing(self, error: str) -> None:
        """The log refused a write: fail_closed callers wait until `recovered`."""
        self.healthy = False
        self.last_error = error

    def recovered(self) -> None:
        self.healthy = True
        if self._space_waiters:
            with self._space:
                self._space.notify_all()

    def count_lost(self, events: int, *, report: bool = False) -> None:
        """Count events that were accepted but will never be written; with `report`,
        they are also in the next audit.degraded event (the writer gave them up)."""
        with self._counts_lock:
            self.dropped_total += events
            if report and events:
                if self._dropped_unreported == 0:
                    self._first_drop_ns = time.time_ns()
                self._dropped_unreported += events

    @property
    def has_unreported_drops(self) -> bool:
        return self._dropped_unreported != 0

    def take_unreported(self) -> tuple[int, int]:
        """(events dropped since the last report, when the first of them was, in ns)."""
        with self._counts_lock:
            dropped = self._dropped_unreported
            first = self._first_drop_ns
            self._dropped_unreported = 0
        return dropped, first

    def events_left(self) -> int:
        """Events still queued (barriers aside)."""
        return sum(1 for i in self.items if type(i) is not Barrier)
