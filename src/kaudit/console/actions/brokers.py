"""Brokers: list them (id, host, port, rack, controller), read and edit their configs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka.admin import ResourceType  # type: ignore[attr-defined]

from kaudit.console.actions.configs import alter_configs, read_configs
from kaudit.console.clusters import ClusterClients, kafka_call

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
    entries = read_configs(cluster, ResourceType.BROKER, str(broker), f"broker {broker}")
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
    return alter_configs(
        cluster, ResourceType.BROKER, str(broker), f"broker {broker}", changes,
        read=lambda: broker_configs(cluster, broker),
        unknown="unknown broker config(s)",
    )  # fmt: skip
