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
from dataclasses import replace
from typing import Any

from kaudit.events.catalog import EventCatalog
from kaudit.events.codec import LineLayout, encode_act, encode_head, encode_line
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
            log.error("audit event with unserialisable details kept without them: %s", exc)
            if type(item) is tuple:
                details = {"unserialisable_details": repr(item[6])[:2000], "error": str(exc)}
                item = (*item[:6], details, *item[7:])
            else:
                details = {"unserialisable_details": repr(item.details)[:2000], "error": str(exc)}
                item = replace(item, details=details)
            return self._encode(item, seq, head)

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
        cacheable = authorization is None
        try:
            act = self._acts.get(key) if cacheable else None
        except TypeError:  # an unhashable part (e.g. an Actor subclass with list fields)
            act, cacheable = None, False
        if act is None:
            act = self._act(
                event_type, actor, resource, action, result, authorization, duration_ms, error
            )
            if cacheable:
                if len(self._acts) >= _CACHE_MAX:
                    self._acts.clear()
                self._acts[key] = act
        layout = self._layouts.get(source)
        if layout is None:
            context = replace(self.context, source=source or self.context.source)
            layout = self._layouts[source] = LineLayout(context)
        stamper = self.stamper
        return layout.line(
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


def key_of(item: Any) -> bytes:
    """The partitioning key of a queued item: its resource as `type:id`."""
    resource = item[3] if type(item) is tuple else item.resource
    if type(resource) is str:
        return resource.encode()
    return f"{resource.type}:{resource.id}".encode()
