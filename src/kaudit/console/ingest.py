"""HTTP ingest: other tools (a backup tool's `backup.*` / `restore.*` events, say) send
audit events to `POST /api/v1/events`.

This module owns that route: the bearer token that names the sending source (compared in
constant time against every configured one), the body size limit, reading a batch of
events written as native kaudit JSON or as CloudEvents (JSON structured mode), checking
each against the event catalog and the source's allowed event-type globs, and handing the
accepted ones to the recorder. The reply lists, by position in the batch, the events
accepted (with the id they are recorded under) and those refused, with the reason.

Every accepted event is recorded with `context.source` = `ingest:<source name>`, whatever
the body says, so a source cannot pass its events off as another's; any `integrity` in
the body is dropped (the log's writer assigns it). A request without a valid token is
recorded as `auth.failed`, and events of types beyond the token's grant as one
`access.denied` per request. Failed authentications are limited per address: past the
limit a request is answered 429 and not recorded (so bad tokens cannot flood the log);
how many were left out is logged as a warning, at most once per window.

The route authenticates by bearer token instead of the console session: it is the
listed public exception to "every route behind login".
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from kaudit.config.console_auth import IngestSource
from kaudit.console.sessions import LoginLimiter
from kaudit.errors import AuditUnavailableError, EventDecodeError
from kaudit.events.catalog import CATALOG, EventCatalog
from kaudit.events.codec import from_dict
from kaudit.events.formats.cloudevents import TYPE_PREFIX, from_cloudevent, parse_rfc3339
from kaudit.events.model import Action, Actor, AuditEvent, Context, Resource, Result
from kaudit.recorder.stamp import Stamper

__all__ = ["INGEST_PATH", "SOURCE_PREFIX", "FailureLimit", "ingest_router"]

log = logging.getLogger("kaudit.console.ingest")

INGEST_PATH = "/api/v1/events"
SOURCE_PREFIX = "ingest:"
_MAX_EVENT_ID = 128

RecordBatch = Callable[[list[AuditEvent]], None]

_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A native kaudit event (event_type, actor, resource, optional action, "
    "details, timestamp, event_id) or a CloudEvent in JSON structured mode (specversion, "
    "id, source, type, optional subject, time and data)",
}
_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"oneOf": [_EVENT_SCHEMA, {"type": "array", "items": _EVENT_SCHEMA}]}
        }
    },
}


class Refused(Exception):
    """One event of a batch that is not recorded; the message says why."""


class FailureLimit:
    """Failed ingest authentications per address (`limiter`), and the count of those past
    the limit that were answered without being recorded."""

    def __init__(self, limiter: LoginLimiter) -> None:
        self.limiter = limiter
        self.unrecorded = 0
        self._warned_at: float | None = None
        self._lock = threading.Lock()

    def admit(self, address: str | None) -> bool:
        """Whether this failure is recorded (and counted); else it is only counted here."""
        if self.limiter.attempt(None, address) is not None:
            return True
        now = time.monotonic()
        with self._lock:
            self.unrecorded += 1
            if self._warned_at is None or now - self._warned_at >= self.limiter.window:
                self._warned_at = now
                log.warning(
                    "ingest: %d failed authentications not recorded so far: more than %d "
                    "from one address within %gs (latest from %s)",
                    self.unrecorded, self.limiter.per_address, self.limiter.window, address,
                )  # fmt: skip
        return False


class NotAllowed(Refused):
    """An event whose type the sending source's `event_types` does not grant."""

    def __init__(self, message: str, event_type: str) -> None:
        super().__init__(message)
        self.event_type = event_type


