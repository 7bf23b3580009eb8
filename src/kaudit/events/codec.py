"""The one serialiser: canonical bytes of an event, used for hashing, the log and output.

Canonical means: UTF-8, compact (no spaces), keys of the fixed model in model order,
keys of free-form mappings (`details`, RBAC policies) sorted, every model key present.
Decoding then encoding gives back the same bytes, which is what signatures rely on.

A writer that makes many events assembles their lines from parts instead (`LineLayout`,
`encode_act`, `encode_head`): the fixed bytes between the parts are cut out of what
`encode_line` writes for a template event, so both ways give the same bytes.

`details` must hold plain JSON types (dict, list, str, int within 64 bits, float, bool,
None): tuples come back as lists, and JSON has no NaN or infinity, so non-finite floats
are written as null.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, cast

import orjson

from kaudit.errors import EventDecodeError, EventEncodeError
from kaudit.events.model import (
    RESULTS,
    Action,
    Actor,
    ApiRef,
    AuditEvent,
    AuthCheck,
    Authorization,
    Context,
    Integrity,
    Resource,
)

_OPTIONS = orjson.OPT_SORT_KEYS
DETAILS_OPTIONS = _OPTIONS
"""The orjson options free-form mappings (`details`) are serialised with."""


def encode(event: AuditEvent) -> bytes:
    """Canonical bytes of `event`, without a trailing newline."""
    try:
        return orjson.dumps(event, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise EventEncodeError(f"event {event.event_id!r} cannot be serialised: {exc}") from exc


def encode_line(event: AuditEvent) -> bytes:
    """Canonical bytes of `event` as one JSON Lines line."""
    try:
        return orjson.dumps(event, option=_OPTIONS | orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError as exc:
        raise EventEncodeError(f"event {event.event_id!r} cannot be serialised: {exc}") from exc


def to_dict(event: AuditEvent) -> dict[str, Any]:
    """The event as plain JSON types, keys in canonical order."""
    return cast(dict[str, Any], orjson.loads(encode(event)))


# -- lines assembled from parts ---------------------------------------------------------------
#
# The marker of a part that varies is a string no real value encodes to (NUL is escaped in
# JSON); a template event holds one in each such part, whatever that part's type, and
# the template's line is cut at them.


def _marker(part: str) -> str:
    return f"\x00kaudit:{part}\x00"


# Parts written as given between the quotes of a JSON string (no encoding, no escaping).
_RAW_PARTS = frozenset({"timestamp", "event_id"})
# Parts that vary, in the order they stand in a line.
_PARTS = (
    "timestamp",
    "event_type",
    "event_id",
    "actor",
    "resource",
    "action",
    "authorization",
    "correlation_id",
    "details",
    "sequence_number",
    "signature",
)


def _cut(context: Context) -> tuple[bytes, dict[str, bytes]]:
    """The fixed bytes of a line of events with this context: those before the first part
    that varies, and those after each part (up to the next), cut out of `encode_line` of a
    template event."""
    m = {part: cast(Any, _marker(part)) for part in _PARTS}
    template = AuditEvent(
        timestamp=m["timestamp"],
        event_type=m["event_type"],
        event_id=m["event_id"],
        actor=m["actor"],
        resource=m["resource"],
        action=m["action"],
        authorization=m["authorization"],
        context=replace(context, correlation_id=m["correlation_id"]),
        details=m["details"],
        integrity=Integrity(sequence_number=m["sequence_number"], signature=m["signature"]),
    )
    rest = encode_line(template)
    pieces = []
    for part in _PARTS:
        marker = orjson.dumps(m[part])
        if part in _RAW_PARTS:
            marker = marker[1:-1]  # the bytes around it keep the quotes
        piece, found, rest = rest.partition(marker)
        if not found or marker in rest:  # out of model order, or a context value holds it
            raise ValueError(f"cannot cut the line of {context!r} once at {part!r}")
        pieces.append(piece)
    start, *after = (*pieces, rest)
    return start, dict(zip(_PARTS, after, strict=True))


_, _AFTER = _cut(Context())  # the bytes between actor, resource, action and authorization
# How the line of an event with integrity but no signatures yet ends, from `"signature":` on.
_UNSEALED_END = b"null" + _AFTER["signature"]


def encode_head(event: AuditEvent) -> bytes:
    """The head of an unsealed event's line: its canonical bytes up to and including
    `"signature":`, for the integrity chain to finish with the signatures."""
    line = encode_line(event)
    if not line.endswith(_UNSEALED_END):
        raise ValueError(f"event {event.event_id!r} is already sealed (or has no integrity)")
    return line[: -len(_UNSEALED_END)]


def encode_act(
    actor: Actor, resource: Resource, action: Action, authorization: Authorization | None
) -> bytes:
    """Canonical bytes of who did what to which resource, allowed or not: the parts of a
    line from actor through authorization, for `LineLayout.line`. They repeat across the
    events of one client, so a writer can keep them."""
    return b"".join(
        (
            orjson.dumps(actor, option=_OPTIONS),
            _AFTER["actor"],
            orjson.dumps(resource, option=_OPTIONS),
            _AFTER["resource"],
            orjson.dumps(action, option=_OPTIONS),
            _AFTER["action"],
            orjson.dumps(authorization, option=_OPTIONS),
        )
    )


class LineLayout:
    """Canonical lines of events that share a context (all but the correlation id),
    assembled from their parts: what a writer of many events does instead of encoding each
    one whole. `line()` gives byte for byte what `encode_line` gives for the same event
    (version SCHEMA_VERSION, integrity holding only the sequence number)."""

    __slots__ = (
        "_after_act",
        "_after_correlation",
        "_after_details",
        "_after_event_id",
        "_after_event_type",
        "_after_timestamp",
        "_head_end",
        "_start",
        "_types",
        "_unsealed_end",
    )

    def __init__(self, context: Context) -> None:
        self._start, after = _cut(context)
        self._after_timestamp = after["timestamp"]
        self._after_event_type = after["event_type"]
        self._after_event_id = after["event_id"]  # and version, which is fixed
        self._after_act = after["authorization"]
        self._after_correlation = after["correlation_id"]
        self._after_details = after["details"]
        self._head_end = after["sequence_number"]  # up to `"signature":`
        self._unsealed_end = self._head_end + b"null" + after["signature"]
        self._types: dict[str, bytes] = {}

    def frame(self, *, head: bool = False) -> tuple[bytes, ...]:
        """The fixed bytes of this layout's lines, for a writer that joins many lines
        itself: (start, after timestamp, after event type, after event id, after
        authorization, after correlation id, after details, end). The parts go between
        them in that order: the timestamp and the event id as they are (the quotes are in
        the frame), the event type's and the correlation id's JSON, `encode_act`, the
        details' JSON (orjson with DETAILS_OPTIONS; `{}` when empty) and the sequence
        number's digits. With `head`, the end stops at `"signature":`."""
        return (
            self._start,
            self._after_timestamp,
            self._after_event_type,
            self._after_event_id,
            self._after_act,
            self._after_correlation,
            self._after_details,
            self._head_end if head else self._unsealed_end,
        )

    def line(
        self,
        timestamp: str,
        event_type: str,
        event_id: str,
        act: bytes,
        correlation_id: str | None,
        details: Mapping[str, Any] | None,
        sequence_number: int,
        *,
        head: bool = False,
    ) -> bytes:
        """One event's line (its head, up to `"signature":`, with `head`).

        `act` is `encode_act` of its actor, resource, action and authorization.
        `timestamp` and `event_id` are written as given between quotes, so they must need
        no escaping (the recorder's ids and RFC 3339 times do not). Details that cannot be
        serialised raise orjson.JSONEncodeError (a TypeError).
        """
        type_bytes = self._types.get(event_type)
        if type_bytes is None:
            type_bytes = self._types[event_type] = orjson.dumps(event_type)
        return b"".join(
            (
                self._start,
                timestamp.encode(),
                self._after_timestamp,
                type_bytes,
                self._after_event_type,
                event_id.encode(),
                self._after_event_id,
                act,
                self._after_act,
                b"null" if correlation_id is None else orjson.dumps(correlation_id),
                self._after_correlation,
                orjson.dumps(details, option=_OPTIONS) if details else b"{}",
                self._after_details,
                str(sequence_number).encode(),
                self._head_end if head else self._unsealed_end,
            )
        )


