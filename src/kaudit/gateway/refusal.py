"""Requests the gateway refuses instead of forwarding: one at a version it does not
offer, and one it cannot read for an API it must read.

A request at an API or version the gateway never offered in ApiVersions
(rewrite.offered_versions) is answered with UNSUPPORTED_VERSION in the API's own
response and never forwarded (`refuse_unoffered`): the gateway could not read it, or its
response, or the response would name brokers it does not rewrite. ApiVersions itself is
answered at v0 with the versions it is offered at, as the broker does (KIP-511). An API
or version kio cannot even write a response for is not answered: the connection is
closed, as the broker closes it.

An API that changes state, logs in or names brokers (codec.MUST_DECODE) is never passed
to the broker unread (`refuse`): the broker skips what it does not know, so an unread
request could change the cluster with no resource in the audit. Unknown tagged fields
no longer make a request unreadable (the codec skips them, as the broker does); what
still does (bytes that are not UTF-8, a value kio refuses) refuses the request with
INVALID_REQUEST, SASL_AUTHENTICATION_FAILED for a login (the connection then closes, as
the broker closes it after a failed login).

Every refusal is recorded as refused, with the reason (audit_refused), and answered in
its turn in the connection's FIFO (exchange.refusal_answer). The connection calls
`refuse_unoffered` for each request, `refuse` when one fails to decode and
`answer_refused` after each response, and hands itself down as a `RefusingConnection`.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import deque
from typing import Protocol

from kio.schema.api_versions.v0.response import ApiVersion, ApiVersionsResponse
from kio.schema.errors import ErrorCode
from kio.schema.response_header.v0.header import ResponseHeader
from kio.static.primitive import i16, i32

from kaudit.errors import AuditRefused
from kaudit.gateway.audit_map import (
    INVALID_REQUEST,
    SASL_AUTHENTICATION_FAILED,
    UNSUPPORTED_VERSION,
)
from kaudit.gateway.auditing import AuditedConnection, audit_refused
from kaudit.gateway.codec import (
    API_VERSIONS,
    AUTHENTICATES,
    MUST_DECODE,
    SASL_AUTHENTICATE,
    FrameDecodeError,
    api_name,
    encode_response,
    parsable_versions,
    peek_client_id,
)
from kaudit.gateway.exchange import Held, Pending, refusal_answer
from kaudit.gateway.framing import Chunk
from kaudit.gateway.rewrite import offered_versions

log = logging.getLogger("kaudit.gateway")


class RefusingConnection(AuditedConnection, Protocol):
    """What refusing a request needs of its client connection."""

    pending: deque[Pending]
    held: deque[Held]
    closed: bool
    client_gone: bool

    def send(self, frame: Chunk) -> None: ...

    def close(self, reason: str, quiet: bool = False) -> None: ...

    def durable(self, held: Held, error: str | None) -> None: ...


def refuse_unoffered(conn: RefusingConnection, frame: bytes, key: int, version: int) -> bool:
    """Refuse a request at an API or version the gateway does not offer: recorded as
    refused and answered, in its turn, with UNSUPPORTED_VERSION (closed when no answer
    can be written); False when it is offered (the caller goes on)."""
    versions = offered_versions(key)
    if versions is not None and versions[0] <= version <= versions[1]:
        return False
    correlation_id = struct.unpack_from(">i", frame, 8)[0]
    if versions is None:
        reason = f"{api_name(key)} is not an API the gateway offers"
    else:
        reason = (
            f"{api_name(key)} v{version} is not a version the gateway offers "
            f"(v{versions[0]} to v{versions[1]})"
        )
    answer: bytes | None = None
    readable = parsable_versions(key)
    if key == API_VERSIONS:
        answer = unsupported_api_versions(correlation_id)
    elif readable is not None and readable[0] <= version <= readable[1]:
        message = f"kaudit: {reason}"
        answer = refusal_answer(key, version, correlation_id, UNSUPPORTED_VERSION, message)
    _refuse(conn, frame, UNSUPPORTED_VERSION, reason, answer)
    return True


def unsupported_api_versions(correlation_id: int) -> bytes:
    """ApiVersions v0 with UNSUPPORTED_VERSION and the versions ApiVersions is offered
    at: Kafka's answer to an ApiVersions request at a version it does not support, so
    that the client retries at one it does (KIP-511)."""
    low, high = offered_versions(API_VERSIONS) or (0, 0)
    body = ApiVersionsResponse(
        error_code=ErrorCode(UNSUPPORTED_VERSION),
        api_keys=(
            ApiVersion(api_key=i16(API_VERSIONS), min_version=i16(low), max_version=i16(high)),
        ),
    )
    return encode_response(
        API_VERSIONS, 0, ResponseHeader(correlation_id=i32(correlation_id)), body
    )


def refuse(conn: RefusingConnection, frame: bytes, exc: FrameDecodeError) -> bool:
    """Refuse a request the gateway cannot read when its API is one of MUST_DECODE:
    recorded as refused and answered, in its turn, with the API's own error; False for
    any other API (the caller forwards it undecoded)."""
    key, version, correlation_id = struct.unpack_from(">hhi", frame, 4)
    if key not in MUST_DECODE:
        return False
    code = SASL_AUTHENTICATION_FAILED if key == SASL_AUTHENTICATE else INVALID_REQUEST
    reason = str(exc)
    message = f"kaudit: request refused, the audit gateway cannot read it: {reason}"
    answer = refusal_answer(key, version, correlation_id, code, message)
    _refuse(conn, frame, code, reason, answer)
    return True


def _refuse(
    conn: RefusingConnection, frame: bytes, code: int, reason: str, answer: bytes | None
) -> None:
    """Record a refused request and queue its `answer` (None: close the connection)."""
    key, version, correlation_id = struct.unpack_from(">hhi", frame, 4)
    pending = Pending(
        key, version, correlation_id, peek_client_id(frame), None, time.perf_counter(),
        False, refused=True, answer=answer, close_after=key in AUTHENTICATES,
    )  # fmt: skip
    log.warning("%s: refusing a request: %s", conn.peer, reason)
    conn.shared.metrics.refused += 1
    conn.shared.metrics.ended(key, "refused")
    try:
        audit_refused(conn, pending, code, reason)
    except AuditRefused as refused:  # nothing reaches the broker all the same
        log.error("%s: refused request not recorded: %s", conn.peer, refused)
    conn.pending.append(pending)
    answer_refused(conn)


def answer_refused(conn: RefusingConnection) -> None:
    """Answer the refused requests at the head of the FIFO (their turn has come)."""
    while conn.pending and conn.pending[0].refused and not conn.closed:
        pending = conn.pending.popleft()
        if conn.client_gone:
            if not conn.pending:
                conn.close("client went away; in-flight requests audited", quiet=True)
            continue
        what = f"{api_name(pending.api_key)} v{pending.api_version}"
        if pending.answer is None:
            conn.close(f"refused {what}: no response the gateway can write at that version")
            return
        if conn.shared.fail_closed:
            held = Held(pending.answer, pending)
            conn.held.append(held)
            if pending.unrecorded:
                conn.durable(held, None)  # nothing recorded to wait for: only its turn
            else:
                conn.recording.when_durable(conn, held)
            continue
        conn.send(pending.answer)
        if pending.close_after:
            conn.close(f"refused {what}: a login the gateway cannot read")
