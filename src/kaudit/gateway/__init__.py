"""The audit gateway: a Kafka wire-protocol proxy between clients and brokers that audits
every request (KIP-567) without a broker plugin, so it works for any Kafka, managed ones
included.

A request goes one way through the package, and no module imports one above it: listener
(ports; owns the state its connections share: shared) → connection (framing,
correlation, forwarding; upstream is its broker end; answering, its response side;
exchange, a request in flight) → auditing (the one audit call of a request: audit_map
and audit_apis make request + response into events, aggregate counts produce/fetch
records into windows) → recording (the failure policy) → the audit session. Beside the
path: codec (kio, the API keys), framing (frames, cut-through), fetch and produce (read
without copying records), rewrite (broker addresses, ApiVersions), sasl (the principal).
Where a lower part must tell a higher one something (upstream: a broker's response;
recording: a record now durable), it is handed an object that meets a small protocol of
its own.

What it may import: kaudit.session and, through it, the recorder; kaudit.auditor (the
KIP-567 call and its types), kaudit.config, kaudit.events and kaudit.errors. Never
kaudit.exporters, kaudit.store or kaudit.cli: a source knows nothing of what reads the
log, nor of what runs it.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable

from kaudit.config import Config
from kaudit.errors import GatewayError
from kaudit.gateway.listener import Gateway, GatewayThread
from kaudit.gateway.reconfigure import with_reloaded
from kaudit.gateway.rewrite import settle_offered_versions
from kaudit.ops import reload
from kaudit.session import AuditSession

__all__ = ["Gateway", "GatewayError", "GatewayThread", "build_gateway", "run_gateway"]


def build_gateway(config: Config, session: AuditSession) -> Gateway:
    """The gateway of `config.gateway`, auditing through `session` under the config's
    failure policy."""
    if config.gateway is None:
        raise GatewayError("no `gateway:` section in the configuration")
    settle_offered_versions()
    return Gateway(
        config.gateway,
        session.audit,
        fail_closed=config.audit.failure_policy == "fail_closed",
        selects=session.recorder.selects,
        when_durable=session.recorder.when_durable,
        unavailable=lambda: session.recorder.unavailable_reason,
        durable_timeout=config.audit.block_timeout_ms / 1000,
        journal_dir=config.data_path / "gateway",
    )


def reloading(gateway: Gateway, loop: asyncio.AbstractEventLoop) -> reload.Prepare:
    """How a configuration reload reaches a running gateway: its reloadable settings
    (kaudit.gateway.reconfigure) applied on its loop; a reload also has the certificate
    files looked at now, whether or not the configuration is taken."""

    def prepare(old: Config, new: Config) -> reload.Change | None:
        loop.call_soon_threadsafe(gateway.certificates.check)
        changed = with_reloaded(gateway.config, new.gateway) if new.gateway else None
        if changed is None:
            return None

        def commit() -> None:
            loop.call_soon_threadsafe(gateway.reconfigure, changed)

        return reload.Committed(commit)

    return prepare


def run_gateway(
    config: Config,
    *,
    ready: Callable[[Gateway], None] | None = None,
    session: AuditSession | None = None,
    stopped: threading.Event | None = None,
) -> None:
    """Run the gateway of `config` on uvloop until SIGINT/SIGTERM, recording through
    `session`, or an audit session of its own that is flushed and closed on the way out.
    `stopped`: a stop the caller's signal handlers may have asked for before the
    gateway's own are in place (building the gateway may call the brokers first)."""
    import uvloop

    owned = session is None
    session = session if session is not None else AuditSession(config, source="gateway")
    try:
        gateway = build_gateway(config, session)

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, gateway.request_stop)
            if stopped is not None and stopped.is_set():
                return
            await gateway.start()
            unregister = reload.register("gateway", reloading(gateway, loop))
            if ready is not None:
                ready(gateway)
            try:
                await gateway.serve_until_stopped()
            finally:
                unregister()

        uvloop.run(main())
    finally:
        if owned:
            session.close()