def decode(data: bytes | str) -> AuditEvent:
    """Parse canonical (or any equivalent) JSON bytes back into an event."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EventDecodeError(f"not JSON: {exc}") from exc
    return from_dict(obj)


def from_dict(obj: object) -> AuditEvent:
    """Build an event from plain JSON types, checking every field's type."""
    try:
        return _event(_mapping(obj, "event"))
    except (KeyError, TypeError) as exc:
        raise EventDecodeError(f"not an audit event: {exc}") from exc


_MISSING = object()


def _req(o: Mapping[str, Any], key: str, where: str) -> Any:
    value = o.get(key, _MISSING)
    if value is _MISSING:
        raise TypeError(f"{where} is missing")
    return value


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{where} must be an object, got {type(value).__name__}")
    return value


def _str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{where} must be a string, got {type(value).__name__}")
    return value


def _opt_str(value: object, where: str) -> str | None:
    return None if value is None else _str(value, where)


def _int(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{where} must be an integer, got {type(value).__name__}")
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{where} must be true or false, got {type(value).__name__}")
    return value


def _event(o: Mapping[str, Any]) -> AuditEvent:
    authorization = o.get("authorization")
    integrity = o.get("integrity")
    details = o.get("details")
    context = o.get("context")
    return AuditEvent(
        timestamp=_str(_req(o, "timestamp", "timestamp"), "timestamp"),
        event_type=_str(_req(o, "event_type", "event_type"), "event_type"),
        event_id=_str(_req(o, "event_id", "event_id"), "event_id"),
        version=_str(o.get("version", "1.0"), "version"),
        actor=_actor(_mapping(_req(o, "actor", "actor"), "actor")),
        resource=_resource(_mapping(_req(o, "resource", "resource"), "resource")),
        action=_action(_mapping(_req(o, "action", "action"), "action")),
        authorization=None
        if authorization is None
        else _authorization(_mapping(authorization, "authorization")),
        context=Context() if context is None else _context(_mapping(context, "context")),
        details={} if details is None else dict(_mapping(details, "details")),
        integrity=None if integrity is None else _integrity(_mapping(integrity, "integrity")),
    )


def _actor(o: Mapping[str, Any]) -> Actor:
    roles = o.get("roles") or ()
    if not isinstance(roles, list | tuple):
        raise TypeError("actor.roles must be a list")
    return Actor(
        type=_str(_req(o, "type", "actor.type"), "actor.type"),
        id=_str(_req(o, "id", "actor.id"), "actor.id"),
        roles=tuple(_str(r, "actor.roles[]") for r in roles),
        ip_address=_opt_str(o.get("ip_address"), "actor.ip_address"),
        user_agent=_opt_str(o.get("user_agent"), "actor.user_agent"),
        client_id=_opt_str(o.get("client_id"), "actor.client_id"),
        auth=_opt_str(o.get("auth"), "actor.auth"),
        authorized_as=_opt_str(o.get("authorized_as"), "actor.authorized_as"),
    )


def _resource(o: Mapping[str, Any]) -> Resource:
    return Resource(
        type=_str(_req(o, "type", "resource.type"), "resource.type"),
        id=_str(_req(o, "id", "resource.id"), "resource.id"),
        path=_opt_str(o.get("path"), "resource.path"),
    )


def _action(o: Mapping[str, Any]) -> Action:
    result = _str(o.get("result", "success"), "action.result")
    if result not in RESULTS:
        raise TypeError(f"action.result must be one of {', '.join(RESULTS)}, got {result!r}")
    duration = o.get("duration_ms")
    if duration is not None and (
        not isinstance(duration, int | float) or isinstance(duration, bool)
    ):
        raise TypeError("action.duration_ms must be a number")
    return Action(
        operation=_str(_req(o, "operation", "action.operation"), "action.operation"),
        result=result,
        duration_ms=duration,
        error=_opt_str(o.get("error"), "action.error"),
    )


def _authorization(o: Mapping[str, Any]) -> Authorization:
    checks = o.get("checks") or ()
    policies = o.get("policies") or ()
    return Authorization(
        allowed=_bool(_req(o, "allowed", "authorization.allowed"), "authorization.allowed"),
        action=_opt_str(o.get("action"), "authorization.action"),
        checks=tuple(
            AuthCheck(
                operation=_str(
                    _req(c, "operation", "authorization.checks[].operation"),
                    "authorization.checks[].operation",
                ),
                resource=_str(
                    _req(c, "resource", "authorization.checks[].resource"),
                    "authorization.checks[].resource",
                ),
                allowed=_bool(
                    _req(c, "allowed", "authorization.checks[].allowed"),
                    "authorization.checks[].allowed",
                ),
                error_code=_int(c.get("error_code", 0), "authorization.checks[].error_code"),
            )
            for c in (_mapping(c, "authorization.checks[]") for c in checks)
        ),
        policies=tuple(dict(_mapping(p, "authorization.policies[]")) for p in policies),
    )


def _context(o: Mapping[str, Any]) -> Context:
    api = o.get("api")
    api_ref = None
    if api is not None:
        a = _mapping(api, "context.api")
        api_ref = ApiRef(
            key=_int(_req(a, "key", "context.api.key"), "context.api.key"),
            name=_str(_req(a, "name", "context.api.name"), "context.api.name"),
            version=_int(_req(a, "version", "context.api.version"), "context.api.version"),
        )
    return Context(
        cluster_id=_opt_str(o.get("cluster_id"), "context.cluster_id"),
        environment=_opt_str(o.get("environment"), "context.environment"),
        correlation_id=_opt_str(o.get("correlation_id"), "context.correlation_id"),
        source=_opt_str(o.get("source"), "context.source"),
        host=_opt_str(o.get("host"), "context.host"),
        api=api_ref,
    )


def _integrity(o: Mapping[str, Any]) -> Integrity:
    return Integrity(
        sequence_number=_int(
            _req(o, "sequence_number", "integrity.sequence_number"), "integrity.sequence_number"
        ),
        signature=_opt_str(o.get("signature"), "integrity.signature"),
        previous_signature=_opt_str(o.get("previous_signature"), "integrity.previous_signature"),
    )
