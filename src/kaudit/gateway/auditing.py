"""The one audit call of each request (KIP-567), made for its connection once the broker
has answered it, or once it is clear the broker never will.

Which call a request makes: Produce and Fetch count their records into the window of
their client and topic (aggregate), and chatty APIs (transactions, offset commits) their
requests into the window of their client and resource (chatter), so nothing is written
per request; a SASL exchange
the broker answered is a login or a failed login; an API with record types of its own is
mapped (audit_map), OffsetCommit by what the gateway saw consumed (offsets); any other
request is a generic `kafka.request` when the configuration records it, and an answer
that refuses the client a resource makes its denial records whatever the configuration
(audit_map.denied_in_response); a request refused unread is a `kafka.request` failure that
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
from kaudit.gateway.audit_apis import AuditCall
from kaudit.gateway.audit_map import (
    NETWORK_EXCEPTION,
    SASL_AUTHENTICATION_FAILED,
    UNANSWERED,
    auth_call,
    denied_in_response,
    generic_auth,
    map_exchange,
    merge_denied,
    refusal_call,
)
from kaudit.gateway.chatter import chatter_auth
from kaudit.gateway.codec import (
    API_KEYS,
    FETCH,
    PRODUCE,
    SASL_AUTHENTICATE,
    SASL_HANDSHAKE,
    api_name,
)
from kaudit.gateway.exchange import Pending
from kaudit.gateway.fetch import FetchSummary, summarize_decoded_fetch
from kaudit.gateway.offsets import ClientKey
from kaudit.gateway.produce import ProduceResult
from kaudit.gateway.recording import Recording
from kaudit.gateway.sasl import SaslObserver
from kaudit.gateway.shared import SharedState

log = logging.getLogger("kaudit.gateway")

OFFSET_COMMIT = API_KEYS["OffsetCommit"]
OFFSET_FETCH = API_KEYS["OffsetFetch"]
_CONTEXTS_KEPT = 64  # per connection: client ids x API versions a client cycles through


class AuditedConnection(Protocol):
    """What the audit reads of a client connection."""

    shared: SharedState
    recording: Recording
    sasl: SaslObserver
    peer: str
    peer_host: str | None
    software: tuple[str | None, str | None]
    security_protocol: str
    client_gone: bool
    """The client went away: answers arriving now are not delivered to it."""
    contexts: dict[tuple[Any, ...], RequestContext]
    """Produce/fetch count contexts already made (see records_context)."""
    fetch_session: dict[Any, set[int]]
    """The partitions of the client's incremental fetch session (see fetched_topics)."""


def request_context(
    conn: AuditedConnection, pending: Pending, decoded: bool = True
) -> RequestContext:
    sasl = conn.sasl
    authorized = sasl.authorized_principal
    return RequestContext(
        principal=sasl.principal,
        authorized_principal=None if authorized == sasl.principal else authorized,
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
        unknown_tagged_fields=pending.unknown_tags,
    )


def client_key(conn: AuditedConnection, pending: Pending) -> ClientKey:
    """The consuming application a request comes from, as offsets tells them apart."""
    return (conn.sasl.principal, conn.peer_host, pending.client_id)


def records_context(conn: AuditedConnection, pending: Pending) -> RequestContext:
    """The context of a produce or fetch count: what its window's key and record read
    (no correlation id or duration: a window's record has neither), made once per
    connection, API version and client id rather than on every request."""
    key = (pending.api_key, pending.api_version, pending.client_id, conn.sasl.principal,
           conn.software)  # fmt: skip
    ctx = conn.contexts.get(key)
    if ctx is None:
        ctx = replace(request_context(conn, pending), correlation_id=None, duration_ms=None)
        if len(conn.contexts) >= _CONTEXTS_KEPT:
            conn.contexts.clear()
        conn.contexts[key] = ctx
    return ctx


def audit_exchange(conn: AuditedConnection, pending: Pending, response: Any) -> bool:
    """Make the one audit call for this request; True if it made records to wait for
    (fail_closed holds the response until they are durable)."""
    login = False
    unconfirmed = conn.sasl.unconfirmed
    if unconfirmed is not None and pending.api_key not in (SASL_HANDSHAKE, SASL_AUTHENTICATE):
        # The broker answers a request outside an opaque mechanism's exchange: it has
        # accepted the client (else it would have closed the connection), and this
        # request was made as the principal it accepted.
        login = audit_login(conn, unconfirmed)
    return _audit_exchange(conn, pending, response) or login


