"""Brokers: list them (id, host, port, rack, controller), read and edit their configs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported at run time
    ConfigResource,
    ResourceType,
)

from kaudit.console.actions.topics import config_entries
from kaudit.console.clusters import ClusterClients, KafkaCallError, kafka_call

__all__ = ["alter_broker_configs", "broker_configs", "list_brokers"]


def list_brokers(cluster: ClusterClients) -> dict[str, Any]:
    future = cluster.admin.describe_cluster(request_timeout=cluster.timeout)
    described = kafka_call("describe cluster", lambda: future.result(cluster.timeout))
    controller = described.controller.id if described.controller is not None else None
    return {
        "cluster_id": described.cluster_id,
        "controller": controller,
        "brokers": [
            {"id": n.id, "host": n.host, "port": n.port, "rack": n.rack}
            for n in sorted(described.nodes, key=lambda n: n.id)
        ],
    }


def broker_configs(cluster: ClusterClients, broker: int) -> dict[str, dict[str, Any]]:
    resource = ConfigResource(ResourceType.BROKER, str(broker))
    futures = cluster.admin.describe_configs([resource], request_timeout=cluster.timeout)
    entries = kafka_call(
        f"describe configs of broker {broker}", lambda: futures[resource].result(cluster.timeout)
    )
    return {
        name: {
            "value": None if e.is_sensitive else e.value,
            "default": e.is_default,
            "read_only": e.is_read_only,
            "sensitive": e.is_sensitive,
        }
        for name, e in sorted(entries.items())
    }


def alter_broker_configs(
    cluster: ClusterClients, broker: int, changes: Mapping[str, str | None]
) -> dict[str, Any]:
    """Set or reset (None) dynamic broker configs; the old and new values."""
    before = broker_configs(cluster, broker)
    unknown = sorted(set(changes) - set(before))
    if unknown:
        raise KafkaCallError(
            f"unknown broker config(s): {', '.join(unknown)}", code="INVALID_CONFIG"
        )
    resource = ConfigResource(
        ResourceType.BROKER, str(broker), incremental_configs=config_entries(changes)
    )
    futures = cluster.admin.incremental_alter_configs([resource], request_timeout=cluster.timeout)
    kafka_call(
        f"alter configs of broker {broker}", lambda: futures[resource].result(cluster.timeout)
    )
    after = broker_configs(cluster, broker)
    return {
        "changes": [
            {"name": n, "old": before[n]["value"], "new": after[n]["value"]} for n in changes
        ]
    }
