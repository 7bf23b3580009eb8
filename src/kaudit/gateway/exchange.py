"""One request's way through a connection, as the connection keeps track of it.

A `Pending` is a request forwarded to the broker and not yet answered: what the audit
will need (API, version, correlation id, client id, the decoded request). A `Held` is a
response that waits, under fail_closed, until its audit record is durable. When that
cannot be, `error_answer` turns the response into the API's own error, so the client
never takes an unaudited change for an audited one. A request refused before the broker
sees it (one the gateway cannot read, see codec.MUST_DECODE) is answered by
`refusal_answer`, the API's own response built from nothing, with that error.
"""

from __future__ import annotations

import logging
import typing
import uuid
from dataclasses import MISSING, dataclass, fields, is_dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from kio.index import load_response_schema
from kio.static.primitive import i32

from kaudit.gateway.codec import FrameDecodeError, decode_response, encode_response

log = logging.getLogger("kaudit.gateway")

# Error used when a fail_closed audit record of a read cannot be made durable in time
# (a change's answer waits for its record instead: see recording).
AUDIT_UNAVAILABLE_ERROR = -1  # UNKNOWN_SERVER_ERROR
AUDIT_UNAVAILABLE_MESSAGE = "kaudit: the audit log is unavailable (failure_policy: fail_closed)"


@dataclass(slots=True)
class Pending:
    """A request forwarded to the broker and not yet answered."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    request: Any  # the kio-decoded body, or None
    started: float
    decoded: bool
    raw_sasl: bool = False
    refused: bool = False
    """Never forwarded: the gateway answers it itself, with `answer` (None: it closes the
    connection instead), once the responses before it are sent."""
    answer: bytes | None = None
    close_after: bool = False
    """Close the connection once `answer` is sent (a refused login)."""
    unknown_tags: tuple[int, ...] = ()
    """Tagged fields of the request and response that the schema does not know."""
    unrecorded: bool = False
    """Refused with nothing recorded (fail_closed, the log down): its answer waits for
    its turn only."""


@dataclass(slots=True)
class Held:
    """A response waiting (fail_closed) for its audit record to be durable."""

    frame: bytes
    pending: Pending
    ready: bool = False
    failed: str | None = None
    response: Any = None
    header: Any = None


def error_answer(held: Held) -> bytes | None:
    """The held response with every error code set to AUDIT_UNAVAILABLE_ERROR, as a
    whole frame; None when it cannot be decoded or encoded (the caller closes the
    connection instead)."""
    pending = held.pending
    if held.response is None or held.header is None:
        try:
            held.header, held.response = decode_response(
                pending.api_key,
                pending.api_version,
                memoryview(held.frame)[4:],  # type: ignore[arg-type]
            )
        except FrameDecodeError:
            return None
    failed = _with_error(held.response, AUDIT_UNAVAILABLE_ERROR, AUDIT_UNAVAILABLE_MESSAGE)
    try:
        return encode_response(pending.api_key, pending.api_version, held.header, failed)
    except Exception:  # a value kio cannot write back: the caller closes instead
        log.exception("cannot encode an error response")
        return None


def _with_error(value: Any, code: int, message: str) -> Any:
    """A copy of a decoded response with every error code set to `code` (and its error
    messages to `message`), for answering with the API's own error."""
    if isinstance(value, tuple):
        return tuple(_with_error(v, code, message) for v in value)
    if not is_dataclass(value) or isinstance(value, type):
        return value
    changes: dict[str, Any] = {}
    for f in fields(value):
        current = getattr(value, f.name)
        if f.name == "error_code" or f.metadata.get("kafka_type") == "error_code":
            changes[f.name] = type(current)(code)
        elif f.name == "error_message":
            changes[f.name] = message
        elif isinstance(current, tuple) or is_dataclass(current):
            changes[f.name] = _with_error(current, code, message)
    return replace(value, **changes)