def _audit_exchange(conn: AuditedConnection, pending: Pending, response: Any) -> bool:
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
        return audit_sasl_answer(conn, pending, code, bytes(response.auth_bytes), response)
    decoded = pending.decoded and (response is not None or not shared.decodes_response(key))
    request = pending.request
    denied: tuple[AuthInfo, ...] = ()
    if decoded and request is not None and response is not None:
        call: AuditCall | None
        try:
            if key == OFFSET_COMMIT:
                call = shared.positions.offset_commit_call(
                    client_key(conn, pending), request, response, shared.topic_name
                )
            else:
                call = map_exchange(key, request, response, shared.topic_name)
                if key == OFFSET_FETCH:
                    shared.positions.learn_offset_fetch(request, response, shared.topic_name)
        except (AttributeError, TypeError, ValueError) as exc:
            log.warning("%s: cannot map %s v%d: %r", conn.peer, api_name(key),
                        pending.api_version, exc)  # fmt: skip
            call = None
            decoded = False
        if call is not None and call.event is None and shared.aggregates(key):
            return shared.records_generic(key) and _aggregate(conn, pending, call.auth)
        if call is not None and (call.event is not None or shared.records_generic(key)):
            return conn.recording.audit(call.event, request_context(conn, pending), call.auth)
        if decoded:
            denied = denied_in_response(api_name(key), request, response, shared.topic_name)
    if not shared.records_generic(key):
        # A refusal is recorded whatever the request event settings: it is no chatter.
        return bool(denied) and conn.recording.audit(None, request_context(conn, pending), denied)
    if decoded and response is not None and shared.aggregates(key):
        return _aggregate(conn, pending, chatter_auth(api_name(key), request, response))
    auth = generic_auth(api_name(key), request, response) if decoded else ()
    return conn.recording.audit(
        None, request_context(conn, pending, decoded), merge_denied(auth, denied)
    )


def audit_sasl_answer(
    conn: AuditedConnection, pending: Pending, code: int, token: bytes, response: Any = None
) -> bool:
    """The record the broker's answer to a client's SASL token makes, if any: a login
    once the broker has accepted the client, a failed login once it has refused it
    (OAUTHBEARER's error challenge comes with error code 0)."""
    sasl = conn.sasl
    verdict = sasl.server_token(code, token, pending)
    if verdict == "accepted":
        # v1+: how long the broker lets this session last (KIP-368), a timedelta.
        session = getattr(response, "session_lifetime", None)
        lifetime = int(session.total_seconds() * 1000) if session else 0
        return audit_login(conn, pending, lifetime)
    if verdict == "failed":
        message = getattr(response, "error_message", None) or sasl.failure
        return audit_auth(conn, pending, "auth.failed", code or SASL_AUTHENTICATION_FAILED,
                          message)  # fmt: skip
    return False


def audit_login(conn: AuditedConnection, pending: Pending, session_lifetime_ms: int = 0) -> bool:
    """auth.login: the broker accepted the client's exchange, whose last token `pending`
    carried; the connection's principal is the one it accepted from now on."""
    conn.sasl.accepted(conn.shared.token_owner(conn.sasl.claimed))
    return audit_auth(conn, pending, "auth.login", 0, None, session_lifetime_ms)


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
    # A login's principal is the one authenticated (or attempted) by the broker itself.
    ctx = replace(ctx, principal=call.principal or ctx.principal, authorized_principal=None)
    return conn.recording.audit(call.event, ctx, call.auth)


def audit_produce(conn: AuditedConnection, pending: Pending, response: Any) -> bool:
    """Counts a produce request's records into their window (also for acks=0, which gets
    no response); nothing is written per request, so nothing to wait for."""
    request = pending.request
    if request is None:
        return conn.shared.records_generic(PRODUCE) and _generic(conn, pending)
    codes: dict[Any, int] = {}
    if isinstance(response, ProduceResult):
        codes = response.codes
    elif response is not None:
        for topic in response.responses:
            ident = topic.name if hasattr(topic, "name") else topic.topic_id
            codes[ident] = next(
                (int(p.error_code) for p in topic.partition_responses if int(p.error_code)),
                0,
            )
    _count_produced(conn, pending, codes)
    # Counted into the window's record: nothing is written per request; under
    # fail_closed the response waits for the count to be journaled.
    return conn.recording.counts_wait


