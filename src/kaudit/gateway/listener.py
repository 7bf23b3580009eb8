"""The gateway: its listening ports, the state connections share, and its lifecycle.

One bootstrap port, plus one port per broker (`broker_ports_start + node_id`), opened
the moment a response first names that broker, before the client can read it. Shared
state: the broker map, topic ids → names (from Metadata responses), the produce/fetch
aggregator, and the audit session the records go to. `Gateway.serve()` runs it on the
current event loop; `GatewayThread` runs it on uvloop in a thread (tests, benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from kaudit.auditor import (
    ActionEvent,
    ActionTarget,
    AuthInfo,
    RequestContext,
    RequestEvent,
    record_types,
)
from kaudit.config.model import ClientTls, GatewayConfig, UpstreamTls
from kaudit.errors import AuditRefused, AuditUnavailableError, GatewayError
from kaudit.gateway.aggregate import RecordsAggregator
from kaudit.gateway.audit_map import MAPPERS
from kaudit.gateway.codec import API_NAMES, parsable_versions
from kaudit.gateway.connection import (
    _REWRITTEN,
    _TOKEN_APIS,
    CREATE_DELEGATION_TOKEN,
    FETCH,
    PRODUCE,
    SASL_AUTHENTICATE,
    SASL_HANDSHAKE,
    ClientConnection,
    _Held,
    _Pending,
)
from kaudit.gateway.framing import BufferPool
from kaudit.gateway.rewrite import Address, BrokerMap, BrokerPortError

log = logging.getLogger("kaudit.gateway")

# Free cut-through buffers kept for reuse, across all connections: a few consumers'
# worth of multi-megabyte fetch responses.
_POOLED_BUFFER_BYTES = 64 * 1024 * 1024
# What one ordinary read takes at most (uvloop's own read size).
_READ_BYTES = 256 * 1024

Audit = Callable[[RequestEvent | None, RequestContext, Sequence[AuthInfo]], None]
WhenDurable = Callable[[Callable[[str | None], None]], None]
Unavailable = Callable[[], str | None]


@dataclass
class GatewayMetrics:
    """kaudit_gateway_* counters."""

    requests: int = 0
    audit_calls: int = 0
    audit_failures: int = 0
    refused: int = 0
    connections_total: int = 0


def _client_ssl(tls: ClientTls) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.ca_file:
            context.load_verify_locations(tls.ca_file)
            context.verify_mode = (
                ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
            )
    except (OSError, ssl.SSLError) as exc:
        raise GatewayError(f"gateway.tls: cannot load the certificate or CA: {exc}") from exc
    return context


def _upstream_ssl(tls: UpstreamTls) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
        context.check_hostname = tls.check_hostname
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise GatewayError(f"gateway.upstream_tls: cannot load a file: {exc}") from exc
    return context


class Gateway:
    """A Kafka protocol proxy that audits each request once the broker has answered."""

    def __init__(
        self,
        config: GatewayConfig,
        audit: Audit,
        *,
        fail_closed: bool = False,
        selects: Callable[[str], bool] = lambda event_type: True,
        when_durable: WhenDurable | None = None,
        unavailable: Unavailable | None = None,
        durable_timeout: float = 5.0,
    ) -> None:
        if fail_closed and (when_durable is None or unavailable is None):
            raise ValueError("fail_closed needs when_durable and unavailable")
        self.config = config
        self._audit_fn = audit
        self.fail_closed = fail_closed
        self._when_durable = when_durable
        self._unavailable = unavailable
        self.selects = selects
        self.durable_timeout = durable_timeout
        self.max_frame_bytes = config.max_frame_bytes
        self.buffers = BufferPool(_POOLED_BUFFER_BYTES)
        # Where every connection's ordinary reads land. One buffer serves them all: each
        # read is copied out (into the bytes the framing keeps) before the event loop
        # reads anything else.
        self.read_buffer = memoryview(bytearray(_READ_BYTES))
        self.drain_timeout = 30.0
        self.metrics = GatewayMetrics()
        self.connections: set[ClientConnection] = set()
        self.client_ssl = _client_ssl(config.tls) if config.tls else None
        self.upstream_ssl = _upstream_ssl(config.upstream_tls) if config.upstream_tls else None
        host = config.advertised_host or config.listen_host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        start = config.broker_ports_start or config.listen_port + 1
        self.brokers = BrokerMap(host, start, self._open_broker_port)
        self.aggregator = RecordsAggregator(self.audit, config.records_window_seconds)
        self._topic_names: dict[Any, str] = {}
        self._token_owners: dict[str, str] = {}
        self._generic = self._generic_apis()
        self._decoded_responses = frozenset(
            {*_REWRITTEN, *_TOKEN_APIS, *MAPPERS, PRODUCE, FETCH}
            | {SASL_HANDSHAKE, SASL_AUTHENTICATE}
            | {key for key in API_NAMES if key in self._generic}
        )
        self._servers: dict[int | None, asyncio.AbstractServer] = {}
        self._serving: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    # -- configuration-derived decisions --------------------------------------------------

    def _generic_apis(self) -> frozenset[int]:
        events = self.config.request_events
        if not events.enabled:
            return frozenset()
        excluded = set(events.exclude_apis) - set(events.include_apis)
        keys = {key for key, name in API_NAMES.items() if name not in excluded}
        return frozenset(keys)

    def records_generic(self, key: int) -> bool:
        """Whether a request of this API is recorded as `kafka.request` (no own type)."""
        return key in self._generic or (key not in API_NAMES and self.config.request_events.enabled)

    def decodes_request(self, key: int) -> bool:
        return parsable_versions(key) is not None

    def decodes_response(self, key: int) -> bool:
        return key in self._decoded_responses

    # -- shared state -----------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the gateway is not running"
        return self._loop

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a connection's task; the gateway owns it and cancels it on stop."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def upstream_for(self, node_id: int | None) -> list[Address]:
        if node_id is None:
            return [
                Address(s.rpartition(":")[0], int(s.rpartition(":")[2]))
                for s in self.config.upstream
            ]
        address = self.brokers.upstream_of(node_id)
        if address is None:
            raise LookupError(f"broker {node_id} is not known yet (no metadata has named it)")
        return [address]

    def learn_topics(self, metadata: Any) -> None:
        for topic in metadata.topics:
            topic_id = getattr(topic, "topic_id", None)
            if topic_id is not None and topic.name:
                self._topic_names[topic_id] = str(topic.name)

    def learn_token_owners(self, key: int, response: Any) -> None:
        """Token id -> owner, from CreateDelegationToken and DescribeDelegationToken
        responses: a client logging in with a token acts as its owner."""
        tokens = (response,) if key == CREATE_DELEGATION_TOKEN else response.tokens
        for token in tokens:
            if token.token_id and token.principal_name:
                self._token_owners[str(token.token_id)] = (
                    f"{token.principal_type}:{token.principal_name}"
                )

    def token_owner(self, token_id: str | None) -> str | None:
        return self._token_owners.get(token_id) if token_id else None

    def topic_name(self, topic_id: Any) -> str:
        name = self._topic_names.get(topic_id)
        return name if name is not None else str(topic_id)

    # -- audit ------------------------------------------------------------------------------

    def audit(
        self, event: RequestEvent | None, ctx: RequestContext, auth: Sequence[AuthInfo]
    ) -> bool:
        """The one audit call of a request; True if it makes records the log keeps (so a
        fail_closed response waits for them)."""
        recorded = any(self.selects(t) for t in record_types(event, auth))
        if recorded:
            self.check_available()
        self.metrics.audit_calls += 1
        try:
            self._audit_fn(event, ctx, auth)
        except AuditUnavailableError as exc:
            self.metrics.audit_failures += 1
            log.error("audit call for %s failed: %s", ctx.api_name, exc)
            if self.fail_closed:
                raise AuditRefused(str(exc)) from exc
        return recorded

    def records(self, event_type: str) -> bool:
        """Whether records of this type are kept; under fail_closed, raises AuditRefused
        when they are but the log cannot take them now."""
        if not self.selects(event_type):
            return False
        self.check_available()
        return True

    def check_available(self) -> None:
        """Under fail_closed, raise AuditRefused when the log cannot take a record now
        (recording would block the event loop, and the record could not be durable)."""
        if self.fail_closed and self._unavailable is not None:
            reason = self._unavailable()
            if reason is not None:
                self.metrics.audit_failures += 1
                raise AuditRefused(reason)

    def flush_records(self) -> None:
        """Close the produce/fetch window: one record per client and topic."""
        try:
            self.aggregator.flush()
        except AuditRefused as exc:
            log.error("produce/fetch records of this window lost: %s", exc)

    def audit_auth(
        self,
        conn: ClientConnection,
        pending: _Pending,
        event_type: str,
        error_code: int,
        message: str | None,
        session_lifetime_ms: int = 0,
    ) -> bool:
        """auth.login / auth.failed for a SASL exchange the broker answered; a login
        says whether it renewed an earlier one on the same connection (KIP-368
        re-authentication) and how long the broker lets the session last."""
        ctx = conn.context(pending)
        principal = conn.sasl.principal if error_code == 0 else conn.sasl.claimed_principal()
        ctx = RequestContext(**{**ctx.__dict__, "principal": principal})
        details: dict[str, Any] = {"mechanism": conn.sasl.mechanism}
        if conn.sasl.token_auth:
            details["delegation_token"] = True
            details["token_id"] = conn.sasl.claimed
        if error_code == 0:
            details["reauthentication"] = conn.sasl.reauthenticated
            if session_lifetime_ms > 0:
                details["session_lifetime_ms"] = session_lifetime_ms
        if message:
            details["message"] = message
        return self.audit(
            ActionEvent(
                "authenticate",
                (ActionTarget(event_type, "user", principal, details),),
            ),
            ctx,
            (AuthInfo("AUTHENTICATE", "USER", principal, allowed=True, error_code=error_code),),
        )

    def when_durable(self, conn: ClientConnection, held: _Held) -> None:
        assert self._when_durable is not None
        loop = self.loop

        def done(error: str | None) -> None:
            loop.call_soon_threadsafe(settle, error)

        def settle(error: str | None) -> None:
            if not held.ready:
                conn.durable(held, error)

        self._when_durable(done)
        loop.call_later(
            self.durable_timeout,
            settle,
            f"not durable after {self.durable_timeout:g}s",
        )

    # -- ports ------------------------------------------------------------------------------

    def _listen_socket(self, host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise GatewayError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        return sock

    def _open_broker_port(self, node_id: int, host: str, port: int) -> None:
        if node_id in self._serving:
            log.info("broker %d now at %s:%d", node_id, host, port)
            return
        try:
            listen_port = self.brokers.port_for(node_id)
            sock = self._listen_socket(self.config.listen_host, listen_port)
        except (BrokerPortError, GatewayError) as exc:
            log.error("cannot serve broker %d: %s", node_id, exc)
            return
        log.info("broker %d (%s:%d) served on port %d", node_id, host, port, listen_port)
        # The socket listens already, so a client that connects before the server task
        # runs waits in the backlog rather than being refused.
        self._serving.add(node_id)
        self.spawn(self._serve_socket(node_id, sock))

    async def _serve_socket(self, node_id: int | None, sock: socket.socket) -> None:
        server = await self.loop.create_server(
            lambda: self._accept(node_id), sock=sock, ssl=self.client_ssl
        )
        self._servers[node_id] = server

    def _accept(self, node_id: int | None) -> ClientConnection:
        self.metrics.connections_total += 1
        return ClientConnection(self, node_id)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the bootstrap port (errors here are GatewayError) and the window timer."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        # Everything loaded so far lives as long as the process: keep it out of the
        # garbage collector's full passes, which would otherwise pause requests.
        gc.freeze()
        sock = self._listen_socket(self.config.listen_host, self.config.listen_port)
        await self._serve_socket(None, sock)
        self._schedule_flush()
        log.info(
            "gateway listening on %s for %s (brokers from port %d)",
            self.config.listen,
            ",".join(self.config.upstream),
            self.brokers.broker_ports_start,
        )

    def _schedule_flush(self) -> None:
        def tick() -> None:
            if self._stopping is not None and self._stopping.is_set():
                return
            if self.aggregator.due():
                self.flush_records()
            self._schedule_flush()

        self.loop.call_later(min(1.0, self.config.records_window_seconds), tick)

    async def serve(self) -> None:
        """Start, then run until `request_stop()`."""
        await self.start()
        await self.serve_until_stopped()

    async def serve_until_stopped(self) -> None:
        """Run a started gateway until `request_stop()`, then stop it."""
        assert self._stopping is not None, "start() first"
        try:
            await self._stopping.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def stop(self) -> None:
        """Close every port and connection, then audit what the windows hold."""
        if self._stopping is not None:
            self._stopping.set()
        for server in list(self._servers.values()):
            server.close()
        for conn in list(self.connections):
            conn.close("gateway stopping", quiet=True)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.flush_records()
        self._servers.clear()
        self._serving.clear()


class GatewayThread:
    """A gateway on its own uvloop event loop in a background thread."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._thread = threading.Thread(target=self._run, name="kaudit-gateway", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        import uvloop

        loop = uvloop.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        try:
            await self.gateway.start()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        await self.gateway.serve_until_stopped()

    def start(self, timeout: float = 10.0) -> GatewayThread:
        self._thread.start()
        if not self._started.wait(timeout):
            raise GatewayError("the gateway did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def call(self, fn: Callable[[], Any]) -> None:
        """Run `fn` on the gateway's loop (e.g. flushing the aggregator in a test)."""
        assert self._loop is not None
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.gateway.request_stop)
        self._thread.join(timeout)

    def __enter__(self) -> GatewayThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
