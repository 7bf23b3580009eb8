"""The brokers a gateway serves from start-up: the configuration's static broker map, and
those a Metadata call to the upstream cluster names when `gateway.discovery` says how
to log in for it.

With either, every broker's port listens before the first client connects, so a client
holding metadata from before a restart (or from another gateway instance in front of the
same cluster: the port of node N is `broker_ports_start + N` on each) finds its brokers.
"""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from kaudit.config.model import GatewayConfig, KafkaConnection
from kaudit.errors import GatewayError, LogError
from kaudit.log.kafka.client import ErrorTracker, client_base, cluster_metadata

DISCOVERY_TIMEOUT_S = 20.0


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def static_brokers(config: GatewayConfig) -> dict[int, tuple[str, int]]:
    """Node id → real (host, port) from `gateway.brokers`."""
    return {node: _split(address) for node, address in config.brokers.items()}


def discover_brokers(config: GatewayConfig) -> dict[int, tuple[str, int]]:
    """Node id → real (host, port) of every broker the upstream cluster names in a
    Metadata answer, asked with `gateway.discovery`'s login (blocking: call it off the
    event loop). GatewayError when the cluster cannot be asked."""
    if config.discovery is None:
        return {}
    connection = KafkaConnection(bootstrap_servers=config.upstream, security=config.discovery)
    tracker = ErrorTracker()
    admin = AdminClient(client_base(connection, tracker))
    try:
        metadata = cluster_metadata(
            admin, tracker, "gateway.discovery", timeout=DISCOVERY_TIMEOUT_S
        )
    except LogError as exc:
        raise GatewayError(f"cannot ask the cluster for its brokers: {exc}") from exc
    return {int(node): (broker.host, int(broker.port)) for node, broker in metadata.brokers.items()}