def refusal_answer(
    key: int, version: int, correlation_id: int, code: int, message: str, request: Any = None
) -> bytes | None:
    """The response of API `key` at `version` to a request the broker never saw: every
    error code `code`, every error message `message`, and each array of results holding
    one entry (with no name) so that a response whose errors are all per resource still
    carries one — or, given the decoded `request`, one entry per resource it names (see
    `_mirror`); None when kio cannot build or write it (the caller closes instead)."""
    try:
        schema = load_response_schema(key, version)
        header = schema.__header_schema__(correlation_id=i32(correlation_id))
        body = _with_error(_empty(schema), code, message)
        if request is not None:
            body = _mirror(body, request)
        return encode_response(key, version, header, body)
    except Exception:  # an API or version kio does not know, a type it cannot write
        log.exception("cannot build a refusal for API %d v%d", key, version)
        return None


@cache
def _carries_error(entity: type[Any]) -> bool:
    """Whether an entity, or one nested in it, has an error code."""
    hints = typing.get_type_hints(entity)
    for f in fields(entity):
        if f.metadata.get("kafka_type") == "error_code":
            return True
        inner = [t for t in (hints[f.name], *typing.get_args(hints[f.name])) if is_dataclass(t)]
        if any(_carries_error(t) for t in inner if isinstance(t, type)):
            return True
    return False


def _empty(entity: type[Any]) -> Any:
    """An instance of a kio entity with every field it has no default for zero, empty or
    absent: an array of entities that carry error codes holds one such entry."""
    hints = typing.get_type_hints(entity)
    values: dict[str, Any] = {}
    for f in fields(entity):
        if f.default is not MISSING or f.default_factory is not MISSING:
            continue
        hint = hints[f.name]
        args = typing.get_args(hint)
        kind = f.metadata.get("kafka_type")
        if isinstance(hint, type) and is_dataclass(hint):
            values[f.name] = _empty(hint)
        elif typing.get_origin(hint) is tuple:
            item = args[0]
            one = isinstance(item, type) and is_dataclass(item) and _carries_error(item)
            values[f.name] = (_empty(item),) if one else ()
        elif type(None) in args:
            values[f.name] = None
        elif kind == "error_code":
            values[f.name] = hint(0)
        elif kind in ("string",):
            values[f.name] = ""
        elif kind == "bytes":
            values[f.name] = b""
        elif kind == "bool":
            values[f.name] = False
        elif kind == "uuid":
            values[f.name] = uuid.UUID(int=0)
        elif kind == "records":
            values[f.name] = hint(b"")
        elif kind == "datetime_i64":
            values[f.name] = hint(datetime.fromtimestamp(0, UTC))
        elif kind is not None and kind.startswith("timedelta"):
            values[f.name] = hint(timedelta(0))
        else:
            values[f.name] = hint(0)
    return entity(**values)


def _mirror(template: Any, request: Any) -> Any:
    """`template` (a response with one entry per array of results) with, in place of
    each such entry, one per entry of the request's matching array, carrying the
    request's names and indexes: clients match results to what they asked by name or
    partition (a producer fails a batch whose partition is not in the answer). Arrays
    are matched in order: the response's arrays of entries that carry errors with the
    request's arrays of entities or names."""
    if not is_dataclass(template) or not is_dataclass(request):
        return template
    response: Any = template  # a kio entity instance
    theirs = [
        getattr(request, f.name)
        for f in fields(request)
        if isinstance(getattr(request, f.name), tuple) and getattr(request, f.name)
    ]
    changes: dict[str, Any] = {}
    for f in fields(template):
        mine = getattr(template, f.name)
        if not theirs:
            break
        if not (isinstance(mine, tuple) and len(mine) == 1 and is_dataclass(mine[0])):
            continue
        entry: Any = mine[0]
        asked = theirs.pop(0)
        changes[f.name] = tuple(_mirror(_named_like(entry, item), item) for item in asked)
    return replace(response, **changes) if changes else response


def _named_like(entry: Any, item: Any) -> Any:
    """`entry` with the request item's plain fields of the same name and type (a name,
    an index, a topic id); a bare name when the request lists names only."""
    if isinstance(item, str):
        return replace(entry, name=item) if hasattr(entry, "name") else entry
    if not is_dataclass(item):
        return entry
    same: dict[str, Any] = {}
    for f in fields(entry):
        if f.name in ("error_code", "error_message") or not hasattr(item, f.name):
            continue
        value, current = getattr(item, f.name), getattr(entry, f.name)
        if type(value) is type(current) and isinstance(value, str | int | uuid.UUID):
            same[f.name] = value
    return replace(entry, **same) if same else entry