def ingest_router(
    sources: list[IngestSource],
    record: RecordBatch,
    max_body_bytes: int,
    *,
    catalog: EventCatalog = CATALOG,
    failures: FailureLimit | None = None,
) -> APIRouter:
    """The `POST /api/v1/events` route.

    `record` takes the accepted events of one request (e.g. the recorder's
    `record_many`); it runs in a worker thread, so it may block until they are durable.
    `catalog` is the recorder's, so custom event types it declares are accepted.
    `failures` limits the failed authentications recorded per address (default: 20
    within 15 minutes, as the console's login limits).
    """
    failures = failures or FailureLimit(LoginLimiter(1, 20, 900.0))
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be at least 1, got {max_body_bytes}")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"ingest source names must be unique; repeated: {', '.join(repeated)}")
    for source in sources:
        for glob in source.event_types:
            if not catalog.matching(glob):
                raise ValueError(
                    f"ingest source {source.name!r}: event_types entry {glob!r} matches no "
                    "event type in the catalog (declare custom types under "
                    "audit.custom_event_types)"
                )
    # Compared as SHA-256 digests: equal lengths, so the comparison's time says nothing
    # about a token's length either.
    tokens = [(_digest(s.token.get_secret_value()), s) for s in sources]
    if len({t for t, _ in tokens}) != len(tokens):
        raise ValueError("ingest sources must have different tokens: a token names its source")
    stamper = Stamper()
    router = APIRouter(tags=["ingest"])

    def authenticate(request: Request) -> IngestSource | None:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        given = _digest(presented.strip())
        found = None
        # Every token is compared, in constant time, so the reply's timing says nothing
        # about which token (or how much of one) was close.
        for token, source in tokens:
            if hmac.compare_digest(given, token):
                found = source
        return found

    @router.post(
        INGEST_PATH,
        summary="Record a batch of audit events from another tool",
        responses={
            200: {"description": "Some or all events accepted; the refused ones listed"},
            400: {"description": "The body is not JSON, or not an event or a list of events"},
            401: {"description": "No valid bearer token"},
            429: {"description": "Too many requests without a valid token from this address"},
            413: {"description": "The body is larger than the limit"},
            422: {"description": "Every event of the batch was refused"},
            503: {"description": "The audit log cannot take the events now; retry"},
        },
        openapi_extra={"requestBody": _REQUEST_BODY},
    )
    async def ingest(request: Request) -> JSONResponse:
        source = authenticate(request)
        if source is None:
            if not failures.admit(_client(request)[0]):
                return _error(429, "too many requests without a valid bearer token; try later")
            await _record_quietly(record, [_auth_failed(request, stamper)])
            return _error(
                401,
                "a valid bearer token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": 'Bearer realm="kaudit ingest"'},
            )
        body = await _read_body(request, max_body_bytes)
        if isinstance(body, JSONResponse):
            return body
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(400, f"the body is not valid JSON: {exc}")
        items = [document] if isinstance(document, dict) else document
        if not isinstance(items, list):
            return _error(
                400,
                "the body must be an event (a JSON object) or a batch (a JSON array of "
                f"events), got a JSON {type(document).__name__}",
            )
        if not items:
            return _error(400, "the batch is empty: send at least one event")
        accepted: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []
        events: list[AuditEvent] = []
        not_allowed: list[str] = []
        for index, item in enumerate(items):
            try:
                event = _accept(item, source, catalog, stamper)
            except NotAllowed as exc:
                not_allowed.append(exc.event_type)
                refused.append({"index": index, "event_id": _id_of(item), "reason": str(exc)})
                continue
            except Refused as exc:
                refused.append({"index": index, "event_id": _id_of(item), "reason": str(exc)})
                continue
            events.append(event)
            accepted.append(
                {"index": index, "event_id": event.event_id, "event_type": event.event_type}
            )
        if not_allowed:
            # A source sending types beyond its grant is an authorization failure worth
            # auditing in its own right (one event per request, not per event).
            events.append(_access_denied(request, source, not_allowed, stamper))
        if events:
            try:
                await run_in_threadpool(record, events)
            except AuditUnavailableError as exc:
                return _error(503, f"the audit log cannot take the events now, retry later: {exc}")
        status = 200 if accepted else 422
        return JSONResponse(
            {"source": source.name, "accepted": accepted, "refused": refused},
            status_code=status,
        )

    return router


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _client(request: Request) -> tuple[str | None, str | None]:
    address = request.client.host if request.client is not None else None
    return address, request.headers.get("user-agent")


def _auth_failed(request: Request, stamper: Stamper) -> AuditEvent:
    """`auth.failed` for a request without a valid token: who tried, from where."""
    address, user_agent = _client(request)
    now = time.time_ns()
    return AuditEvent(
        timestamp=stamper.timestamp(now),
        event_type="auth.failed",
        event_id=stamper.event_id(now),
        actor=Actor(
            type="client",
            id=address or "unknown",
            ip_address=address,
            user_agent=user_agent,
            auth="bearer",
        ),
        resource=Resource(type="ingest", id=INGEST_PATH),
        action=Action(operation="authenticate", result="failure", error="no valid bearer token"),
        context=Context(source="ingest"),
    )


def _access_denied(
    request: Request, source: IngestSource, event_types: list[str], stamper: Stamper
) -> AuditEvent:
    """`access.denied` for events a source sent beyond its `event_types`."""
    address, user_agent = _client(request)
    now = time.time_ns()
    return AuditEvent(
        timestamp=stamper.timestamp(now),
        event_type="access.denied",
        event_id=stamper.event_id(now),
        actor=Actor(
            type="service",
            id=SOURCE_PREFIX + source.name,
            ip_address=address,
            user_agent=user_agent,
            auth="bearer",
        ),
        resource=Resource(type="ingest", id=INGEST_PATH),
        action=Action(operation="send_events", result="denied"),
        context=Context(source=SOURCE_PREFIX + source.name),
        details={
            "denied_event_types": sorted(set(event_types)),
            "allowed_event_types": list(source.event_types),
        },
    )


