"""Requests the gateway cannot read, for an API it must read: refused, not forwarded.

An API that changes state, logs in or names brokers (codec.MUST_DECODE) is never passed
to the broker unread: the broker skips what it does not know, so an unread request could
change the cluster with no resource in the audit. Such a request is recorded as refused,
with the reason (audit_refused), and answered in its turn in the connection's FIFO with
the API's own error (exchange.refusal_answer): INVALID_REQUEST, SASL_AUTHENTICATION_FAILED
for a login (the connection then closes, as the broker closes it after a failed login).
At a version the gateway never advertised no answer can be written, so the connection
is closed, as the broker does.

The connection calls `refuse` when a request fails to decode and `answer_refused` after
each response, and hands itself down as a `RefusingConnection`.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import deque
from typing import Protocol

from kaudit.errors import AuditRefused
from kaudit.gateway.audit_map import (
    INVALID_REQUEST,
    SASL_AUTHENTICATION_FAILED,
    UNSUPPORTED_VERSION,
)
from kaudit.gateway.auditing import AuditedConnection, audit_refused
from kaudit.gateway.codec import (
    AUTHENTICATES,
    MUST_DECODE,
    SASL_AUTHENTICATE,
    FrameDecodeError,
    api_name,
    parsable_versions,
    peek_client_id,
)
from kaudit.gateway.exchange import Held, Pending, refusal_answer
from kaudit.gateway.framing import Chunk

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


def refuse(conn: RefusingConnection, frame: bytes, exc: FrameDecodeError) -> bool:
    """Refuse a request the gateway cannot read when its API is one of MUST_DECODE:
    recorded as refused and answered, in its turn, with the API's own error (at a
    version the gateway never advertised, the connection is closed instead, as the
    broker does); False for any other API (the caller forwards it undecoded)."""
    key, version, correlation_id = struct.unpack_from(">hhi", frame, 4)
    if key not in MUST_DECODE:
        return False
    versions = parsable_versions(key)
    if versions is None or not versions[0] <= version <= versions[1]:
        code = UNSUPPORTED_VERSION
        reason = f"{api_name(key)} v{version} is not a version the gateway advertises"
    else:
        code = SASL_AUTHENTICATION_FAILED if key == SASL_AUTHENTICATE else INVALID_REQUEST
        reason = str(exc)
    pending = Pending(
        key, version, correlation_id, peek_client_id(frame), None, time.perf_counter(),
        False, refused=True, close_after=key in AUTHENTICATES,
    )  # fmt: skip
    if code != UNSUPPORTED_VERSION:
        message = f"kaudit: request refused, the audit gateway cannot read it: {reason}"
        pending.answer = refusal_answer(key, version, correlation_id, code, message)
    log.warning("%s: refusing a request the gateway cannot read: %s", conn.peer, reason)
    try:
        audit_refused(conn, pending, code, reason)
    except AuditRefused as refused:  # nothing reaches the broker all the same
        log.error("%s: refused request not recorded: %s", conn.peer, refused)
    conn.pending.append(pending)
    answer_refused(conn)
    return True


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
