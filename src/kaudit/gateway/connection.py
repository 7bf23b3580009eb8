"""One client connection through the gateway: its life (admission, TLS identity, the
broker connection, closing) and the request side: framing, correlation, forwarding.

Each client connection gets its own broker connection, so correlation ids pass through
untouched and responses come back in request order. Requests are forwarded as whole
frames the moment they are complete (large produce requests piece by piece as they
arrive); on the way, the connection notes what the audit needs (a `Pending`) in a FIFO,
which the answering side (answering.Answering, a mixin of this class) matches the
broker's responses to. Under fail_closed a change is refused unsent while the log cannot
take records (failclosed). A request the gateway cannot read, for an API that changes
state, logs in or names brokers (codec.MUST_DECODE), is never forwarded: it is recorded
as refused and answered, in its turn, with the API's own error. What the gateway's
connections share comes from the listener as a `SharedState`.

Everything here runs on the event loop; nothing blocks or awaits on the request path.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
import time
from collections import deque
from typing import Any, cast

from kaudit.auditor import RequestContext
from kaudit.errors import AuditRefused
from kaudit.gateway.answering import Answering
from kaudit.gateway.auditing import audit_produce, audit_unanswered
from kaudit.gateway.codec import (
    API_VERSIONS,
    PRODUCE,
    SASL_AUTHENTICATE,
    SASL_HANDSHAKE,
    FrameDecodeError,
    decode_request,
    peek_client_id,
)
from kaudit.gateway.exchange import Held, Pending
from kaudit.gateway.failclosed import refuse_while_unavailable
from kaudit.gateway.framing import Chunk, CutThrough, Frames, ProtocolViolation, head_of
from kaudit.gateway.produce import MAX_VERSION as PRODUCE_MAX
from kaudit.gateway.produce import MIN_VERSION as PRODUCE_MIN
from kaudit.gateway.produce import produce_head, summarize_produce_request
from kaudit.gateway.recording import LATENCY_SAMPLE_MASK
from kaudit.gateway.refusal import refuse, refuse_unoffered
from kaudit.gateway.sasl import SaslObserver, looks_like_request
from kaudit.gateway.shared import SharedState
from kaudit.gateway.tls_identity import certificate_principal
from kaudit.gateway.upstream import STREAM_AT_LEAST, UpstreamSide

log = logging.getLogger("kaudit.gateway")

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_REQUEST_HEAD = struct.Struct(">hhi")  # api key, version, correlation id
_PRODUCE_HEAD_BYTES = 12  # size prefix, api key, version, correlation id


class ClientConnection(Answering, asyncio.BufferedProtocol):
    """The client end: frames requests, forwards them, answers with audited responses."""

    def __init__(self, shared: SharedState, node_id: int | None) -> None:
        self.shared = shared
        self.recording = shared.recording
        self.node_id = node_id  # None: the bootstrap port
        self.transport: asyncio.Transport | None = None
        self.upstream: UpstreamSide | None = None
        # Until the connection has logged in (or the broker has shown it needs no login),
        # frames are bounded as a broker bounds them before authentication.
        self.frames = Frames(
            shared.max_frame_bytes_before_auth, "gateway.max_frame_bytes_before_auth"
        )
        self.admitted = False
        self.reading = shared.read_buffer
        self.pending: deque[Pending] = deque()
        self.held: deque[Held] = deque()
        self.waiting: list[Chunk] = []  # requests that arrived before the broker connected
        self.sasl = SaslObserver()
        self.peer_host: str | None = None
        self.peer: str = "?"
        self.software: tuple[str | None, str | None] = (None, None)
        self.contexts: dict[tuple[Any, ...], RequestContext] = {}
        self.fetch_session: dict[Any, set[int]] = {}
        self.security_protocol = "PLAINTEXT"
        self.cert_principal: str | None = None
        self.raw_sasl = False  # after a SaslHandshake v0: tokens come without headers
        self.handshake_version = 1
        # A large produce request being cut through to the broker, and its pending entry.
        self.cut = CutThrough(shared.buffers)
        self.streaming: Pending | None = None
        self.streaming_acks = 1
        # While a read's frames are handled, what they send each way is gathered here and
        # written at once (`flush_writes`): one system call per read, not one per frame.
        self.to_broker: list[Chunk] | None = None
        self.to_client: list[Chunk] | None = None
        self.closed = False
        self.client_gone = False
        self.draining = False  # the gateway is stopping: no new requests
        self._reading_paused = False

    # -- connection lifecycle ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer_host = str(peer[0])
            self.peer = f"{peer[0]}:{peer[1]}"
        refused = self.shared.admit_connection(self.peer_host)
        if refused is not None:
            self.shared.metrics.connections_refused += 1
            log.warning("refusing a connection from %s: %s", self.peer, refused)
            self.closed = True
            self.transport.abort()
            return
        self.admitted = True
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.security_protocol = "SSL"
            der = ssl_object.getpeercert(binary_form=True)
            self.cert_principal = certificate_principal(der, self.shared.client_principals)
            if self.cert_principal:
                self.sasl.principal = self.cert_principal
                self._trust_frames()
            elif der:
                log.warning("%s: no principal mapping rule matches the client certificate",
                            self.peer)  # fmt: skip
        self.sasl.upstream = self.shared.upstream_principal
        self.shared.connections.add(self)
        self.shared.spawn(self._connect_upstream())

    async def _connect_upstream(self) -> None:
        shared = self.shared
        try:
            addresses = shared.upstream_for(self.node_id)
        except LookupError as exc:
            self.close(str(exc))
            return
        upstream: UpstreamSide | None = None
        problems: list[str] = []
        for address in addresses:
            try:
                _, upstream = await shared.loop.create_connection(
                    lambda: UpstreamSide(self),
                    address.host,
                    address.port,
                    ssl=shared.upstream_ssl,
                    server_hostname=address.host if shared.upstream_ssl else None,
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
            self.shared.loop.call_later(
                self.shared.drain_timeout, self.close, "in-flight requests not answered"
            )
            return
        self.close(reason, quiet=exc is None)

    def close(self, reason: str, quiet: bool = False) -> None:
        if self.closed:
            return
        self.flush_writes()  # what was handled before the close still goes out
        self.closed = True
        if not quiet:
            log.warning("closing connection from %s: %s", self.peer, reason)
        self.shared.connections.discard(self)
        if self.admitted:
            self.admitted = False
            self.shared.connection_gone(self.peer_host)
        if self.transport is not None:
            self.transport.close()
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()
        # Requests the broker never answered are recorded as failed, not forgotten.
        pending, self.pending = self.pending, deque()
        unanswered = [p for p in pending if not p.refused]
        for p in unanswered:
            self.shared.metrics.ended(p.api_key, "unanswered")
        audit_unanswered(self, unanswered, reason)

    def drain(self) -> None:
        """The gateway is stopping: read no new requests (one being cut through is read
        to its end); those in flight are still answered and audited."""
        self.draining = True
        if not self.cut.left:
            self.pause_client_reading()

    @property
    def busy(self) -> bool:
        """Whether requests are in flight (or a response is held, or a request is being
        cut through)."""
        return not self.closed and bool(self.pending or self.held or self.cut.left)

    def upstream_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.close(f"broker connection lost ({exc or 'closed by the broker'})", quiet=False)

    def pause_client_reading(self) -> None:
        if self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_client_reading(self) -> None:
        if self.draining and not self.cut.left:
            return
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
        metrics = self.shared.metrics
        metrics.bytes_from_clients += nbytes
        metrics.client_reads += 1
        if metrics.client_reads & LATENCY_SAMPLE_MASK:
            self._requests_arrived(nbytes)
            return
        started = time.perf_counter()  # one read in LATENCY_SAMPLE_MASK + 1 is timed
        self._requests_arrived(nbytes)
        metrics.request_latency.observe(time.perf_counter() - started)

    def _requests_arrived(self, nbytes: int) -> None:
        try:
            if self.cut.left:
                self._stream_request(nbytes)
                return
            self.to_broker = []
            try:
                for frame in self.frames.feed(bytes(self.reading[:nbytes])):
                    self.on_request(frame)
            finally:
                self.flush_writes()
            partial = self.frames.large_partial(STREAM_AT_LEAST)
            if partial is not None and self._start_streaming(partial):
                first, size = self.frames.take_partial()
                self.cut.start(first, size, self._upstream_idle())
                self._forward(first)
        except ProtocolViolation as exc:
            self.close(f"client broke framing: {exc}")
        except AuditRefused as exc:  # an acks=0 produce has no response to refuse
            self.close(f"audit log unavailable (fail_closed): {exc}")
        except Exception as exc:
            log.exception("request handling failed")
            self.close(f"gateway error on a request: {exc!r}")

    def _start_streaming(self, arrived: list[bytes]) -> bool:
        """Whether the Produce request of which `arrived` has come is cut through to the
        broker as it arrives, to be audited once whole (the caller then starts it)."""
        up = self.upstream
        first = head_of(arrived, _PRODUCE_HEAD_BYTES)
        if (
            self.closed
            or self.raw_sasl
            or up is None
            or up.transport is None
            or len(first) < 8
            or _INT16.unpack_from(first, 4)[0] != PRODUCE
            # While fail_closed refuses produce, it is read whole and refused unsent.
            or (self.shared.fail_closed and self.recording.unavailable() is not None)
        ):
            return False
        version = _INT16.unpack_from(first, 6)[0]
        try:
            client_id, acks = produce_head(arrived, version)
        except FrameDecodeError:
            return False  # the head is not all there (or not readable): whole-frame path
        correlation_id = _INT32.unpack_from(first, 8)[0]
        pending = Pending(
            PRODUCE, version, correlation_id, client_id, None, time.perf_counter(), True
        )
        if acks != 0:
            self.pending.append(pending)
        self.streaming = pending
        self.streaming_acks = acks
        return True

    def _stream_request(self, nbytes: int) -> None:
        """Forward the next piece of a cut-through produce request; audit it when whole."""
        piece, pieces = self.cut.filled(nbytes)
        self._forward(piece)
        if pieces is None:
            return
        self.cut.recycle(self._upstream_idle())
        if self.draining:
            self.pause_client_reading()
        pending = self.streaming
        assert pending is not None
        self.streaming = None
        self.shared.metrics.requests += 1
        try:
            pending.request = summarize_produce_request(pieces, pending.api_version)
        except FrameDecodeError as exc:
            log.debug("%s: produce request not summarised: %s", self.peer, exc)
            pending.decoded = False
        if self.streaming_acks == 0:
            audit_produce(self, pending, None)

    def _upstream_idle(self) -> bool:
        up = self.upstream
        return up is None or up.transport is None or up.transport.get_write_buffer_size() == 0

    def write_idle(self) -> bool:
        """Whether everything written to the client has left the process."""
        if self.to_client:
            return False
        return self.transport is None or self.transport.get_write_buffer_size() == 0

    def gather_writes(self) -> None:
        """Gather what is sent to the client until `flush_writes` (the broker end calls
        both around a read's whole responses)."""
        self.to_client = []

    def on_request(self, frame: bytes) -> None:
        shared = self.shared
        shared.metrics.requests += 1
        if self.raw_sasl and not self._raw_sasl_over(frame):
            self.sasl.client_token(frame[4:])
            self.pending.append(
                Pending(SASL_AUTHENTICATE, 0, -1, None, None, time.perf_counter(), True, True)
            )
            self._forward(frame)
            return
        if len(frame) < 12:
            raise ProtocolViolation(f"request of {len(frame) - 4} bytes has no header")
        key, version, correlation_id = _REQUEST_HEAD.unpack_from(frame, 4)
        if refuse_unoffered(self, frame, key, version):
            return
        request: Any = None
        decoded = True
        unknown_tags: tuple[int, ...] = ()
        client_id: str | None
        expect_response = True
        if key == PRODUCE and PRODUCE_MIN <= version <= PRODUCE_MAX:
            try:
                request = summarize_produce_request([frame], version)
            except FrameDecodeError as exc:
                if refuse(self, frame, exc):
                    return
                decoded = False
                client_id = peek_client_id(frame)
                log.debug("%s: forwarding undecoded request: %s", self.peer, exc)
            else:
                client_id = request.client_id
                expect_response = request.acks != 0
        elif shared.decodes_request(key):
            try:
                parsed = decode_request(memoryview(frame)[4:])  # type: ignore[arg-type]
            except FrameDecodeError as exc:
                if refuse(self, frame, exc):
                    return
                decoded = False
                client_id = peek_client_id(frame)
                log.debug("%s: forwarding undecoded request: %s", self.peer, exc)
            else:
                client_id = parsed.client_id
                request = parsed.body
                unknown_tags = parsed.unknown_tags
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
            client_id = peek_client_id(frame)
        pending = Pending(
            key, version, correlation_id, client_id, request, time.perf_counter(), decoded,
            unknown_tags=unknown_tags,
        )  # fmt: skip
        if shared.fail_closed and refuse_while_unavailable(
            self, frame, pending, request, expect_response
        ):
            return
        if expect_response:
            self.pending.append(pending)
        else:
            audit_produce(self, pending, None)
        self._forward(frame)

    def _forward(self, frame: Chunk) -> None:
        batch = self.to_broker
        if batch is not None:
            batch.append(frame)
            return
        up = self.upstream
        if up is None or up.transport is None:
            # Kept until the broker connection is up; reading stops meanwhile, so this
            # holds at most what one read brought.
            self.waiting.append(frame)
            self.pause_client_reading()
            return
        up.transport.write(frame)

    def flush_writes(self) -> None:
        """Write what the frames of the read being handled send each way, in order."""
        to_broker, to_client = self.to_broker, self.to_client
        self.to_broker = self.to_client = None
        if to_broker:
            if len(to_broker) == 1:
                self._forward(to_broker[0])
            else:
                up = self.upstream
                if up is None or up.transport is None:
                    for frame in to_broker:
                        self._forward(frame)
                else:
                    up.transport.writelines(to_broker)
        if to_client and self.transport is not None and not self.transport.is_closing():
            if len(to_client) == 1:
                self.transport.write(to_client[0])
            else:
                self.transport.writelines(to_client)

    def _raw_sasl_over(self, frame: bytes) -> bool:
        """Whether this frame, in raw SASL mode, is a Kafka request, not a token. Only an
        opaque mechanism's exchange ends unseen: the broker sends nothing for GSSAPI's
        last token (its SASL server answers it with null), so the client's next frame
        is a request, and the token before it will get no answer."""
        sasl = self.sasl
        if not (sasl.opaque and sasl.rounds and looks_like_request(frame)):
            return False
        self.raw_sasl = False
        if self.pending and self.pending[-1].raw_sasl:
            sasl.unconfirmed = self.pending.pop()  # a login once this request is answered
        return True
