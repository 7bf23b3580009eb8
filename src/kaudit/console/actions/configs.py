"""Configs of a topic or a broker: read them, and change them incrementally with the old
and new value of each, refusing names the resource does not have."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported at run time
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from kaudit.console.clusters import ClusterClients, KafkaCallError, kafka_call

__all__ = ["alter_configs", "read_configs"]


def read_configs(
    cluster: ClusterClients, rtype: ResourceType, name: str, label: str
) -> dict[str, Any]:
    """The resource's config entries by name, as the broker describes them."""
    resource = ConfigResource(rtype, name)
    futures = cluster.admin.describe_configs([resource], request_timeout=cluster.timeout)
    entries: dict[str, Any] = kafka_call(
        f"describe configs of {label}", lambda: futures[resource].result(cluster.timeout)
    )
    return entries


def alter_configs(
    cluster: ClusterClients,
    rtype: ResourceType,
    name: str,
    label: str,
    changes: Mapping[str, str | None],
    *,
    read: Callable[[], dict[str, dict[str, Any]]],
    unknown: str,
) -> dict[str, Any]:
    """Set (a value) or reset to default (None) each config of the resource; the old and
    new values, as `read` gives them. `unknown` begins the error for names it lacks."""
    before = read()
    missing = sorted(set(changes) - set(before))
    if missing:
        raise KafkaCallError(f"{unknown}: {', '.join(missing)}", code="INVALID_CONFIG")
    resource = ConfigResource(rtype, name, incremental_configs=_entries(changes))
    futures = cluster.admin.incremental_alter_configs([resource], request_timeout=cluster.timeout)
    kafka_call(f"alter configs of {label}", lambda: futures[resource].result(cluster.timeout))
    after = read()
    return {
        "changes": [
            {"name": n, "old": before[n]["value"], "new": after[n]["value"]} for n in changes
        ]
    }


def _entries(changes: Mapping[str, str | None]) -> list[ConfigEntry]:
    """Incremental config changes: SET a value, or DELETE (back to the default) for None."""
    return [
        ConfigEntry(
            name,
            value,
            incremental_operation=(
                AlterConfigOpType.DELETE if value is None else AlterConfigOpType.SET
            ),
        )
        for name, value in changes.items()
    ]
