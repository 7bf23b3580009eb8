"""One request's way through a connection, as the connection keeps track of it.

A `Pending` is a request forwarded to the broker and not yet answered: what the audit
will need (API, version, correlation id, client id, the decoded request). A `Held` is a
response that waits, under fail_closed, until its audit record is durable. When that
cannot be, `error_answer` turns the response into the API's own error, so the client
never takes an unaudited change for an audited one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any

from kaudit.gateway.codec import FrameDecodeError, decode_response, encode_response

log = logging.getLogger("kaudit.gateway")

# Error used when a fail_closed audit record cannot be made durable: the request may
# have been applied, but the client must not take it as audited.
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
        if f.name == "error_code":
            changes[f.name] = type(current)(code)
        elif f.name == "error_message":
            changes[f.name] = message
        elif isinstance(current, tuple) or is_dataclass(current):
            changes[f.name] = _with_error(current, code, message)
    return replace(value, **changes)