async def _record_quietly(record: RecordBatch, events: list[AuditEvent]) -> None:
    # The refusal stands whether or not the log could take its record of it (under
    # fail_open the recorder counts what it drops; under fail_closed it said why).
    with contextlib.suppress(AuditUnavailableError):
        await run_in_threadpool(record, events)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes | JSONResponse:
    too_large = _error(
        413,
        f"the body is larger than the limit of {limit} bytes; send the events in smaller batches",
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return too_large
    chunks: list[bytes] = []
    size = 0
    # Counted as it arrives, so a chunked body without a length cannot exceed the limit.
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _id_of(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    value = item.get("event_id", item.get("id"))
    return value if isinstance(value, str) else None


def _accept(item: Any, source: IngestSource, catalog: EventCatalog, stamper: Stamper) -> AuditEvent:
    """The event `item` describes, checked and stamped with its source, or `Refused`."""
    if not isinstance(item, dict):
        raise Refused(f"an event must be a JSON object, got a JSON {type(item).__name__}")
    event = _cloudevent(item, catalog) if "specversion" in item else _native(item, catalog)
    if event.event_type not in catalog:
        raise Refused(catalog.unknown_message(event.event_type))
    if not source.may_send(event.event_type):
        raise NotAllowed(
            f"source {source.name!r} may not send {event.event_type!r} events "
            f"(its event_types: {', '.join(source.event_types)})",
            event.event_type,
        )
    if event.timestamp and parse_rfc3339(event.timestamp) is None:
        raise Refused(
            f"timestamp must be an RFC 3339 date-time (like 2026-12-01T10:15:30.123Z), "
            f"got {event.timestamp!r}"
        )
    if len(event.event_id) > _MAX_EVENT_ID:
        raise Refused(f"event_id must be at most {_MAX_EVENT_ID} characters")
    now = time.time_ns()
    return replace(
        event,
        event_id=event.event_id or stamper.event_id(now),
        timestamp=event.timestamp or stamper.timestamp(now),
        context=replace(event.context, source=SOURCE_PREFIX + source.name),
        integrity=None,
    )


def _native(item: Mapping[str, Any], catalog: EventCatalog) -> AuditEvent:
    """A native kaudit event; `event_id`, `timestamp` and `action` may be left out (the
    id and time are then assigned here, the operation is the event type's)."""
    event_type = item.get("event_type")
    if not isinstance(event_type, str):
        raise Refused("event_type is missing (or not a string)")
    if event_type not in catalog:
        raise Refused(catalog.unknown_message(event_type))
    obj = {"event_id": "", "timestamp": "", **item}
    obj.setdefault(
        "action",
        {"operation": catalog.get(event_type).operation, "result": _result_of(event_type)},
    )
    try:
        return from_dict(obj)
    except EventDecodeError as exc:
        raise Refused(str(exc)) from None


def _cloudevent(item: Mapping[str, Any], catalog: EventCatalog) -> AuditEvent:
    """A CloudEvent (JSON structured mode).

    Its `data` is either a whole native event (as kaudit's own CloudEvents output carries
    it) or the event's details; in the second case `type` is the event type (with or
    without the `io.kaudit.` prefix), `source` the actor, `subject` the resource
    (`type/id`), `time` the timestamp and `id` the event id.
    """
    data = item.get("data")
    if isinstance(data, dict) and "event_type" in data:
        try:
            return from_cloudevent(item)
        except EventDecodeError as exc:
            raise Refused(str(exc)) from None
    if item.get("specversion") != "1.0":
        raise Refused(f"CloudEvent specversion must be '1.0', got {item.get('specversion')!r}")
    attrs: dict[str, str] = {}
    for key in ("id", "source", "type"):
        value = item.get(key)
        if not isinstance(value, str) or not value:
            raise Refused(f"CloudEvent {key} must be a non-empty string, got {value!r}")
        attrs[key] = value
    for key in ("time", "subject"):
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise Refused(f"CloudEvent {key} must be a string, got {value!r}")
    content_type = item.get("datacontenttype")
    if content_type is not None and (
        not isinstance(content_type, str)
        or content_type.split(";")[0].strip().lower() != "application/json"
    ):
        raise Refused(f"CloudEvent datacontenttype must be application/json, got {content_type!r}")
    if data is not None and not isinstance(data, dict):
        raise Refused("CloudEvent data must be a JSON object (the event's details)")
    event_type = attrs["type"].removeprefix(TYPE_PREFIX)
    if event_type not in catalog:
        raise Refused(catalog.unknown_message(event_type))
    kind = catalog.get(event_type)
    subject = item.get("subject") or attrs["id"]
    rtype, sep, rid = subject.partition("/")
    return AuditEvent(
        timestamp=item.get("time") or "",
        event_type=event_type,
        event_id=attrs["id"],
        actor=Actor(type="service", id=attrs["source"]),
        resource=Resource(type=rtype, id=rid) if sep and rid else Resource(kind.category, subject),
        action=Action(operation=kind.operation, result=_result_of(event_type)),
        details=data or {},
    )


def _result_of(event_type: str) -> Result:
    """The result an event type implies when the sender gives none (`backup.failed`)."""
    verb = event_type.partition(".")[2]
    return "failure" if verb == "failed" else "denied" if verb == "denied" else "success"
