"""One client connection through the gateway: framing, correlation, audit, hold/release.

Each client connection gets its own broker connection, so correlation ids pass through
untouched and responses come back in request order. Requests are forwarded as whole
frames the moment they are complete (large produce requests, and large fetch responses
on the way back, piece by piece as they arrive); on the way, the gateway notes what it
needs to audit (API, version, correlation id, the decoded request) in a FIFO. Each
response is matched to the head of that FIFO, rewritten if it carries broker addresses
or API versions, audited (one call per request, KIP-567), and sent on. Under fail_closed a
response waits, in order, until the recorder says its audit record is durable; if it
cannot be, the client gets the API's own error instead.

Everything here runs on the event loop; nothing blocks or awaits on the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import TYPE_CHECKING, Any, cast

from kaudit.auditor import AUTHORIZATION_ERRORS, AuthInfo, RequestContext
from kaudit.errors import AuditRefused
from kaudit.gateway import rewrite
from kaudit.gateway.aggregate import count_records
from kaudit.gateway.audit_map import generic_auth, map_exchange
from kaudit.gateway.codec import (
    FrameDecodeError,
    api_name,
    decode_request,
    decode_response,
    encode_response,
)
from kaudit.gateway.fetch import MAX_VERSION as FETCH_SUMMARY_MAX
from kaudit.gateway.fetch import FetchSummary, TopicFetched, summarize_fetch_response
from kaudit.gateway.framing import Chunk, CutThrough, Frames, ProtocolViolation
from kaudit.gateway.produce import MAX_VERSION as PRODUCE_MAX
from kaudit.gateway.produce import MIN_VERSION as PRODUCE_MIN
from kaudit.gateway.produce import produce_head, summarize_produce_request
from kaudit.gateway.sasl import SaslObserver

if TYPE_CHECKING:
    from kaudit.gateway.listener import Gateway

log = logging.getLogger("kaudit.gateway")

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")

PRODUCE, FETCH, METADATA, FIND_COORDINATOR = 0, 1, 3, 10
SASL_HANDSHAKE, API_VERSIONS, SASL_AUTHENTICATE, DESCRIBE_CLUSTER = 17, 18, 36, 60
CREATE_DELEGATION_TOKEN, DESCRIBE_DELEGATION_TOKEN = 38, 41
# Responses naming delegation tokens' owners (see Gateway.learn_token_owners).
_TOKEN_APIS = frozenset({CREATE_DELEGATION_TOKEN, DESCRIBE_DELEGATION_TOKEN})
# The client never sees a response to these from us without decoding and re-encoding.
_REWRITTEN = frozenset({API_VERSIONS, METADATA, FIND_COORDINATOR, DESCRIBE_CLUSTER})
# Responses naming brokers: never passed on unrewritten.
_ADDRESSES = _REWRITTEN - {API_VERSIONS}
# Produce requests and fetch responses at least this much larger than what has arrived
# are cut through.
_STREAM_AT_LEAST = 64 * 1024
# Error used when a fail_closed audit record cannot be made durable: the request may
# have been applied, but the client must not take it as audited.
AUDIT_UNAVAILABLE_ERROR = -1  # UNKNOWN_SERVER_ERROR
AUDIT_UNAVAILABLE_MESSAGE = "kaudit: the audit log is unavailable (failure_policy: fail_closed)"
# What the broker answered with when its connection went away before answering.
NETWORK_EXCEPTION = 13


@dataclass(slots=True)
class _Pending:
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
class _Held:
    """A response waiting (fail_closed) for its audit record to be durable."""

    frame: bytes
    pending: _Pending
    ready: bool = False
    failed: str | None = None
    response: Any = None
    header: Any = None


def _client_id(frame: bytes) -> str | None:
    """The client id of a request header (v1 and v2 both start with it)."""
    if len(frame) < 14:
        return None
    size = _INT16.unpack_from(frame, 12)[0]
    if size < 0 or 14 + size > len(frame):
        return None
    return frame[14 : 14 + size].decode("utf-8", "replace")


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


class UpstreamSide(asyncio.BufferedProtocol):
    """The broker end of one client connection."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.frames = Frames(conn.gateway.max_frame_bytes)
        self.reading = conn.gateway.read_buffer
        # A large fetch response is cut through: sent on as it arrives, audited once whole.
        self.cut = CutThrough(conn.gateway.buffers)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.cut.buffer() if self.cut.left else self.reading

    def buffer_updated(self, nbytes: int) -> None:
        conn = self.conn
        try:
            if self.cut.left:
                head = self.cut.first
                piece, whole = self.cut.filled(nbytes)
                conn.send(piece)
                if whole is not None:
                    conn.on_response(head, sent=True, pieces=whole)
                    self.cut.recycle(conn.write_idle())
                return
            for frame in self.frames.feed(bytes(self.reading[:nbytes])):
                conn.on_response(frame)
            partial = self.frames.large_partial(_STREAM_AT_LEAST)
            # The first piece must hold the correlation id (checked in on_response).
            if partial is not None and len(partial[0]) >= 8 and conn.can_stream_next():
                first, size = partial
                self.frames.forget_partial()
                self.cut.start(first, size, conn.write_idle())
                conn.send(first)
        except ProtocolViolation as exc:
            conn.close(f"broker broke framing: {exc}")
        except Exception as exc:  # a bug in one response must not take the gateway down
            log.exception("response handling failed")
            conn.close(f"gateway error on a response: {exc!r}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.upstream_lost(exc)

    def pause_writing(self) -> None:
        self.conn.pause_client_reading()

    def resume_writing(self) -> None:
        self.conn.resume_client_reading()


class ClientConnection(asyncio.BufferedProtocol):
    """The client end: frames requests, forwards them, answers with audited responses."""

    def __init__(self, gateway: Gateway, node_id: int | None) -> None:
        self.gateway = gateway
        self.node_id = node_id  # None: the bootstrap port
        self.transport: asyncio.Transport | None = None
        self.upstream: UpstreamSide | None = None
        self.frames = Frames(gateway.max_frame_bytes)
        self.reading = gateway.read_buffer
        self.pending: deque[_Pending] = deque()
        self.held: deque[_Held] = deque()
        self.waiting: list[Chunk] = []  # requests that arrived before the broker connected
        self.sasl = SaslObserver()
        self.peer_host: str | None = None
        self.peer: str = "?"
        self.software: tuple[str | None, str | None] = (None, None)
        self.security_protocol = "PLAINTEXT"
        self.cert_principal: str | None = None
        self.raw_sasl_left = 0
        self.handshake_version = 1
        # A large produce request being cut through to the broker, and its pending entry.
        self.cut = CutThrough(gateway.buffers)
        self.streaming: _Pending | None = None
        self.streaming_acks = 1
        self.closed = False
        self.client_gone = False
        self._reading_paused = False

    # -- connection lifecycle ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer_host = str(peer[0])
            self.peer = f"{peer[0]}:{peer[1]}"
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.security_protocol = "SSL"
            self.cert_principal = _certificate_principal(ssl_object)
            if self.cert_principal:
                self.sasl.principal = self.cert_principal
        self.gateway.connections.add(self)
        self.gateway.spawn(self._connect_upstream())

    async def _connect_upstream(self) -> None:
        gw = self.gateway
        try:
            addresses = gw.upstream_for(self.node_id)
        except LookupError as exc:
            self.close(str(exc))
            return
        upstream: UpstreamSide | None = None
        problems: list[str] = []
        for address in addresses:
            try:
                _, upstream = await gw.loop.create_connection(
                    lambda: UpstreamSide(self),
                    address.host,
                    address.port,
                    ssl=gw.upstream_ssl,
                    server_hostname=address.host if gw.upstream_ssl else None,
                )
                break
            except (OSError, ssl.SSLError) as exc:
                problems.append(f"{address}: {exc}")
        if upstream is None:
            self.close(f"cannot reach the broker ({'; '.join(problems)})")
            return
        if self.closed:
            if upstream.transport is not None:
                upstream.transport.close()
            return
        self.upstream = upstream
        waiting, self.waiting = self.waiting, []
        for frame in waiting:
            self._forward(frame)
        self.resume_client_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client_gone = True
        reason = f"client went away ({exc})" if exc else "client closed the connection"
        if self.pending and self.upstream is not None and not self.closed:
            # Requests already sent may still be answered: keep the broker connection
            # until they are, so each is audited, then close it.
            log.info("%s: %s with %d requests in flight", self.peer, reason, len(self.pending))
            self.gateway.loop.call_later(
                self.gateway.drain_timeout, self.close, "in-flight requests not answered"
            )
            return
        self.close(reason, quiet=exc is None)

    def close(self, reason: str, quiet: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if not quiet:
            log.warning("closing connection from %s: %s", self.peer, reason)
        self.gateway.connections.discard(self)
        if self.transport is not None:
            self.transport.close()
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()
        self._audit_unanswered(reason)

    def upstream_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.close(f"broker connection lost ({exc or 'closed by the broker'})", quiet=False)

    def pause_client_reading(self) -> None:
        if self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_client_reading(self) -> None:
        if self.transport is not None and self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        up = self.upstream
        if up is not None and up.transport is not None:
            up.transport.pause_reading()

    def resume_writing(self) -> None:
        up = self.upstream
        if up is not None and up.transport is not None:
            up.transport.resume_reading()

    # -- requests ---------------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.cut.buffer() if self.cut.left else self.reading

    def buffer_updated(self, nbytes: int) -> None:
        try:
            if self.cut.left:
                self._stream_request(nbytes)
                return
            for frame in self.frames.feed(bytes(self.reading[:nbytes])):
                self.on_request(frame)
            partial = self.frames.large_partial(_STREAM_AT_LEAST)
            if partial is not None and self._start_streaming(*partial):
                self.frames.forget_partial()
                self._forward(partial[0])
        except ProtocolViolation as exc:
            self.close(f"client broke framing: {exc}")
        except AuditRefused as exc:  # an acks=0 produce has no response to refuse
            self.close(f"audit log unavailable (fail_closed): {exc}")
        except Exception as exc:
            log.exception("request handling failed")
            self.close(f"gateway error on a request: {exc!r}")

    def _start_streaming(self, first: bytes, size: int) -> bool:
        """Whether the Produce request that begins with `first` (`size` bytes in all) is
        cut through to the broker as it arrives, to be audited once whole."""
        up = self.upstream
        if (
            self.closed
            or self.raw_sasl_left
            or up is None
            or up.transport is None
            or len(first) < 8
            or _INT16.unpack_from(first, 4)[0] != PRODUCE
        ):
            return False
        version = _INT16.unpack_from(first, 6)[0]
        try:
            client_id, acks = produce_head([first], version)
        except FrameDecodeError:
            return False  # the head is not all there (or not readable): whole-frame path
        correlation_id = _INT32.unpack_from(first, 8)[0]
        pending = _Pending(
            PRODUCE, version, correlation_id, client_id, None, time.perf_counter(), True
        )
        if acks != 0:
            self.pending.append(pending)
        self.streaming = pending
        self.streaming_acks = acks
        self.cut.start(first, size, self._upstream_idle())
        return True

    def _stream_request(self, nbytes: int) -> None:
        """Forward the next piece of a cut-through produce request; audit it when whole."""
        piece, pieces = self.cut.filled(nbytes)
        self._forward(piece)
        if pieces is None:
            return
        self.cut.recycle(self._upstream_idle())
        pending = self.streaming
        assert pending is not None
        self.streaming = None
        self.gateway.metrics.requests += 1
        try:
            pending.request = summarize_produce_request(pieces, pending.api_version)
        except FrameDecodeError as exc:
            log.debug("%s: produce request not summarised: %s", self.peer, exc)
            pending.decoded = False
        if self.streaming_acks == 0:
            self._audit_produce(pending, None)

    def _upstream_idle(self) -> bool:
        up = self.upstream
        return up is None or up.transport is None or up.transport.get_write_buffer_size() == 0

    def write_idle(self) -> bool:
        """Whether everything written to the client has left the process."""
        return self.transport is None or self.transport.get_write_buffer_size() == 0

    def on_request(self, frame: bytes) -> None:
        gw = self.gateway
        gw.metrics.requests += 1
        if self.raw_sasl_left:
            self.sasl.client_token(frame[4:])
            self.pending.append(_Pending(SASL_AUTHENTICATE, 0, -1, None, None, 0.0, True, True))
            self._forward(frame)
            return
        if len(frame) < 12:
            raise ProtocolViolation(f"request of {len(frame) - 4} bytes has no header")
        key, version, correlation_id = struct.unpack_from(">hhi", frame, 4)
        request: Any = None
        decoded = True
        client_id: str | None
        expect_response = True
        if key == PRODUCE and PRODUCE_MIN <= version <= PRODUCE_MAX:
            try:
                request = summarize_produce_request([frame], version)
            except FrameDecodeError as exc:
                decoded = False
                client_id = _client_id(frame)
                log.debug("%s: forwarding undecoded request: %s", self.peer, exc)
            else:
                client_id = request.client_id
                expect_response = request.acks != 0
        elif gw.decodes_request(key):
            try:
                parsed = decode_request(memoryview(frame)[4:])  # type: ignore[arg-type]
            except FrameDecodeError as exc:
                decoded = False
                client_id = _client_id(frame)
                log.debug("%s: forwarding undecoded request: %s", self.peer, exc)
            else:
                client_id = parsed.client_id
                request = parsed.body
                if key == SASL_AUTHENTICATE:
                    self.sasl.client_token(request.auth_bytes)
                    request = None  # the token may hold a password: never kept
                elif key == SASL_HANDSHAKE:
                    self.sasl.handshake(str(request.mechanism))
                    self.handshake_version = version
                elif key == API_VERSIONS and version >= 3:
                    self.software = (
                        request.client_software_name or None,
                        request.client_software_version or None,
                    )
        else:
            decoded = False
            client_id = _client_id(frame)
        pending = _Pending(
            key, version, correlation_id, client_id, request, time.perf_counter(), decoded
        )
        if expect_response:
            self.pending.append(pending)
        else:
            self._audit_produce(pending, None)
        self._forward(frame)

    def _forward(self, frame: Chunk) -> None:
        up = self.upstream
        if up is None or up.transport is None:
            # Kept until the broker connection is up; reading stops meanwhile, so this
            # holds at most what one read brought.
            self.waiting.append(frame)
            self.pause_client_reading()
            return
        up.transport.write(frame)

    # -- responses --------------------------------------------------------------------------

    def can_stream_next(self) -> bool:
        """Whether the next response may be cut through: a fetch response (the big ones;
        the gateway never rewrites them, see rewrite.PARSE_CAPS) with nothing held before
        it, under fail_open (fail_closed holds every response until audited)."""
        head = self.pending[0] if self.pending else None
        return (
            head is not None
            and head.api_key == FETCH
            and head.api_version <= FETCH_SUMMARY_MAX
            and not self.held
            and not self.gateway.fail_closed
            and not self.client_gone
        )

    def on_response(
        self, frame: bytes, sent: bool = False, pieces: list[Chunk] | None = None
    ) -> None:
        """A whole response from the broker (`frame`, or the `pieces` it arrived in, the
        first starting with the header); `sent` when it was cut through already."""
        if not self.pending:
            raise ProtocolViolation("response with no request outstanding")
        pending = self.pending.popleft()
        if pending.raw_sasl:
            self._raw_sasl_response(pending, frame)
            return
        correlation_id = _INT32.unpack_from(frame, 4)[0]
        if correlation_id != pending.correlation_id:
            raise ProtocolViolation(
                f"response correlation id {correlation_id}, expected {pending.correlation_id}"
            )
        gw = self.gateway
        key = pending.api_key
        header = response = None
        out = frame
        if key == FETCH and pending.decoded and pending.api_version <= FETCH_SUMMARY_MAX:
            # Fetch responses are summarised in place, records skipped, never re-encoded.
            try:
                response = summarize_fetch_response(pieces or [frame], pending.api_version)
            except FrameDecodeError as exc:
                log.debug("%s: fetch response not summarised: %s", self.peer, exc)
                pending.decoded = False
        elif pending.decoded and gw.decodes_response(key):
            try:
                header, response = decode_response(
                    key,
                    pending.api_version,
                    memoryview(frame)[4:],  # type: ignore[arg-type]
                )
            except FrameDecodeError as exc:
                if key in _ADDRESSES:
                    # Passing it on would send the client to the brokers directly, past
                    # the audit: refuse the connection instead.
                    with contextlib.suppress(AuditRefused):
                        self._audit(pending, None)
                    self.close(f"cannot rewrite the broker addresses of a response: {exc}")
                    return
                log.debug("%s: forwarding undecoded response: %s", self.peer, exc)
                pending.decoded = False
            else:
                if key in _TOKEN_APIS and int(response.error_code) == 0:
                    gw.learn_token_owners(key, response)
                rewritten = None if sent else self._rewrite(key, response)
                if rewritten is not None:
                    response = rewritten
                    out = encode_response(key, pending.api_version, header, response)
        refused: str | None = None
        try:
            audited = self._audit(pending, response)
        except AuditRefused as exc:
            audited, refused = True, str(exc)
        if self.client_gone:
            if not self.pending:
                self.close("client went away; in-flight requests audited", quiet=True)
            return
        if sent:
            return
        if gw.fail_closed and (audited or self.held):
            held = _Held(out, pending, response=response, header=header)
            self.held.append(held)
            if refused is not None or not audited:
                held.ready, held.failed = True, refused
                self.release_ready()
            else:
                gw.when_durable(self, held)
            return
        self.send(out)

    def send(self, frame: Chunk) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def durable(self, held: _Held, error: str | None) -> None:
        """The recorder's answer for a held response (on the event loop)."""
        held.ready = True
        held.failed = error
        self.release_ready()

    def release_ready(self) -> None:
        while self.held and self.held[0].ready:
            held = self.held.popleft()
            if held.failed is None:
                self.send(held.frame)
                continue
            self.gateway.metrics.refused += 1
            log.error("%s: audit record not durable, answering with an error: %s",
                      self.peer, held.failed)  # fmt: skip
            answer = self._error_answer(held)
            if answer is None:
                self.close(f"audit record not durable ({held.failed}); cannot build an error")
                return
            self.send(answer)

    def _error_answer(self, held: _Held) -> bytes | None:
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

    def _rewrite(self, key: int, response: Any) -> Any | None:
        brokers = self.gateway.brokers
        if key == METADATA:
            self.gateway.learn_topics(response)
            return rewrite.rewrite_metadata(response, brokers)
        if key == API_VERSIONS:
            if int(response.error_code) != 0:
                return None
            return rewrite.clamp_api_versions(response)
        if key == FIND_COORDINATOR:
            return rewrite.rewrite_find_coordinator(response, brokers)
        if key == DESCRIBE_CLUSTER:
            return rewrite.rewrite_describe_cluster(response, brokers)
        if key in (PRODUCE, FETCH):
            return rewrite.rewrite_node_endpoints(response, brokers)
        if (
            key == SASL_HANDSHAKE
            and int(response.error_code) == 0
            and self.sasl.mechanism
            and self.handshake_version == 0  # raw SASL tokens follow, without headers
        ):
            self.raw_sasl_left = self.sasl.exchanges_needed
        return None

    # -- audit ------------------------------------------------------------------------------

    def context(self, pending: _Pending, decoded: bool = True) -> RequestContext:
        return RequestContext(
            principal=self.sasl.principal,
            client_address=self.peer_host,
            client_id=pending.client_id,
            client_software_name=self.software[0],
            client_software_version=self.software[1],
            listener_name="gateway",
            security_protocol=self.security_protocol,
            sasl_mechanism=self.sasl.mechanism,
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

    def _audit(self, pending: _Pending, response: Any) -> bool:
        """Make the one audit call for this request; True if it made records to wait for
        (fail_closed holds the response until they are durable)."""
        gw = self.gateway
        key = pending.api_key
        if key == PRODUCE:
            return self._audit_produce(pending, response)
        if key == FETCH:
            return self._audit_fetch(pending, response)
        if key == SASL_HANDSHAKE:
            if response is not None and int(response.error_code) != 0:
                return self._auth_failed(pending, int(response.error_code), None)
            return False
        if key == SASL_AUTHENTICATE:
            if response is None:
                return False
            code = int(response.error_code)
            if code == 0:
                if not self.sasl.complete():
                    return False  # SCRAM's server-first message: not authenticated yet
                self.sasl.accepted(gw.token_owner(self.sasl.claimed))
                # v1+: how long the broker lets this session last (KIP-368), a timedelta.
                session = getattr(response, "session_lifetime", None)
                lifetime = int(session.total_seconds() * 1000) if session else 0
                return gw.audit_auth(self, pending, "auth.login", 0, None, lifetime)
            return self._auth_failed(pending, code, response.error_message)
        decoded = pending.decoded and (response is not None or not gw.decodes_response(key))
        if decoded and pending.request is not None and response is not None:
            try:
                call = map_exchange(key, pending.request, response, gw.topic_name)
            except (AttributeError, TypeError, ValueError) as exc:
                log.warning("%s: cannot map %s v%d: %r", self.peer, api_name(key),
                            pending.api_version, exc)  # fmt: skip
                call = None
                decoded = False
            if call is not None and (call.event is not None or gw.records_generic(key)):
                return gw.audit(call.event, self.context(pending), call.auth)
        if not gw.records_generic(key):
            return False
        auth = generic_auth(api_name(key), pending.request, response) if decoded else ()
        return gw.audit(None, self.context(pending, decoded), auth)

    def _auth_failed(self, pending: _Pending, code: int, message: str | None) -> bool:
        return self.gateway.audit_auth(self, pending, "auth.failed", code, message)

    def _audit_produce(self, pending: _Pending, response: Any) -> bool:
        request = pending.request
        if request is None:
            return self.gateway.records_generic(PRODUCE) and self._generic(pending)
        codes: dict[Any, int] = {}
        if response is not None:
            for topic in response.responses:
                ident = topic.name if hasattr(topic, "name") else topic.topic_id
                codes[ident] = next(
                    (int(p.error_code) for p in topic.partition_responses if int(p.error_code)),
                    0,
                )
        gw = self.gateway
        if not gw.records("records.produced"):
            return False
        ctx = self.context(pending)
        for topic in request.topics:
            ident = topic.topic
            name = ident if isinstance(ident, str) else gw.topic_name(ident)
            gw.aggregator.add(
                "records.produced", ctx, name, topic.records, topic.nbytes, codes.get(ident, 0)
            )
        # Counted into the window's record: nothing is written per request, so nothing to
        # wait for (under fail_closed, `gw.records` refused it if the log were failing).
        return False

    def _audit_fetch(self, pending: _Pending, response: Any) -> bool:
        gw = self.gateway
        if response is None or pending.request is None:
            return gw.records_generic(FETCH) and self._generic(pending)
        request = pending.request
        replica: Any = getattr(request, "replica_id", None)
        if replica is None:
            replica = getattr(getattr(request, "replica_state", None), "replica_id", -1)
        if int(replica) >= 0:
            return False  # a follower replicating, not a client reading
        if not gw.records("records.consumed"):
            return False
        if not isinstance(response, FetchSummary):  # v16+: decoded by kio
            response = _summary_of(response)
        ctx = self.context(pending)
        for topic in response.topics:
            ident = topic.topic
            name = ident if isinstance(ident, str) else gw.topic_name(ident)
            denied = [c for c in topic.error_codes if c in AUTHORIZATION_ERRORS]
            code = denied[0] if denied else response.error_code
            if topic.records or code:
                gw.aggregator.add("records.consumed", ctx, name, topic.records, topic.nbytes, code)
        return False  # counted into the window's record, as for produce

    def _generic(self, pending: _Pending) -> bool:
        return self.gateway.audit(None, self.context(pending, decoded=False), ())

    def _raw_sasl_response(self, pending: _Pending, frame: bytes) -> None:
        self.raw_sasl_left -= 1
        if self.raw_sasl_left == 0:
            # The broker closes the connection on failure, so an answer to the last
            # exchange means it accepted the client.
            self.sasl.accepted(self.gateway.token_owner(self.sasl.claimed))
            try:
                self.gateway.audit_auth(self, pending, "auth.login", 0, None)
            except AuditRefused as exc:
                self.close(f"audit log unavailable (fail_closed): {exc}")
                return
        self.send(frame)

    def _audit_unanswered(self, reason: str) -> None:
        """Requests the broker never answered are recorded as failed, not forgotten."""
        pending, self.pending = self.pending, deque()
        try:
            self._audit_each_unanswered(pending, reason)
        except AuditRefused as exc:
            log.error("%s: unanswered requests not recorded: %s", self.peer, exc)

    def _audit_each_unanswered(self, pending: deque[_Pending], reason: str) -> None:
        gw = self.gateway
        for p in pending:
            if p.raw_sasl or p.api_key in (PRODUCE, FETCH, SASL_HANDSHAKE):
                continue
            if p.api_key == SASL_AUTHENTICATE:
                self._auth_failed(p, NETWORK_EXCEPTION, reason)
                continue
            auth: Sequence[AuthInfo] = (
                AuthInfo("REQUEST", "CLUSTER", "kafka-cluster", error_code=NETWORK_EXCEPTION),
            )
            gw.audit(None, self.context(p, decoded=p.decoded), auth)


def _summary_of(response: Any) -> FetchSummary:
    """A kio-decoded Fetch response (v16+) as the summary the audit reads."""
    topics = []
    for topic in response.responses:
        ident = topic.topic if hasattr(topic, "topic") else topic.topic_id
        fetched = TopicFetched(ident)
        for part in topic.partitions:
            fetched.error_codes.append(int(part.error_code))
            if part.records:
                fetched.nbytes += len(part.records)
                fetched.records += count_records(part.records)
        topics.append(fetched)
    return FetchSummary(int(getattr(response, "error_code", 0)), topics)


def _certificate_principal(ssl_object: Any) -> str | None:
    """`User:CN=...,O=...` from a verified client certificate, as Kafka's default
    principal builder names TLS clients."""
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    parts: list[str] = []
    for rdn in reversed(cert.get("subject", ())):
        for name, value in rdn:
            short = {"commonName": "CN", "organizationName": "O",
                     "organizationalUnitName": "OU", "countryName": "C",
                     "localityName": "L", "stateOrProvinceName": "ST"}.get(name, name)  # fmt: skip
            parts.append(f"{short}={value}")
    return f"User:{','.join(parts)}" if parts else None
