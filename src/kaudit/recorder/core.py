"""The recorder: the one door into the audit log, and its public face (`Recorder`).

`emit()` and `record()` may be called from any thread or coroutine. On the caller's path
they look up the event type (one dict lookup, cached), read the clock and append a tuple
to a bounded in-memory queue: no I/O, no JSON, no await. Behind the queue a single writer
thread turns items into events (ids, timestamps, enrichment, redaction), assigns the
sequence numbers, serialises with the canonical codec and appends batches to the log.

This module is the caller's side; the parts behind it each have their module:
- `queue`: the bounded queue and the failure policy (fail_open / fail_closed);
- `writer`: the writer thread, batching, sealing, the retrying append, drop reports;
- `encode`: queue items into canonical lines (through kaudit.events.codec);
- `protocols`: what the recorder needs of the log (`LogSink`) and of integrity (`Sealer`);
- `settings`: `RecorderSettings`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from kaudit.errors import AuditUnavailableError
from kaudit.events.catalog import EventCatalog
from kaudit.events.filter import EventFilter
from kaudit.events.model import RESULTS, Action, Actor, AuditEvent, Authorization, Resource
from kaudit.ops.latency import Latency
from kaudit.recorder.encode import ItemEncoder
from kaudit.recorder.protocols import LogSink, Sealer
from kaudit.recorder.queue import AuditQueue, Barrier, DurableCallback
from kaudit.recorder.settings import FailurePolicy, RecorderSettings
from kaudit.recorder.writer import Writer

__all__ = [
    "DurableCallback",
    "FailurePolicy",
    "LogSink",
    "Recorder",
    "RecorderSettings",
    "Sealer",
]

log = logging.getLogger("kaudit.recorder")


class Recorder:
    """Filters, redacts, enriches, sequences and writes audit events to one log stream."""

    def __init__(
        self,
        sink: LogSink,
        settings: RecorderSettings | None = None,
        *,
        sealer: Sealer | None = None,
    ) -> None:
        self.settings = s = settings or RecorderSettings()
        if s.failure_policy not in ("fail_open", "fail_closed"):
            raise ValueError(
                f"failure_policy must be fail_open or fail_closed, got {s.failure_policy!r}"
            )
        self.sink = sink
        self.sealer = sealer
        self.catalog = EventCatalog(s.custom_event_types)
        self._filter = EventFilter(s.events, s.exclude_events)
        self._selected: dict[str, bool] = {}
        self._filtered = 0
        self._encoder = encoder = ItemEncoder(s, self.catalog)
        self._queue = queue = AuditQueue(s.failure_policy, s.queue_max_events, s.block_timeout_ms)
        self._admit = queue.admit
        self._writer = Writer(
            queue,
            encoder,
            sink,
            sealer,
            batch_max_events=s.batch_max_events,
            failure_policy=s.failure_policy,
        )
        self._writer.start()

    def reconfigure(
        self,
        *,
        events: tuple[str, ...],
        exclude_events: tuple[str, ...],
        custom_event_types: tuple[str, ...],
        redact_keys: tuple[str, ...],
    ) -> None:
        """Select, declare and redact as told from now on (a configuration reload).
        Events accepted before are written first, redacted as they were meant to be
        (waiting at most block_timeout_ms for a failing log); none is lost. Each part
        is swapped whole, so a caller on another thread sees the old or the new one."""
        catalog = EventCatalog(custom_event_types)
        event_filter = EventFilter(events, exclude_events)
        try:
            self.flush()
        except AuditUnavailableError as exc:
            log.warning("reload: events accepted before it are redacted as now told: %s", exc)
        self._encoder.reconfigure(catalog, redact_keys)
        self.settings = replace(
            self.settings,
            events=events,
            exclude_events=exclude_events,
            custom_event_types=custom_event_types,
            redact_keys=redact_keys,
        )
        self.catalog, self._filter, self._selected = catalog, event_filter, {}

    # -- caller side: cheap ----------------------------------------------------------------

    def _is_selected(self, event_type: str) -> bool:
        try:
            return self._selected[event_type]
        except KeyError:
            self.catalog.get(event_type)  # raises UnknownEventTypeError with close matches
            selected = self._filter(event_type)
            self._selected[event_type] = selected
            return selected

    def selects(self, event_type: str) -> bool:
        """Whether events of this type are recorded (`events` / `exclude_events`)."""
        return self._is_selected(event_type)

    def emit(
        self,
        event_type: str,
        *,
        actor: Actor | str | Mapping[str, Any],
        resource: Resource | str | Mapping[str, Any],
        action: Action | str | Mapping[str, Any] | None = None,
        result: str = "success",
        details: Mapping[str, Any] | None = None,
        authorization: Authorization | None = None,
        correlation_id: str | None = None,
        duration_ms: float | None = None,
        error: str | None = None,
        source: str | None = None,
        time_ns: int | None = None,
        durable: bool = False,
    ) -> None:
        """Record one event. Returns at once unless `durable` (then waits until written).

        `actor` may be an Actor, a principal string or a mapping of Actor fields;
        `resource` a Resource, `"type:id"` or a mapping; `action` an Action, an operation
        name or a mapping (default: the event type's operation). `time_ns` sets when it
        happened (nanoseconds since the epoch; default: now), for importing past events.
        The caller must not change `details` after the call: it is read by the writer.
        """
        if not self._is_selected(event_type):
            self._filtered += 1
            return
        if correlation_id is not None and type(correlation_id) is not str:
            correlation_id = str(correlation_id)  # Kafka's correlation ids are ints
        if result not in RESULTS:
            raise ValueError(f"result must be one of {', '.join(RESULTS)}, got {result!r}")
        if type(actor) is not str and type(actor) is not Actor:
            actor = _coerce(Actor, actor, "actor")
        if type(resource) is str:
            if ":" not in resource:
                raise ValueError(
                    f"resource must be 'type:id' (e.g. 'topic:orders'), got {resource!r}"
                )
        elif type(resource) is not Resource:
            resource = _coerce(Resource, resource, "resource")
        if action is not None and type(action) is not str and type(action) is not Action:
            action = _coerce(Action, action, "action")
        # The queue item: its layout is kaudit.recorder.encode's to read.
        item = (
            time.time_ns() if time_ns is None else time_ns,
            event_type,
            actor,
            resource,
            action,
            result,
            details,
            authorization,
            correlation_id,
            duration_ms,
            error,
            source,
        )
        self._admit(item)
        if durable:
            self.flush()

    def record(self, event: AuditEvent, *, durable: bool = False) -> None:
        """Record a prebuilt event (sources that map requests to events use this).

        The writer still enriches, redacts and sequences it; its id and timestamp are kept.
        """
        if not self._is_selected(event.event_type):
            self._filtered += 1
            return
        self._admit(event)
        if durable:
            self.flush()

    def record_many(self, events: Iterable[AuditEvent], *, durable: bool = False) -> None:
        for event in events:
            self.record(event)
        if durable:
            self.flush()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every event accepted before this call is durable in the log, at most
        `timeout` seconds (default: block_timeout_ms), else AuditUnavailableError."""
        barrier = Barrier()
        self._queue.add_barrier(barrier, wake=True)
        # Bounded under both policies: a caller asking for durability must not hang
        # forever on a log that is down.
        limit = self._queue.block_timeout if timeout is None else timeout
        if not barrier.done.wait(limit):
            raise AuditUnavailableError(
                f"events not durable after {limit:g}s: "
                f"{self._queue.last_error or 'writer is behind'}"
            )
        if barrier.error:
            raise AuditUnavailableError(barrier.error)

    def when_durable(self, callback: DurableCallback) -> None:
        """Call `callback` (on the writer thread) once every event accepted before this
        call is durable, with None, or with the reason it is not. Never blocks: sources on
        an event loop use it to hold a response until its audit record is safe."""
        if self._queue.closed:
            callback("the recorder is closed")
            return
        self._queue.add_barrier(Barrier(callback))

    def note_recovery(self, torn_lines: int, bytes_cut: int, where: str) -> None:
        """Record that opening the log cut a torn tail (after a crash) as `audit.degraded`."""
        # Straight to the queue: a crash repair is recorded whatever `events` selects.
        self._admit(
            AuditEvent(
                timestamp="",  # id and time are given by the writer
                event_type="audit.degraded",
                event_id="",
                actor=Actor(type="system", id="kaudit"),
                resource=Resource(type="audit_log", id=where),
                action=Action(
                    operation="recover",
                    result="failure",
                    error="torn tail cut after an unclean stop",
                ),
                details={
                    "torn_lines_cut": torn_lines,
                    "bytes_cut": bytes_cut,
                    "reason": "unclean stop (crash or kill -9) during a write",
                },
            )
        )

    def report(self, event: AuditEvent) -> None:
        """Write a recorder-made event (degradation, recovery) now, from the writer side."""
        self._writer.report(event)

    # -- observation -------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._queue.healthy

    @property
    def last_error(self) -> str | None:
        return self._queue.last_error

    @property
    def unavailable_reason(self) -> str | None:
        """Why an event accepted now could not be made durable soon (the log is failing,
        the queue is full), or None. Lets a fail_closed source refuse at once instead of
        blocking in emit()."""
        return self._queue.unavailable_reason()

    def metrics(self) -> dict[str, int | bool]:
        """Counters named as exported: kaudit_events_* and the queue depth."""
        queued = len(self._queue.items)
        return {
            # Taken by the writer, queued, or turned away (barriers count as queued).
            "kaudit_events_received_total": (
                self._writer.taken + queued + self._queue.dropped_on_admit + self._filtered
            ),
            "kaudit_events_written_total": self._writer.written,
            "kaudit_events_dropped_total": self._queue.dropped_total,
            "kaudit_events_filtered_total": self._filtered,
            "kaudit_log_write_errors_total": self._writer.write_errors,
            "kaudit_queue_depth": queued,
            "kaudit_queue_capacity": self._queue.max_events,
            "kaudit_log_healthy": self._queue.healthy,
        }

    @property
    def write_latency(self) -> Latency:
        """How long appending a batch to the log takes (kaudit_log_write_seconds)."""
        return self._writer.write_latency

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (waiting up to `timeout` for a failing log), then stop."""
        queue = self._queue
        if queue.closed:
            return
        self._writer.stop(timeout)
        queue.closed = True
        unwritten = self._writer.unwritten
        left = queue.events_left() + unwritten
        if left:
            log.error(
                "audit recorder closed with %d events not written: %s", left, queue.last_error
            )
            queue.count_lost(left - unwritten)
        if self.sealer is not None:
            try:
                self.sealer.close(checkpoint=queue.healthy)  # the final checkpoint
            except Exception:
                log.exception("final integrity checkpoint failed")
        self.sink.close()
        if left:
            raise AuditUnavailableError(
                f"{left} audit events could not be written before close: {queue.last_error}"
            )

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _coerce(cls: type[Any], value: Any, name: str) -> Any:
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{name} must be a {cls.__name__}, a string or a mapping, got {type(value).__name__}"
        )
    # Lists become tuples: parts of an event are immutable (and hashable, for caching).
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    try:
        return cls(**fields)
    except TypeError as exc:
        accepted = ", ".join(cls.__dataclass_fields__)
        raise ValueError(
            f"invalid {name} {dict(value)!r}: {exc}; accepted keys: {accepted}"
        ) from exc
