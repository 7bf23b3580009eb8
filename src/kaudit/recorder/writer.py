"""The writer thread behind the queue: it takes batches, has them encoded (sequence
numbers come from the log), sealed (the integrity step, applied once, here) and appended
to the log, and reports dropped events as `audit.degraded` once writing works again.

Events already in the queue are never dropped because the log failed: the writer keeps
its batch and retries with backoff (kaudit.retry.Backoff) until the log takes it, or
until the deadline of close() has passed. A batch given up then is counted lost, reported
in the audit.degraded event if the log takes a later batch, and the log is told
(`abandon`, where it has one) so that nothing of it is taken for a later batch's.

A log that sends a batch and is told later that it is durable (the Kafka log: `send`,
then `confirm` once every record is acknowledged) has its next batch encoded while the
acknowledgements of the last one are on their way: one batch in flight at a time, each
sent only once the one before is durable, so the order and the all-or-nothing appends
stay as they were. Barriers are released once their own batch is durable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kaudit.errors import LogWriteError
from kaudit.events.codec import encode_line
from kaudit.events.model import Action, Actor, AuditEvent, Resource
from kaudit.ops.latency import Latency
from kaudit.recorder.encode import ItemEncoder, key_of
from kaudit.recorder.protocols import LogSink, Sealer
from kaudit.recorder.queue import AuditQueue
from kaudit.retry import Backoff

log = logging.getLogger("kaudit.recorder")

_MAX_BACKOFF_S = 2.0
_IDLE_WAIT_S = 0.5
_TICK_EVERY_S = 0.5


class _Batch:
    """Events taken from the queue together: encoded, then sent, then durable."""

    __slots__ = ("barriers", "items", "keys", "lines", "sent", "seq", "started")

    def __init__(self, items: list[Any], barriers: list[Any], seq: int) -> None:
        self.items = items
        self.barriers = barriers
        self.seq = seq  # the sequence number of its first line
        self.lines: list[bytes] = []
        self.keys: list[bytes] | None = None
        self.sent = False
        self.started = 0.0


class Writer:
    """The single writer of one log stream: owns the sequence order of its lines."""

    def __init__(
        self,
        queue: AuditQueue,
        encoder: ItemEncoder,
        sink: LogSink,
        sealer: Sealer | None,
        *,
        batch_max_events: int,
        failure_policy: str,
    ) -> None:
        self.queue = queue
        self.encoder = encoder
        self.sink = sink
        self.sealer = sealer
        self._keyed = bool(getattr(sink, "keyed", False))
        self._pipelined = callable(getattr(sink, "send", None)) and callable(
            getattr(sink, "confirm", None)
        )
        self._batch_max = batch_max_events
        self._failure_policy = failure_policy
        self.written = 0
        self.taken = 0  # events taken from the queue (kaudit_events_received_total)
        self.write_errors = 0
        self.write_latency = Latency()
        self.unwritten = 0  # events given up on at close because the log never took them
        self._closing = False
        self._close_deadline = 0.0
        self._last_tick = 0.0
        self._thread = threading.Thread(target=self._run, name="kaudit-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Write what is queued, waiting up to `timeout` for a failing log, then end."""
        self._close_deadline = time.monotonic() + timeout
        self._closing = True
        self.queue.wake.set()
        # The writer may be inside one append, which the sink bounds by its own write
        # timeout; wait for it so that what it gives up on is counted by the caller.
        self._thread.join(timeout + 120)

    def _run(self) -> None:
        if self._pipelined:
            self._run_pipelined()
            return
        queue = self.queue
        q = queue.items
        batch_max = self._batch_max
        while True:
            if not q:
                if self._closing:
                    return
                queue.idle_wait(_IDLE_WAIT_S)
                self._tick()
                continue
            items, barriers = queue.take(batch_max)
            self.taken += len(items)
            try:
                if items:
                    self._write(items)
            except BaseException as exc:  # the writer must outlive any bug in one batch
                log.exception("audit writer failed on a batch of %d events", len(items))
                if not isinstance(exc, LogWriteError):  # those are counted where raised
                    queue.count_lost(len(items))
                for b in barriers:
                    b.error = f"audit writer failed: {exc!r}"
            self._tick()
            for b in barriers:
                b.release()

    def _run_pipelined(self) -> None:
        queue = self.queue
        q = queue.items
        batch_max = self._batch_max
        sent: _Batch | None = None  # handed to the log, not yet durable
        while True:
            if not q:
                if sent is not None:  # nothing to encode meanwhile: wait for it now
                    self._finish(sent)
                    sent = None
                    self._tick()
                    continue
                if self._closing:
                    return
                queue.idle_wait(_IDLE_WAIT_S)
                self._tick()
                continue
            items, barriers = queue.take(batch_max)
            self.taken += len(items)
            seq = self.sink.next_sequence + (len(sent.lines) if sent is not None else 0)
            batch = _Batch(items, barriers, seq)
            encoded = self._guarded(batch, self._encode)  # while `sent` is acknowledged
            if sent is not None:
                self._finish(sent)
                sent = None
            self._tick()
            if encoded and self._guarded(batch, self._send):
                sent = batch

    def _guarded(self, batch: _Batch, step: Callable[[_Batch], None]) -> bool:
        """Run one step of a batch; a bug in it ends the batch (counted as lost, its
        barriers told why) but not the writer."""
        try:
            step(batch)
        except BaseException as exc:
            log.exception("audit writer failed on a batch of %d events", len(batch.items))
            self.queue.count_lost(len(batch.items))
            self._release(batch.barriers, f"audit writer failed: {exc!r}")
            return False
        return True

    def _encode(self, batch: _Batch) -> None:
        if not batch.items:
            return
        if self.sealer is not None and self.sealer.seals:
            batch.lines = self.encoder.lines(batch.items, batch.seq, head=True)  # heads
        else:
            batch.lines = self.encoder.lines(batch.items, batch.seq)
        batch.keys = [key_of(item) for item in batch.items] if self._keyed else None

    def _send(self, batch: _Batch) -> None:
        if batch.seq != self.sink.next_sequence:
            # The batch before was given up at close, or an audit.degraded event was
            # written after it: number this one from where the log is.
            batch.seq = self.sink.next_sequence
            self._encode(batch)
        sealer = self.sealer
        if batch.lines and sealer is not None and sealer.seals:
            batch.lines = sealer.seal_heads(batch.lines)
        batch.started = time.perf_counter()
        if not batch.lines:
            return
        try:
            self.sink.send(batch.lines, batch.keys)  # type: ignore[attr-defined]
            batch.sent = True
        except Exception as exc:  # _finish appends it again, as a failed append would be
            self.write_errors += 1
            if self.queue.healthy:
                log.error("audit log write failed, retrying: %s", exc)
            self.queue.failing(str(exc))

    def _finish(self, batch: _Batch) -> None:
        """Wait until the batch is durable (retrying as `_append_with_retry` does), then
        release its barriers."""
        error: str | None = None
        lines = batch.lines
        try:
            if lines:
                confirm = self.sink.confirm if batch.sent else None  # type: ignore[attr-defined]
                try:
                    self._append_with_retry(lines, batch.keys, confirm)
                except LogWriteError:
                    self._give_up(lines)
                    raise
                self._appended(lines, batch.started)
        except BaseException as exc:
            log.exception("audit writer failed on a batch of %d events", len(batch.items))
            if not isinstance(exc, LogWriteError):  # those are counted where raised
                self.queue.count_lost(len(batch.items))
            error = f"audit writer failed: {exc!r}"
        self._release(batch.barriers, error)

    @staticmethod
    def _release(barriers: list[Any], error: str | None) -> None:
        for b in barriers:
            if error is not None:
                b.error = error
            b.release()

    def _tick(self) -> None:
        if self.sealer is None:
            return
        now = time.monotonic()
        if now - self._last_tick >= _TICK_EVERY_S:
            self._last_tick = now
            try:
                self.sealer.tick()
            except Exception:  # a checkpoint that fails is retried at the next tick
                log.exception("integrity checkpoint failed")

    def _write(self, items: list[Any]) -> None:
        seq = self.sink.next_sequence
        sealer = self.sealer
        if sealer is not None and sealer.seals:
            # Heads only: the sealer finishes each line with its signatures, once.
            lines = sealer.seal_heads(self.encoder.lines(items, seq, head=True))
        else:
            lines = self.encoder.lines(items, seq)
        keys = [key_of(item) for item in items] if self._keyed else None
        started = time.perf_counter()
        try:
            self._append_with_retry(lines, keys)
        except LogWriteError:
            self._give_up(lines)
            raise
        self._appended(lines, started)

    def _give_up(self, lines: list[bytes]) -> None:
        """A batch the log did not take by the deadline of close: the log drops what it
        still holds of it (and keeps its sequence numbers from being reused if some of it
        may have been written). Its lines the log says it has are counted written (and
        are durable for the checkpoints); the others are counted lost and, like dropped
        events, reported once the log takes a batch again: no event is both."""
        abandon = getattr(self.sink, "abandon", None)
        kept = [lines[i] for i in abandon()] if callable(abandon) else []
        if kept:
            self.written += len(kept)
            if self.sealer is not None:
                self.sealer.appended(kept)
        lost = len(lines) - len(kept)
        self.queue.count_lost(lost, report=True)
        self.unwritten += lost

    def _appended(self, lines: list[bytes], started: float) -> None:
        """What follows a durable batch: counts, the checkpoints, and drop reports."""
        self.write_latency.observe(time.perf_counter() - started)
        self.written += len(lines)
        if self.sealer is not None:
            self.sealer.appended(lines)
        if self.queue.has_unreported_drops:
            self._report_drops()

    def _append_with_retry(
        self,
        lines: list[bytes],
        keys: list[bytes] | None = None,
        first: Callable[[], None] | None = None,
    ) -> None:
        """Append until the log takes the batch; `first` is the first attempt when it
        differs (confirming a batch already sent)."""
        backoff = Backoff(0.05, _MAX_BACKOFF_S)
        queue = self.queue
        attempt = first
        while True:
            try:
                if attempt is not None:
                    attempt()
                else:
                    self.sink.append(lines, keys)
            except Exception as exc:  # any failure keeps the batch for a retry: never lose it
                attempt = None
                self.write_errors += 1
                if queue.healthy:
                    log.error("audit log write failed, retrying: %s", exc)
                queue.failing(str(exc))
                if self._closing and self._close_deadline < time.monotonic():
                    raise LogWriteError(f"giving up at close: {exc}") from exc
                time.sleep(backoff.next_wait())
                continue
            if not queue.healthy:
                log.warning("audit log writable again")
                queue.recovered()
            return

    def _report_drops(self) -> None:
        dropped, first = self.queue.take_unreported()
        stamper = self.encoder.stamper
        last_error = self.queue.last_error
        now = time.time_ns()
        event = AuditEvent(
            timestamp=stamper.timestamp(now),
            event_type="audit.degraded",
            event_id=stamper.event_id(now),
            actor=Actor(type="system", id="kaudit"),
            resource=Resource(type="audit_log", id="local"),
            action=Action(operation="drop", result="failure", error=last_error),
            details={
                "dropped_events": dropped,
                "first_drop": stamper.timestamp(first),
                "recovered_at": stamper.timestamp(now),
                "failure_policy": self._failure_policy,
                "reason": last_error or "queue full",
            },
        )
        self.report(event)

    def report(self, event: AuditEvent) -> None:
        """Write a recorder-made event (degradation, recovery) now: on the writer thread."""
        seq = self.sink.next_sequence
        keys = [key_of(event)] if self._keyed else None
        line = encode_line(self.encoder.finish(event, seq))
        if self.sealer is not None:
            line = self.sealer.seal(line)
        self._append_with_retry([line], keys)
        self.written += 1
        if self.sealer is not None:
            self.sealer.appended([line])
