"""The recorder: the one door into the audit log.

`emit()` and `record()` may be called from any thread or coroutine. On the caller's path
they look up the event type (one dict lookup, cached), read the clock and append a tuple
to a bounded in-memory queue: no I/O, no JSON, no await. A single writer thread behind
the queue turns items into events (ids, timestamps, enrichment, redaction), assigns the
sequence numbers, serialises with the canonical codec and appends batches to the log.

Failure policy when the queue is full or the log cannot be written:
- fail_open: the caller never waits; every dropped event is counted
  (`kaudit_events_dropped_total`) and reported in an `audit.degraded` event once writing
  works again.
- fail_closed: the caller waits up to `block_timeout_ms` for room (and for a healthy log),
  then gets `AuditUnavailableError`; nothing it was not told about is dropped.

Events already in the queue are never dropped because the log failed: the writer keeps
its batch and retries with backoff until the log takes it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import orjson

from kaudit.errors import AuditUnavailableError, LogWriteError
from kaudit.events.catalog import EventCatalog
from kaudit.events.codec import encode_line
from kaudit.events.filter import EventFilter
from kaudit.events.model import (
    RESULTS,
    SCHEMA_VERSION,
    Action,
    Actor,
    AuditEvent,
    Authorization,
    Context,
    Integrity,
    Resource,
)
from kaudit.recorder.redact import Redactor
from kaudit.recorder.stamp import Stamper
from kaudit.retry import Backoff

log = logging.getLogger("kaudit.recorder")

FailurePolicy = Literal["fail_open", "fail_closed"]

# Resource types that live in a Kafka cluster get a `kafka://cluster/type/id` path.
_KAFKA_RESOURCE_TYPES = frozenset(
    {
        "topic",
        "group",
        "cluster",
        "acl",
        "transactional_id",
        "user",
        "broker",
        "delegation_token",
        "config",
        "partition",
    }
)
_MAX_BACKOFF_S = 2.0
_SORTED = orjson.OPT_SORT_KEYS
# How a line ends: unsealed, or cut after `"signature":` (its head) for a sealer to sign.
_UNSEALED_END = b',"signature":null,"previous_signature":null}}\n'
_HEAD_END = b',"signature":'
_HEAD_CUT = len(_UNSEALED_END) - len(_HEAD_END)


class LogSink(Protocol):
    """What the recorder needs of an audit log: sequenced, all-or-nothing batch appends.

    A sink that partitions by resource (the Kafka log) sets `keyed = True` and is given
    one key (`type:id` of the event's resource) per line.
    """

    next_sequence: int
    keyed: bool

    def append(self, lines: Sequence[bytes], keys: Sequence[bytes] | None = None) -> None: ...

    def close(self) -> None: ...


class Sealer(Protocol):
    """Integrity applied once, at the writer (kaudit.integrity): seals each line in
    sequence order, learns what became durable, and keeps time for checkpoints."""

    seals: bool
    """Whether it signs lines: then the writer hands it heads (`seal_heads`)."""

    def seal(self, line: bytes) -> bytes:
        """The line with its integrity fields filled in."""

    def seal_heads(self, heads: Sequence[bytes]) -> list[bytes]:
        """Sealed lines from heads: canonical bytes up to and including `"signature":`."""

    def appended(self, lines: Sequence[bytes]) -> None:
        """These sealed lines are durable in the log, in this order."""

    def tick(self) -> None:
        """Called about twice a second by the writer, also while idle."""

    def close(self, *, checkpoint: bool = True) -> None:
        """Stop; with `checkpoint` (the log took everything), write the final checkpoint."""


@dataclass(frozen=True, slots=True)
class RecorderSettings:
    failure_policy: FailurePolicy = "fail_open"
    queue_max_events: int = 100_000
    block_timeout_ms: int = 5000
    batch_max_events: int = 4096
    events: tuple[str, ...] = ("*",)
    exclude_events: tuple[str, ...] = ()
    custom_event_types: tuple[str, ...] = ()
    redact_keys: tuple[str, ...] = ()
    cluster_id: str | None = None
    environment: str | None = None
    host: str | None = None
    source: str = "sdk"


class _Barrier:
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


DurableCallback = Callable[[str | None], None]
"""Called on the writer thread with None once durable, or with why it could not be."""


# Queue item made by emit(): everything the writer needs, nothing computed yet.
# (time_ns, event_type, actor, resource, action, result, details, authorization,
#  correlation_id, duration_ms, error, source)
_Item = tuple[Any, ...]


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
        self._keyed = bool(getattr(sink, "keyed", False))
        self.catalog = EventCatalog(s.custom_event_types)
        self._filter = EventFilter(s.events, s.exclude_events)
        self._selected: dict[str, bool] = {}
        self._redactor = Redactor(s.redact_keys)
        self._stamper = Stamper()
        self._host = s.host or socket.gethostname()
        self._context = Context(
            cluster_id=s.cluster_id, environment=s.environment, source=s.source, host=self._host
        )
        self._resources: dict[tuple[str, str], Resource] = {}
        self._middles: dict[tuple[Any, ...], bytes] = {}
        self._type_bytes: dict[str, bytes] = {}
        self._context_bytes: dict[str | None, tuple[bytes, bytes]] = {}
        self._fail_closed = s.failure_policy == "fail_closed"
        self._max = s.queue_max_events
        self._block_timeout = s.block_timeout_ms / 1000
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._writer_idle = False
        self._space = threading.Condition()
        self._space_waiters = 0
        self._healthy = True
        self._last_error: str | None = None
        self._counts_lock = threading.Lock()
        self._dropped_total = 0
        self._dropped_unreported = 0
        self._first_drop_ns = 0
        self._filtered = 0
        self._written = 0
        self._write_errors = 0
        self._unwritten = 0  # events given up on at close because the log never took them
        self._closing = False
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="kaudit-writer", daemon=True)
        self._writer.start()

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

    def _admit(self, item: Any) -> None:
        if self._closed:
            raise AuditUnavailableError("the recorder is closed")
        q = self._queue
        # Under concurrent callers the bound can be overshot by at most one item per
        # thread: a lock here would cost every caller more than the slack is worth.
        if len(q) < self._max and (self._healthy or not self._fail_closed):
            q.append(item)
        elif self._fail_closed:
            self._wait_for_room(item)
        else:
            self._drop()
            return
        if self._writer_idle:
            self._wake.set()

    def _wait_for_room(self, item: Any) -> None:
        deadline = time.monotonic() + self._block_timeout
        with self._space:
            self._space_waiters += 1
            try:
                while len(self._queue) >= self._max or not self._healthy:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        reason = (
                            self._last_error
                            if not self._healthy
                            else (f"the queue is full ({self._max} events)")
                        )
                        raise AuditUnavailableError(
                            f"audit event not accepted after waiting {self._block_timeout:g}s "
                            f"(failure_policy: fail_closed): {reason}"
                        )
                    self._space.wait(remaining)
                self._queue.append(item)
            finally:
                self._space_waiters -= 1

    def _drop(self) -> None:
        with self._counts_lock:
            if self._dropped_unreported == 0:
                self._first_drop_ns = time.time_ns()
            self._dropped_total += 1
            self._dropped_unreported += 1

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every event accepted before this call is durable in the log, at most
        `timeout` seconds (default: block_timeout_ms), else AuditUnavailableError."""
        barrier = _Barrier()
        self._queue.append(barrier)
        self._wake.set()
        # Bounded under both policies: a caller asking for durability must not hang
        # forever on a log that is down.
        limit = self._block_timeout if timeout is None else timeout
        if not barrier.done.wait(limit):
            raise AuditUnavailableError(
                f"events not durable after {limit:g}s: {self._last_error or 'writer is behind'}"
            )
        if barrier.error:
            raise AuditUnavailableError(barrier.error)

    def when_durable(self, callback: DurableCallback) -> None:
        """Call `callback` (on the writer thread) once every event accepted before this
        call is durable, with None, or with the reason it is not. Never blocks: sources on
        an event loop use it to hold a response until its audit record is safe."""
        if self._closed:
            callback("the recorder is closed")
            return
        self._queue.append(_Barrier(callback))
        if self._writer_idle:
            self._wake.set()

    # -- observation -------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def last_error(self) -> str | None:
        return self._last_error

    @property
    def unavailable_reason(self) -> str | None:
        """Why an event accepted now could not be made durable soon (the log is failing,
        the queue is full), or None. Lets a fail_closed source refuse at once instead of
        blocking in emit()."""
        if self._closed:
            return "the recorder is closed"
        if not self._healthy:
            return f"the audit log is failing: {self._last_error}"
        if len(self._queue) >= self._max:
            return f"the audit queue is full ({self._max} events)"
        return None

    def metrics(self) -> dict[str, int | bool]:
        """Counters named as exported: kaudit_events_* and the queue depth."""
        return {
            "kaudit_events_written_total": self._written,
            "kaudit_events_dropped_total": self._dropped_total,
            "kaudit_events_filtered_total": self._filtered,
            "kaudit_log_write_errors_total": self._write_errors,
            "kaudit_queue_depth": len(self._queue),
            "kaudit_log_healthy": self._healthy,
        }

    # -- writer side -------------------------------------------------------------------------

    def _run(self) -> None:
        q = self._queue
        batch_max = self.settings.batch_max_events
        while True:
            if not q:
                if self._closing:
                    return
                self._writer_idle = True
                if not q:
                    self._wake.wait(0.5)
                self._wake.clear()
                self._writer_idle = False
                self._tick()
                continue
            items: list[Any] = []
            barriers: list[_Barrier] = []
            while q and len(items) < batch_max:
                item = q.popleft()
                if type(item) is _Barrier:
                    # Released after this batch is written: everything before it is in
                    # the batch, and writing a few later events first does no harm.
                    barriers.append(item)
                    continue
                items.append(item)
            if self._space_waiters:
                with self._space:
                    self._space.notify_all()
            try:
                if items:
                    self._write(items)
            except BaseException as exc:  # the writer must outlive any bug in one batch
                log.exception("audit writer failed on a batch of %d events", len(items))
                if not isinstance(exc, LogWriteError):  # those are counted where raised
                    with self._counts_lock:
                        self._dropped_total += len(items)
                for b in barriers:
                    b.error = f"audit writer failed: {exc!r}"
            self._tick()
            for b in barriers:
                b.release()

    def _tick(self) -> None:
        if self.sealer is None:
            return
        now = time.monotonic()
        if now - self._last_tick >= 0.5:
            self._last_tick = now
            try:
                self.sealer.tick()
            except Exception:  # a checkpoint that fails is retried at the next tick
                log.exception("integrity checkpoint failed")

    _last_tick = 0.0

    def _write(self, items: list[Any]) -> None:
        seq = self.sink.next_sequence
        sealer = self.sealer
        if sealer is not None and sealer.seals:
            # Heads only: the sealer finishes each line with its signatures, once.
            heads = [self._line(item, seq + i, _HEAD_END) for i, item in enumerate(items)]
            lines = sealer.seal_heads(heads)
        else:
            lines = [self._line(item, seq + i) for i, item in enumerate(items)]
        keys = [_key_of(item) for item in items] if self._keyed else None
        try:
            self._append_with_retry(lines, keys)
        except LogWriteError:
            with self._counts_lock:
                self._dropped_total += len(lines)
                self._unwritten += len(lines)
            raise
        self._written += len(lines)
        if sealer is not None:
            sealer.appended(lines)
        if self._dropped_unreported:
            self._report_drops()

    def _line(self, item: Any, seq: int, end: bytes = _UNSEALED_END) -> bytes:
        """Canonical bytes of one queued item, never failing: an event whose details cannot
        be serialised is kept with those details replaced by a description of the error.
        `end` says how the line ends: unsealed, or as a head for the sealer."""
        try:
            return self._encode_item(item, seq, end)
        except (TypeError, ValueError, orjson.JSONEncodeError) as exc:
            log.error("audit event with unserialisable details kept without them: %s", exc)
            if type(item) is tuple:
                details = {"unserialisable_details": repr(item[6])[:2000], "error": str(exc)}
                item = (*item[:6], details, *item[7:])
            else:
                details = {"unserialisable_details": repr(item.details)[:2000], "error": str(exc)}
                item = replace(item, details=details)
            return self._encode_item(item, seq, end)

    def _append_with_retry(self, lines: list[bytes], keys: list[bytes] | None = None) -> None:
        backoff = Backoff(0.05, _MAX_BACKOFF_S)
        while True:
            try:
                self.sink.append(lines, keys)
            except Exception as exc:  # any failure keeps the batch for a retry: never lose it
                self._write_errors += 1
                if self._healthy:
                    log.error("audit log write failed, retrying: %s", exc)
                self._healthy = False
                self._last_error = str(exc)
                if self._closing and self._close_deadline < time.monotonic():
                    raise LogWriteError(f"giving up at close: {exc}") from exc
                time.sleep(backoff.next_wait())
                continue
            if not self._healthy:
                log.warning("audit log writable again")
                self._healthy = True
                if self._space_waiters:
                    with self._space:
                        self._space.notify_all()
            return

    def _report_drops(self) -> None:
        with self._counts_lock:
            dropped = self._dropped_unreported
            first = self._first_drop_ns
            self._dropped_unreported = 0
        now = time.time_ns()
        event = AuditEvent(
            timestamp=self._stamper.timestamp(now),
            event_type="audit.degraded",
            event_id=self._stamper.event_id(now),
            actor=Actor(type="system", id="kaudit"),
            resource=Resource(type="audit_log", id="local"),
            action=Action(operation="drop", result="failure", error=self._last_error),
            details={
                "dropped_events": dropped,
                "first_drop": self._stamper.timestamp(first),
                "recovered_at": self._stamper.timestamp(now),
                "failure_policy": self.settings.failure_policy,
                "reason": self._last_error or "queue full",
            },
        )
        self.report(event)

    def report(self, event: AuditEvent) -> None:
        """Write a recorder-made event (degradation, recovery) now, from the writer side."""
        seq = self.sink.next_sequence
        keys = [_key_of(event)] if self._keyed else None
        line = encode_line(self._finish(event, seq))
        if self.sealer is not None:
            line = self.sealer.seal(line)
        self._append_with_retry([line], keys)
        self._written += 1
        if self.sealer is not None:
            self.sealer.appended([line])

    def _encode_item(self, item: Any, seq: int, end: bytes) -> bytes:
        if type(item) is not tuple:
            line = encode_line(self._finish(item, seq))
            return line if end is _UNSEALED_END else line[:-_HEAD_CUT]
        # The hot path writes the canonical layout of codec.encode directly: fixed keys in
        # model order, free-form parts serialised with sorted keys. The part between
        # event_id and details repeats across events (same actor, resource, action), so its
        # bytes are cached. tests/recorder checks that decoding and re-encoding these lines
        # gives back the same bytes.
        (
            t_ns,
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
        ) = item
        key = (event_type, actor, resource, action, result, duration_ms, error)
        cacheable = authorization is None
        try:
            middle = self._middles.get(key) if cacheable else None
        except TypeError:  # an unhashable part (e.g. an Actor subclass with list fields)
            middle, cacheable = None, False
        if middle is None:
            middle = self._middle(item)
            if cacheable:
                if len(self._middles) >= 10_000:
                    self._middles.clear()
                self._middles[key] = middle
        context_head, context_tail = self._context_parts(source)
        stamper = self._stamper
        return b"".join(
            (
                b'{"timestamp":"',
                stamper.timestamp(t_ns).encode(),
                b'","event_type":',
                self._type_json(event_type),
                b',"event_id":"',
                stamper.event_id(t_ns).encode(),
                b'",',
                middle,
                context_head,
                b"null" if correlation_id is None else orjson.dumps(correlation_id),
                context_tail,
                orjson.dumps(self._redactor.details(details), option=_SORTED) if details else b"{}",
                b',"integrity":{"sequence_number":',
                str(seq).encode(),
                end,
            )
        )

    def _context_parts(self, source: str | None) -> tuple[bytes, bytes]:
        """The context's bytes before and after the correlation id, for one source."""
        parts = self._context_bytes.get(source)
        if parts is None:
            marker = "\x00correlation\x00"
            ctx = replace(
                self._context, source=source or self._context.source, correlation_id=marker
            )
            encoded = orjson.dumps(ctx)
            head, _, tail = encoded.partition(orjson.dumps(marker))
            parts = (b',"context":' + head, tail + b',"details":')
            self._context_bytes[source] = parts
        return parts

    def _type_json(self, event_type: str) -> bytes:
        encoded = self._type_bytes.get(event_type)
        if encoded is None:
            encoded = self._type_bytes[event_type] = orjson.dumps(event_type)
        return encoded

    def _middle(self, item: _Item) -> bytes:
        """`"version":…,"actor":…,"resource":…,"action":…,"authorization":…` of an item."""
        (
            _,
            event_type,
            actor,
            resource,
            action,
            result,
            _,
            authorization,
            _correlation_id,
            duration_ms,
            error,
            _source,
        ) = item
        if type(actor) is str:
            actor = Actor(type="user", id=actor)
        if type(resource) is str:
            rtype, _, rid = resource.partition(":")
            resource = self._with_path(rtype.lower(), rid)
        elif resource.path is None:
            resource = self._with_path(resource.type, resource.id)
        if action is None:
            action = self.catalog.get(event_type).operation
        if type(action) is str:
            action = Action(operation=action, result=result, duration_ms=duration_ms, error=error)
        part = orjson.dumps(
            {
                "version": SCHEMA_VERSION,
                "actor": actor,
                "resource": resource,
                "action": action,
                "authorization": authorization,
            },
            option=_SORTED,
        )
        # orjson sorted the keys of this dict; put them back in model order.
        parts = orjson.loads(part)
        ordered = {k: parts[k] for k in ("version", "actor", "resource", "action", "authorization")}
        return orjson.dumps(ordered)[1:-1]

    def _with_path(self, rtype: str, rid: str) -> Resource:
        """The resource with its `kafka://cluster/type/id` path (cached: resources repeat)."""
        key = (rtype, rid)
        resource = self._resources.get(key)
        if resource is None:
            cluster = self._context.cluster_id
            path = (
                f"kafka://{cluster}/{rtype}/{rid}"
                if cluster and rtype in _KAFKA_RESOURCE_TYPES
                else None
            )
            resource = Resource(type=rtype, id=rid, path=path)
            if len(self._resources) >= 10_000:
                self._resources.clear()
            self._resources[key] = resource
        return resource

    def _finish(self, event: AuditEvent, seq: int) -> AuditEvent:
        """Enrich, redact and sequence a prebuilt event."""
        c = event.context
        base = self._context
        context = replace(
            c,
            cluster_id=c.cluster_id or base.cluster_id,
            environment=c.environment or base.environment,
            host=c.host or base.host,
            source=c.source or base.source,
        )
        resource = event.resource
        if resource.path is None:
            resource = self._with_path(resource.type, resource.id)
        details = self._redactor.details(event.details) if event.details else {}
        # Sources that build events (the auditor path) leave id and time to the writer.
        now = time.time_ns()
        return replace(
            event,
            timestamp=event.timestamp or self._stamper.timestamp(now),
            event_id=event.event_id or self._stamper.event_id(now),
            context=context,
            resource=resource,
            details=details,
            integrity=Integrity(sequence_number=seq),
        )

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

    # -- lifecycle ---------------------------------------------------------------------------

    _close_deadline = 0.0

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (waiting up to `timeout` for a failing log), then stop."""
        if self._closed:
            return
        self._close_deadline = time.monotonic() + timeout
        self._closing = True
        self._wake.set()
        # The writer may be inside one append, which the sink bounds by its own write
        # timeout; wait for it so that what it gives up on is counted below.
        self._writer.join(timeout + 120)
        self._closed = True
        left = sum(1 for i in self._queue if type(i) is not _Barrier) + self._unwritten
        if left:
            log.error(
                "audit recorder closed with %d events not written: %s", left, self._last_error
            )
            with self._counts_lock:
                self._dropped_total += left - self._unwritten
        if self.sealer is not None:
            try:
                self.sealer.close(checkpoint=self._healthy)  # the final checkpoint
            except Exception:
                log.exception("final integrity checkpoint failed")
        self.sink.close()
        if left:
            raise AuditUnavailableError(
                f"{left} audit events could not be written before close: {self._last_error}"
            )

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _key_of(item: Any) -> bytes:
    """The partitioning key of a queued item: its resource as `type:id`."""
    resource = item[3] if type(item) is tuple else item.resource
    if type(resource) is str:
        return resource.encode()
    return f"{resource.type}:{resource.id}".encode()


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
