"""The gateway: its listening ports, the connections it accepts, and its lifecycle.

One bootstrap port, plus one port per broker (`broker_ports_start + node_id`): those of
the brokers known at start (the static broker map, a Metadata call: see discovery) open
before the bootstrap port; any other opens the moment a response first names that
broker, before the client can read it. Stopping is graceful: no new connections or
requests, those in flight answered and recorded within `stop_timeout_seconds`. The
gateway owns the state its connections share (`SharedState`: the broker map, names
learned from responses, buffers, the event loop and its tasks) and its door to the audit
session (`Recording`: the failure policy, the produce/fetch windows), and hands them to
each `ClientConnection` it accepts. `Gateway.serve()` runs it on the current event loop;
`GatewayThread` runs it on uvloop in a thread (tests, benchmarks).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaudit.config.model import ClientTls, GatewayConfig, UpstreamTls
from kaudit.errors import GatewayError
from kaudit.files import UnprotectedKeyError, check_private_key
from kaudit.gateway.connection import ClientConnection
from kaudit.gateway.discovery import discover_brokers, static_brokers
from kaudit.gateway.journal import WindowJournal
from kaudit.gateway.reconfigure import CERTIFICATE_CHECK_SECONDS, CertificateWatcher
from kaudit.gateway.recording import Audit, GatewayMetrics, Recording, Unavailable, WhenDurable
from kaudit.gateway.rewrite import BrokerMap, BrokerPortError
from kaudit.gateway.shared import SharedState

log = logging.getLogger("kaudit.gateway")


def _client_ssl(tls: ClientTls) -> ssl.SSLContext:
    try:
        check_private_key(tls.key_file, "gateway.tls.key_file")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.ca_file:
            context.load_verify_locations(tls.ca_file)
            context.verify_mode = (
                ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
            )
    except (OSError, ssl.SSLError, UnprotectedKeyError) as exc:
        raise GatewayError(f"gateway.tls: cannot load the certificate or CA: {exc}") from exc
    return context


def _upstream_ssl(tls: UpstreamTls) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
        context.check_hostname = tls.check_hostname
        if tls.cert_file:
            if tls.key_file:
                check_private_key(tls.key_file, "gateway.upstream_tls.key_file")
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError, UnprotectedKeyError) as exc:
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
        journal_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.metrics = GatewayMetrics()
        # fail_closed journals the produce/fetch window (one file set per listen port).
        journal = None
        if fail_closed:
            if journal_dir is None:
                raise GatewayError("fail_closed needs a directory for the window journal")
            journal = WindowJournal(journal_dir, f"gateway-{config.listen_port}")
        self.recording = Recording(
            audit,
            self.metrics,
            window_seconds=config.records_window_seconds,
            fail_closed=fail_closed,
            selects=selects,
            when_durable=when_durable,
            unavailable=unavailable,
            durable_timeout=durable_timeout,
            journal=journal,
            max_window_keys=config.max_window_keys,
        )
        self.client_ssl = _client_ssl(config.tls) if config.tls else None
        upstream_ssl = _upstream_ssl(config.upstream_tls) if config.upstream_tls else None
        self.certificates = CertificateWatcher()
        if self.client_ssl is not None and config.tls is not None:
            self.certificates.watch_client(self.client_ssl, config.tls)
        if upstream_ssl is not None and config.upstream_tls is not None:
            self.certificates.watch_upstream(upstream_ssl, config.upstream_tls)
        host = config.advertised_host or config.listen_host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        start = config.broker_ports_start or config.listen_port + 1
        self.brokers = BrokerMap(host, start, self._open_broker_port)
        self.shared = SharedState(config, self.recording, self.brokers, upstream_ssl)
        self._servers: dict[int | None, asyncio.AbstractServer] = {}
        self._serving: set[int] = set()
        self._stopping: asyncio.Event | None = None

    def flush_records(self) -> None:
        """Close the produce/fetch window: one record per client and topic."""
        self.recording.flush_records()

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
        self.shared.spawn(self._serve_socket(node_id, sock))

    async def _serve_socket(self, node_id: int | None, sock: socket.socket) -> None:
        server = await self.shared.loop.create_server(
            lambda: self._accept(node_id), sock=sock, ssl=self.client_ssl
        )
        self._servers[node_id] = server

    def _accept(self, node_id: int | None) -> ClientConnection:
        self.metrics.connections_total += 1
        return ClientConnection(self.shared, node_id)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the ports of the brokers known at start, then the bootstrap port, and
        start the window timer (errors here are GatewayError)."""
        loop = asyncio.get_running_loop()
        self.shared.bind_loop(loop)
        self._stopping = asyncio.Event()
        known = await loop.run_in_executor(None, discover_brokers, self.config)
        known.update(static_brokers(self.config))  # the configuration has the last word
        try:
            for node_id, (host, port) in sorted(known.items()):
                sock = self._listen_socket(self.config.listen_host, self.brokers.port_for(node_id))
                self.brokers.add_known(node_id, host, port)
                self._serving.add(node_id)
                await self._serve_socket(node_id, sock)
                log.info("broker %d (%s:%d) served on port %d", node_id, host, port,
                         self.brokers.port_for(node_id))  # fmt: skip
            sock = self._listen_socket(self.config.listen_host, self.config.listen_port)
        except (BrokerPortError, GatewayError) as exc:
            for server in self._servers.values():
                server.close()
            raise GatewayError(str(exc)) from exc
        # Everything loaded so far lives as long as the process: keep it out of the
        # garbage collector's full passes, which would otherwise pause requests.
        gc.freeze()
        await self._serve_socket(None, sock)
        self._schedule_flush()
        if self.certificates.watching:
            self._schedule_certificate_check()
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
            if self.recording.aggregator.due():
                self.flush_records()
            self._schedule_flush()

        self.shared.loop.call_later(min(1.0, self.config.records_window_seconds), tick)

    def _schedule_certificate_check(self) -> None:
        def tick() -> None:
            if self._stopping is not None and self._stopping.is_set():
                return
            self.certificates.check()
            self._schedule_certificate_check()

        self.shared.loop.call_later(CERTIFICATE_CHECK_SECONDS, tick)

    def reconfigure(self, config: GatewayConfig) -> None:
        """Apply a reloaded configuration's gateway settings (`with_reloaded`), and look
        at the certificate files now; on the gateway's loop."""
        self.config = config
        self.shared.reconfigure(config)
        self.certificates.check()

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
        """Stop accepting connections and requests, let those in flight be answered and
        recorded (for up to `stop_timeout_seconds`), then close every connection (one
        still unanswered is recorded as failed) and audit what the windows hold."""
        if self._stopping is not None:
            self._stopping.set()
        for server in list(self._servers.values()):
            server.close()
        for conn in list(self.shared.connections):
            conn.drain()
        loop = self.shared.loop
        deadline = loop.time() + self.config.stop_timeout_seconds
        while loop.time() < deadline and any(c.busy for c in self.shared.connections):
            await asyncio.sleep(0.01)  # answers arrive on this loop meanwhile
        busy = sum(1 for c in self.shared.connections if c.busy)
        if busy:
            log.warning(
                "stopping with %d connections still waiting for the broker after %gs",
                busy,
                self.config.stop_timeout_seconds,
            )
        for conn in list(self.shared.connections):
            conn.close("gateway stopping", quiet=True)
        await self.shared.cancel_tasks()
        self.recording.close()  # the window's records, and those kept for the log
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

    def stop(self, timeout: float | None = None) -> None:
        """Stop the gateway and wait for its thread: by default as long as requests in
        flight may take (`stop_timeout_seconds`), and 10 s more."""
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.gateway.request_stop)
        if timeout is None:
            timeout = self.gateway.config.stop_timeout_seconds + 10.0
        self._thread.join(timeout)

    def __enter__(self) -> GatewayThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
