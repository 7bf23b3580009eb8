"""The audit gateway: a Kafka wire-protocol proxy that audits every request (KIP-567)
without a broker plugin, so it works for any Kafka, managed ones included.

listener (ports, shared state, lifecycle) · connection (framing, correlation, hold and
release) · codec (kio) · rewrite (broker addresses, ApiVersions) · sasl (principal) ·
audit_map (request + response → audit call) · aggregate (produce/fetch windows).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from kaudit.config import Config
from kaudit.errors import GatewayError
from kaudit.gateway.listener import Gateway, GatewayThread
from kaudit.session import AuditSession

__all__ = ["Gateway", "GatewayError", "GatewayThread", "build_gateway", "run_gateway"]


def build_gateway(config: Config, session: AuditSession) -> Gateway:
    """The gateway of `config.gateway`, auditing through `session` under the config's
    failure policy."""
    if config.gateway is None:
        raise GatewayError("no `gateway:` section in the configuration")
    return Gateway(
        config.gateway,
        session.audit,
        fail_closed=config.audit.failure_policy == "fail_closed",
        selects=session.recorder.selects,
        when_durable=session.recorder.when_durable,
        unavailable=lambda: session.recorder.unavailable_reason,
        durable_timeout=config.audit.block_timeout_ms / 1000,
    )


def run_gateway(config: Config, *, ready: Callable[[Gateway], None] | None = None) -> None:
    """Run the gateway of `config` on uvloop until SIGINT/SIGTERM, recording through an
    audit session of its own; the session is flushed and closed on the way out."""
    import uvloop

    session = AuditSession(config, source="gateway")
    try:
        gateway = build_gateway(config, session)

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, gateway.request_stop)
            await gateway.start()
            if ready is not None:
                ready(gateway)
            await gateway.serve_until_stopped()

        uvloop.run(main())
    finally:
        session.close()
