"""Queue items into canonical lines, on the writer thread: event ids and timestamps,
enrichment (context, resource paths), redaction, and the bytes themselves, which come
from kaudit.events.codec (the one serialiser).

An item is either a prebuilt `AuditEvent` (Recorder.record), encoded whole, or the tuple
Recorder.emit queues, with nothing computed yet:

    (time_ns, event_type, actor, resource, action, result, details, authorization,
     correlation_id, duration_ms, error, source)

Tuples take the fast path: the codec's `LineLayout` for their source, with the bytes of
who did what to which resource (`encode_act`) cached, since they repeat across events.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson

from kaudit.events.catalog import EventCatalog
from kaudit.events.codec import (
    DETAILS_OPTIONS,
    LineLayout,
    encode_act,
    encode_head,
    encode_line,
)
from kaudit.events.model import (
    Action,
    Actor,
    AuditEvent,
    Authorization,
    Context,
    Integrity,
    Resource,
    Result,
)
from kaudit.recorder.redact import Redactor
from kaudit.recorder.settings import RecorderSettings
from kaudit.recorder.stamp import Stamper

log = logging.getLogger("kaudit.recorder")

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
_CACHE_MAX = 10_000
_NO_SOURCE = object()  # before the first item of a batch: no layout chosen yet


class ItemEncoder:
    """Turns queue items into canonical lines; one per writer thread (not thread-safe)."""

    def __init__(self, settings: RecorderSettings, catalog: EventCatalog) -> None:
        self.catalog = catalog
        self.redactor = Redactor(settings.redact_keys)
        self.stamper = Stamper()
        self.context = Context(
            cluster_id=settings.cluster_id,
            environment=settings.environment,
            source=settings.source,
            host=settings.host or socket.gethostname(),
        )
        self._resources: dict[tuple[str, str], Resource] = {}
        self._acts: dict[tuple[Any, ...], bytes] = {}
        self._layouts: dict[str | None, LineLayout] = {}

    def reconfigure(self, catalog: EventCatalog, redact_keys: tuple[str, ...]) -> None:
        """Use this catalog and these redaction patterns from the next item on (called
        from another thread: each is swapped whole; the cache of encoded acts, which
        took actions from the old catalog, starts afresh)."""
        self.redactor = Redactor(redact_keys)
        self.catalog = catalog
        self._acts = {}

    def line(self, item: Any, seq: int, *, head: bool = False) -> bytes:
        """Canonical bytes of one queued item, never failing: an event whose details cannot
        be serialised is kept with those details replaced by a description of the error.
        With `head`, the line ends at `"signature":`, for the sealer to finish."""
        try:
            return self._encode(item, seq, head)
        except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
            if type(item) is tuple:
                item = (*item[:6], _unserialisable(item[6], exc), *item[7:])
            else:
                item = replace(item, details=_unserialisable(item.details, exc))
            return self._encode(item, seq, head)

    def lines(self, items: Sequence[Any], seq: int, *, head: bool = False) -> list[bytes]:
        """`line` of each item, numbered from `seq`, byte for byte. A batch of emit()'s
        tuples is made in one loop: stamps for the whole batch at once, and the parts
        that repeat (the timestamp's bytes within a millisecond, the event type's) joined
        once; a batch holding prebuilt events is made item by item, so that ids still
        sort in log order."""
        times = [item[0] for item in items if type(item) is tuple]
        if len(times) != len(items):
            return [self.line(item, seq + i, head=head) for i, item in enumerate(items)]
        stamps, ids = self.stamper.stamps(times)
        redact = self.redactor.details
        acts = self._acts
        dumps = orjson.dumps
        types: dict[str, bytes] = {}
        out: list[bytes] = []
        add = out.append
        source: Any = _NO_SOURCE
        stamp: bytes | None = None
        stamp_block = b""
        for i, item in enumerate(items):
            (
                _,
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
                item_source,
            ) = item
            if item_source != source:
                source = item_source
                frame = self._layout(source).frame(head=head)
                start, after_stamp, after_type, after_id, after_act, after_corr = frame[:6]
                after_details, end = frame[6:]
                stamp, types = None, {}
            if stamps[i] is not stamp:  # one bytes object per millisecond
                stamp = stamps[i]
                stamp_block = start + stamp + after_stamp
            type_block = types.get(event_type)
            if type_block is None:
                type_block = types[event_type] = dumps(event_type) + after_type
            key = (event_type, actor, resource, action, result, duration_ms, error)
            try:
                act = acts.get(key) if authorization is None else None
            except TypeError:  # an unhashable part (e.g. an Actor subclass with list fields)
                act = None
            if act is None:
                act = self._cached_act(key, authorization)
            try:
                details_json = dumps(redact(details), option=DETAILS_OPTIONS) if details else b"{}"
            except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
                details_json = dumps(redact(_unserialisable(details, exc)), option=DETAILS_OPTIONS)
            add(
                b"".join(
                    (
                        stamp_block,
                        type_block,
                        ids[i],
                        after_id,
                        act,
                        after_act,
                        b"null" if correlation_id is None else dumps(correlation_id),
                        after_corr,
                        details_json,
                        after_details,
                        b"%d" % (seq + i),
                        end,
                    )
                )
            )
        return out

    def _cached_act(self, key: tuple[Any, ...], authorization: Authorization | None) -> bytes:
        """`_act` of an item's parts (`key` as `lines` builds it), kept when it can be."""
        event_type, actor, resource, action, result, duration_ms, error = key
        act = self._act(
            event_type, actor, resource, action, result, authorization, duration_ms, error
        )
        if authorization is None:
            try:
                hash(key)
            except TypeError:
                return act
            if len(self._acts) >= _CACHE_MAX:
                self._acts.clear()
            self._acts[key] = act
        return act

    def _layout(self, source: str | None) -> LineLayout:
        layout = self._layouts.get(source)
        if layout is None:
            context = replace(self.context, source=source or self.context.source)
            layout = self._layouts[source] = LineLayout(context)
        return layout

    def _encode(self, item: Any, seq: int, head: bool) -> bytes:
        if type(item) is not tuple:
            event = self.finish(item, seq)
            return encode_head(event) if head else encode_line(event)
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
        try:
            act = self._acts.get(key) if authorization is None else None
        except TypeError:  # an unhashable part (e.g. an Actor subclass with list fields)
            act = None
        if act is None:
            act = self._cached_act(key, authorization)
        stamper = self.stamper
        return self._layout(source).line(
            stamper.timestamp(t_ns),
            event_type,
            stamper.event_id(t_ns),
            act,
            correlation_id,
            self.redactor.details(details) if details else None,
            seq,
            head=head,
        )

    def _act(
        self,
        event_type: str,
        actor: Any,
        resource: Any,
        action: Any,
        result: Result,
        authorization: Authorization | None,
        duration_ms: float | None,
        error: str | None,
    ) -> bytes:
        """The codec's bytes of actor through authorization, from emit()'s arguments
        (`actor`, `resource` and `action` as emit() left them: model objects or strings)."""
        if type(actor) is str:
            actor = Actor(type="user", id=actor)
        if type(resource) is str:
            rtype, _, rid = resource.partition(":")
            resource = self.with_path(rtype.lower(), rid)
        elif resource.path is None:
            resource = self.with_path(resource.type, resource.id)
        if action is None:
            action = self.catalog.get(event_type).operation
        if type(action) is str:
            action = Action(operation=action, result=result, duration_ms=duration_ms, error=error)
        return encode_act(actor, resource, action, authorization)

    def with_path(self, rtype: str, rid: str) -> Resource:
        """The resource with its `kafka://cluster/type/id` path (cached: resources repeat)."""
        key = (rtype, rid)
        resource = self._resources.get(key)
        if resource is None:
            cluster = self.context.cluster_id
            path = (
                f"kafka://{cluster}/{rtype}/{rid}"
                if cluster and rtype in _KAFKA_RESOURCE_TYPES
                else None
            )
            resource = Resource(type=rtype, id=rid, path=path)
            if len(self._resources) >= _CACHE_MAX:
                self._resources.clear()
            self._resources[key] = resource
        return resource

    def finish(self, event: AuditEvent, seq: int) -> AuditEvent:
        """Enrich, redact and sequence a prebuilt event."""
        c = event.context
        base = self.context
        context = replace(
            c,
            cluster_id=c.cluster_id or base.cluster_id,
            environment=c.environment or base.environment,
            host=c.host or base.host,
            source=c.source or base.source,
        )
        resource = event.resource
        if resource.path is None:
            resource = self.with_path(resource.type, resource.id)
        details = self.redactor.details(event.details) if event.details else {}
        # Sources that build events (the auditor path) leave id and time to the writer.
        now = time.time_ns()
        return replace(
            event,
            timestamp=event.timestamp or self.stamper.timestamp(now),
            event_id=event.event_id or self.stamper.event_id(now),
            context=context,
            resource=resource,
            details=details,
            integrity=Integrity(sequence_number=seq),
        )


_SAFE_DEPTH = 32


def _json_safe(value: Any, depth: int = 0) -> Any:
    """`value` with what JSON cannot hold named by its type: mappings, lists and plain
    values stay, keyed as they were, so the redactor still finds sensitive keys and values
    in them (a repr() of the whole would carry a password past it into the log)."""
    if value is None or type(value) in (str, bool, float):
        return value
    if type(value) is int:
        return value if -(2**63) <= value < 2**64 else str(value)
    if depth >= _SAFE_DEPTH:
        return "<nested too deep>"
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v, depth + 1) for v in value]
    return f"<unserialisable {type(value).__name__}>"


def _unserialisable(details: Any, exc: Exception) -> dict[str, Any]:
    """What is kept of details that cannot be serialised: what they were, as far as JSON
    holds it (redacted as any details), and why."""
    log.error("audit event with unserialisable details kept without them: %s", exc)
    return {"unserialisable_details": _json_safe(details), "error": str(exc)}


def key_of(item: Any) -> bytes:
    """The partitioning key of a queued item: its resource as `type:id`."""
    resource = item[3] if type(item) is tuple else item.resource
    if type(resource) is str:
        return resource.encode()
    return f"{resource.type}:{resource.id}".encode()