def _count_produced(
    conn: AuditedConnection, pending: Pending, codes: dict[Any, int], unanswered: int = 0
) -> None:
    """Add a produce request's records, per topic, to the window, with the error code
    the response gave (`codes`), else `unanswered` (0: none, as for acks=0)."""
    shared, recording = conn.shared, conn.recording
    if not recording.records("records.produced"):
        return
    ctx = records_context(conn, pending)
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
    if not isinstance(response, FetchSummary):  # v16+: decoded by kio
        response = summarize_decoded_fetch(response)
    shared = conn.shared
    # Only an answer written to a client still there was delivered (and moved its
    # consumption on); one that came after the client went is counted apart.
    delivered = not conn.client_gone
    if delivered:
        _note_consumption(conn, pending, response)
    recording = conn.recording
    asked = fetched_topics(conn, request)
    if not recording.records("records.consumed"):
        return False
    ctx = records_context(conn, pending)
    for topic in response.topics:
        ident = topic.topic
        asked.discard(ident)
        name = ident if isinstance(ident, str) else shared.topic_name(ident)
        denied = [c for c in topic.error_codes if c in AUTHORIZATION_ERRORS]
        code = denied[0] if denied else response.error_code
        recording.aggregator.add(
            "records.consumed",
            ctx,
            name,
            topic.records,
            topic.nbytes,
            code,
            delivered=delivered,
        )
    # A fetch that returned nothing from a topic still read it, and the broker (its
    # auditor too) counts it: an idle consumer's polls are counted, with no records.
    for ident in asked:
        name = ident if isinstance(ident, str) else shared.topic_name(ident)
        recording.aggregator.add(
            "records.consumed", ctx, name, 0, 0, response.error_code, delivered=delivered
        )
    return recording.counts_wait  # counted into the window's record, as for produce


def fetched_topics(conn: AuditedConnection, request: Any) -> set[Any]:
    """The topics (names, or ids from v13) a client fetch reads, as the broker authorizes
    them: those it names, and in an incremental fetch session (KIP-227, epoch > 0) every
    topic of the session, which the broker reads on each fetch although the request names
    only the partitions that changed. The session is the connection's: a client keeps one
    per broker connection. Epoch 0 starts one with what the request names; -1 has none."""
    epoch = int(getattr(request, "session_epoch", -1))
    session = conn.fetch_session
    if epoch <= 0:
        session.clear()
    for forgotten in getattr(request, "forgotten_topics_data", ()):
        ident = getattr(forgotten, "topic", None) or forgotten.topic_id
        partitions = session.get(ident)
        if partitions is not None:
            partitions.difference_update(int(p) for p in forgotten.partitions)
            if not partitions:
                del session[ident]
    for topic in request.topics:
        ident = getattr(topic, "topic", None) or topic.topic_id
        session.setdefault(ident, set()).update(int(p.partition) for p in topic.partitions)
    topics = set(session)
    if epoch < 0:
        session.clear()
    return topics


def _note_consumption(conn: AuditedConnection, pending: Pending, summary: FetchSummary) -> None:
    """How far the client's consumption reached: the offsets it asked to fetch from and
    the ends of the batches delivered to it (offsets judges its commits by them)."""
    positions, names = conn.shared.positions, conn.shared.topic_name
    client = client_key(conn, pending)
    for topic in pending.request.topics:
        ident = getattr(topic, "topic", None) or topic.topic_id
        name = ident if isinstance(ident, str) else names(ident)
        for p in topic.partitions:
            positions.reached(client, name, int(p.partition), int(p.fetch_offset))
    for fetched in summary.topics:
        ident = fetched.topic
        name = ident if isinstance(ident, str) else names(ident)
        for partition, end in fetched.ends.items():
            positions.reached(client, name, partition, end)


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
            if p.api_key in (PRODUCE, FETCH, SASL_HANDSHAKE):
                continue
            if (p.raw_sasl or p.api_key == SASL_AUTHENTICATE) and conn.sasl.failure:
                continue  # the broker's refusal is recorded already
            if p.raw_sasl:
                # After a SaslHandshake v0 the broker refuses a token by closing.
                audit_auth(conn, p, "auth.failed", SASL_AUTHENTICATION_FAILED, reason)
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
