"""The one audit call of each request (KIP-567), made for its connection once the broker
has answered it, or once it is clear the broker never will.

Which call a request makes: Produce and Fetch count their records into the window of
their client and topic (aggregate), and chatty APIs (transactions, offset commits) their
requests into the window of their client and resource (chatter), so nothing is written
per request; a SASL exchange
the broker answered is a login or a failed login; an API with record types of its own is
mapped (audit_map); any other request is a generic `kafka.request` when the
configuration records it; a request refused unread is a `kafka.request` failure that
says why, whatever the configuration (audit_refused). Each call carries the connection's
`RequestContext` and goes through the gateway's `Recording`. Nothing here blocks or
awaits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Protocol

from kaudit.auditor import AUTHORIZATION_ERRORS, AuthInfo, RequestContext
from kaudit.errors import AuditRefused
from kaudit.gateway.audit_map import (
    NETWORK_EXCEPTION,
    UNANSWERED,
    auth_call,
    generic_auth,
    map_exchange,
    refusal_call,
)
from kaudit.gateway.chatter import chatter_auth
from kaudit.gateway.codec import FETCH, PRODUCE, SASL_AUTHENTICATE, SASL_HANDSHAKE, api_name
from kaudit.gateway.exchange import Pending
from kaudit.gateway.fetch import FetchSummary, summarize_decoded_fetch
from kaudit.gateway.recording import Recording
from kaudit.gateway.sasl import SaslObserver
from kaudit.gateway.shared import SharedState

log = logging.getLogger("kaudit.gateway")


class AuditedConnection(Protocol):
    """What the audit reads of a client connection."""

    shared: SharedState
    recording: Recording
    sasl: SaslObserver
    peer: str
    peer_host: str | None
    software: tuple[str | None, str | None]
    security_protocol: str


def request_context(
    conn: AuditedConnection, pending: Pending, decoded: bool = True
) -> RequestContext:
    return RequestContext(
        principal=conn.sasl.principal,
        client_address=conn.peer_host,
        client_id=pending.client_id,
        client_software_name=conn.software[0],
        client_software_version=conn.software[1],
        listener_name="gateway",
        security_protocol=conn.security_protocol,
        sasl_mechanism=conn.sasl.mechanism,
        api_key=pending.api_key,
        api_name=api_name(pending.api_key),
        api_version=pending.api_version,
        correlation_id=pending.correlation_id,
        duration_ms=round((time.perf_counter() - pending.started) * 1000, 3)
        if pending.started
        else None,
        source="gateway",
        decoded=decoded,
    )


def audit_exchange(conn: AuditedConnection, pending: Pending, response: Any) -> bool:
    """Make the one audit call for this request; True if it made records to wait for
    (fail_closed holds the response until they are durable)."""
    shared = conn.shared
    key = pending.api_key
    if key == PRODUCE:
        return audit_produce(conn, pending, response)
    if key == FETCH:
        return _audit_fetch(conn, pending, response)
    if key == SASL_HANDSHAKE:
        if response is not None and int(response.error_code) != 0:
            return audit_auth(conn, pending, "auth.failed", int(response.error_code), None)
        return False
    if key == SASL_AUTHENTICATE:
        if response is None:
            return False
        code = int(response.error_code)
        if code == 0:
            if not conn.sasl.complete():
                return False  # SCRAM's server-first message: not authenticated yet
            conn.sasl.accepted(shared.token_owner(conn.sasl.claimed))
            # v1+: how long the broker lets this session last (KIP-368), a timedelta.
            session = getattr(response, "session_lifetime", None)
            lifetime = int(session.total_seconds() * 1000) if session else 0
            return audit_auth(conn, pending, "auth.login", 0, None, lifetime)
        return audit_auth(conn, pending, "auth.failed", code, response.error_message)
    decoded = pending.decoded and (response is not None or not shared.decodes_response(key))
    if decoded and pending.request is not None and response is not None:
        try:
            call = map_exchange(key, pending.request, response, shared.topic_name)
        except (AttributeError, TypeError, ValueError) as exc:
            log.warning("%s: cannot map %s v%d: %r", conn.peer, api_name(key),
                        pending.api_version, exc)  # fmt: skip
            call = None
            decoded = False
        if call is not None and call.event is None and shared.aggregates(key):
            return shared.records_generic(key) and _aggregate(conn, pending, call.auth)
        if call is not None and (call.event is not None or shared.records_generic(key)):
            return conn.recording.audit(call.event, request_context(conn, pending), call.auth)
    if not shared.records_generic(key):
        return False
    if decoded and response is not None and shared.aggregates(key):
        return _aggregate(conn, pending, chatter_auth(api_name(key), pending.request, response))
    auth = generic_auth(api_name(key), pending.request, response) if decoded else ()
    return conn.recording.audit(None, request_context(conn, pending, decoded), auth)


def audit_auth(
    conn: AuditedConnection,
    pending: Pending,
    event_type: str,
    error_code: int,
    message: str | None,
    session_lifetime_ms: int = 0,
) -> bool:
    """auth.login / auth.failed for a SASL exchange the broker answered (or not)."""
    ctx = request_context(conn, pending)
    call = auth_call(conn.sasl, event_type, error_code, message, session_lifetime_ms)
    ctx = replace(ctx, principal=call.principal or ctx.principal)
    return conn.recording.audit(call.event, ctx, call.auth)


def audit_produce(conn: AuditedConnection, pending: Pending, response: Any) -> bool:
    """Counts a produce request's records into their window (also for acks=0, which gets
    no response); nothing is written per request, so nothing to wait for."""
    request = pending.request
    if request is None:
        return conn.shared.records_generic(PRODUCE) and _generic(conn, pending)
    codes: dict[Any, int] = {}
    if response is not None:
        for topic in response.responses:
            ident = topic.name if hasattr(topic, "name") else topic.topic_id
            codes[ident] = next(
                (int(p.error_code) for p in topic.partition_responses if int(p.error_code)),
                0,
            )
    _count_produced(conn, pending, codes)
    # Counted into the window's record: nothing is written per request, so nothing to
    # wait for (under fail_closed, `records` refused it if the log were failing).
    return False


def _count_produced(
    conn: AuditedConnection, pending: Pending, codes: dict[Any, int], unanswered: int = 0
) -> None:
    """Add a produce request's records, per topic, to the window, with the error code
    the response gave (`codes`), else `unanswered` (0: none, as for acks=0)."""
    shared, recording = conn.shared, conn.recording
    if not recording.records("records.produced"):
        return
    ctx = request_context(conn, pending)
    for topic in pending.request.topics:
        ident = topic.topic
        name = ident if isinstance(ident, str) else shared.topic_name(ident)
        recording.aggregator.add(
            "records.produced", ctx, name, topic.records, topic.nbytes, codes.get(ident, unanswered)
        )


def _audit_fetch(conn: AuditedConnection, pending: Pending, response: Any) -> bool:
    if response is None or pending.request is None:
        return conn.shared.records_generic(FETCH) and _generic(conn, pending)
    request = pending.request
    replica: Any = getattr(request, "replica_id", None)
    if replica is None:
        replica = getattr(getattr(request, "replica_state", None), "replica_id", -1)
    if int(replica) >= 0:
        return False  # a follower replicating, not a client reading
    recording = conn.recording
    if not recording.records("records.consumed"):
        return False
    if not isinstance(response, FetchSummary):  # v16+: decoded by kio
        response = summarize_decoded_fetch(response)
    ctx = request_context(conn, pending)
    shared = conn.shared
    for topic in response.topics:
        ident = topic.topic
        name = ident if isinstance(ident, str) else shared.topic_name(ident)
        denied = [c for c in topic.error_codes if c in AUTHORIZATION_ERRORS]
        code = denied[0] if denied else response.error_code
        if topic.records or code:
            recording.aggregator.add(
                "records.consumed", ctx, name, topic.records, topic.nbytes, code
            )
    return False  # counted into the window's record, as for produce


def _aggregate(conn: AuditedConnection, pending: Pending, auth: tuple[AuthInfo, ...]) -> bool:
    """Count a chatty request into its window (chatter): nothing to wait for."""
    if conn.recording.records("kafka.request"):
        conn.recording.chatter.add(request_context(conn, pending), auth)
    return False


def _generic(conn: AuditedConnection, pending: Pending) -> bool:
    return conn.recording.audit(None, request_context(conn, pending, decoded=False), ())


def audit_refused(conn: AuditedConnection, pending: Pending, error_code: int, reason: str) -> bool:
    """The record of a request refused, not forwarded, because the gateway cannot read it
    (recorded whether or not its API is among `request_events`: the refusal is what
    happened to it); True if it makes records to wait for."""
    call = refusal_call(api_name(pending.api_key), error_code, reason)
    return conn.recording.audit(call.event, request_context(conn, pending, False), call.auth)


def audit_unanswered(conn: AuditedConnection, pending: Iterable[Pending], reason: str) -> None:
    """Requests the broker never answered are recorded as failed, not forgotten (a
    produce request counts its records, per topic, as failed in the window)."""
    try:
        for p in pending:
            if p.api_key == PRODUCE and p.request is not None:
                _count_produced(conn, p, {}, unanswered=NETWORK_EXCEPTION)
                continue
            if p.raw_sasl or p.api_key in (PRODUCE, FETCH, SASL_HANDSHAKE):
                continue
            if p.api_key == SASL_AUTHENTICATE:
                audit_auth(conn, p, "auth.failed", NETWORK_EXCEPTION, reason)
                continue
            auth = _unanswered_auth(p)
            conn.recording.audit(None, request_context(conn, p, decoded=p.decoded), auth)
    except AuditRefused as exc:
        log.error("%s: unanswered requests not recorded: %s", conn.peer, exc)


def _unanswered_auth(pending: Pending) -> tuple[AuthInfo, ...]:
    """What an unanswered request acted on, as far as the request itself says (its
    group, its transactional id), each with NETWORK_EXCEPTION; else the cluster."""
    if not pending.decoded or pending.request is None:
        return UNANSWERED
    try:
        infos = chatter_auth(api_name(pending.api_key), pending.request, None)
    except (AttributeError, TypeError, ValueError):
        return UNANSWERED
    unanswered = tuple(replace(i, allowed=True, error_code=NETWORK_EXCEPTION) for i in infos)
    return unanswered or UNANSWERED
