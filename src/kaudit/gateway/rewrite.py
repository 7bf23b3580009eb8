"""Broker addresses and API versions as the client must see them.

Clients must talk to every broker through the gateway, so each broker address a response
carries is replaced by the gateway's address for that node: one port per broker, chosen
deterministically as `broker_ports_start + node_id`. The real addresses are learned from
the same responses (Metadata, DescribeCluster, FindCoordinator, and KIP-951's
`node_endpoints` in Produce/Fetch), so a broker's port opens the moment a client can
first learn about it. ApiVersions offers only what the gateway can read and answer
truthfully (`offered_versions`): versions kio reads, and none whose responses name
brokers the gateway does not rewrite (ShareFetch and ShareAcknowledge are not offered at
all, nor is share-group consumption's ShareGroupHeartbeat). A request at any other
version is refused (refusal.refuse_unoffered).
"""

from __future__ import annotations

import threading
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass, replace
from functools import cache
from typing import Any

from kio.index import load_response_schema
from kio.static.primitive import i16, i32

from kaudit.gateway.codec import (
    API_KEYS,
    API_VERSIONS,
    DESCRIBE_CLUSTER,
    FIND_COORDINATOR,
    METADATA,
    PRODUCE,
    parsable_versions,
)

REWRITTEN = frozenset({API_VERSIONS, METADATA, FIND_COORDINATOR, DESCRIBE_CLUSTER})
"""APIs whose responses the client never gets from the gateway without their being
decoded and re-encoded."""
ADDRESSES = REWRITTEN - {API_VERSIONS}
"""APIs whose responses name brokers: never passed on unrewritten."""

NewBroker = Callable[[int, str, int], None]


class BrokerPortError(ValueError):
    """A node id whose gateway port would fall outside 1..65535."""


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class BrokerMap:
    """Node id ↔ real broker address ↔ the gateway's port for it (shared by connections)."""

    def __init__(
        self, advertised_host: str, broker_ports_start: int, on_new_broker: NewBroker
    ) -> None:
        self.advertised_host = advertised_host
        self.broker_ports_start = broker_ports_start
        self._on_new_broker = on_new_broker
        self._upstream: dict[int, Address] = {}
        self._lock = threading.Lock()

    def port_for(self, node_id: int) -> int:
        port = self.broker_ports_start + node_id
        if not 0 < port < 65536:
            raise BrokerPortError(
                f"broker node id {node_id} maps to port {port}, outside 1..65535; "
                "set gateway.broker_ports_start so that start + node id is a valid port"
            )
        return port

    def upstream_of(self, node_id: int) -> Address | None:
        return self._upstream.get(node_id)

    def learn(self, node_id: int, host: str, port: int) -> tuple[str, int]:
        """Note a broker's real address; returns the address the client must use."""
        if node_id < 0 or port < 0:
            return host, port  # "no coordinator/leader" placeholders stay as they are
        address = Address(host, port)
        if self._upstream.get(node_id) != address:
            with self._lock:
                self._upstream[node_id] = address
            self._on_new_broker(node_id, host, port)
        return self.advertised_host, self.port_for(node_id)

    def add_known(self, node_id: int, host: str, port: int) -> None:
        """Note a broker's real address known before any response names it (the static
        broker map, a Metadata call at start); its port is opened by the caller."""
        with self._lock:
            self._upstream[node_id] = Address(host, port)

    def known(self) -> dict[int, Address]:
        return dict(self._upstream)


def _rewrite_nodes(nodes: tuple[Any, ...], id_field: str, brokers: BrokerMap) -> tuple[Any, ...]:
    out = []
    for node in nodes:
        host, port = brokers.learn(int(getattr(node, id_field)), node.host, int(node.port))
        out.append(replace(node, host=host, port=i32(port)))
    return tuple(out)


def rewrite_metadata(body: Any, brokers: BrokerMap) -> Any:
    return replace(body, brokers=_rewrite_nodes(body.brokers, "node_id", brokers))


def rewrite_describe_cluster(body: Any, brokers: BrokerMap) -> Any:
    return replace(body, brokers=_rewrite_nodes(body.brokers, "broker_id", brokers))


def rewrite_find_coordinator(body: Any, brokers: BrokerMap) -> Any:
    if hasattr(body, "coordinators"):  # v4+: one entry per key
        return replace(body, coordinators=_rewrite_nodes(body.coordinators, "node_id", brokers))
    host, port = brokers.learn(int(body.node_id), body.host, int(body.port))
    return replace(body, host=host, port=i32(port))


def rewrite_node_endpoints(body: Any, brokers: BrokerMap) -> Any | None:
    """Produce v10+/Fetch v16+ responses naming new leaders; None when there are none."""
    endpoints = getattr(body, "node_endpoints", ())
    if not endpoints:
        return None
    return replace(body, node_endpoints=_rewrite_nodes(endpoints, "node_id", brokers))


REWRITES_ADDRESSES = ADDRESSES | {PRODUCE}
"""APIs whose responses name brokers and go out rewritten (Produce: KIP-951's
node_endpoints, see rewrite_node_endpoints)."""
NEVER_UNREAD = REWRITTEN | REWRITES_ADDRESSES
"""APIs whose responses are never passed on unread: their broker addresses (or, for
ApiVersions, versions the gateway cannot read) would reach the client unrewritten."""
NOT_OFFERED = frozenset({API_KEYS["ShareGroupHeartbeat"]})
"""APIs left out although their responses name no brokers: a share consumer joins its
group with ShareGroupHeartbeat only to fetch with ShareFetch, which is not offered, so it
fails at once instead of joining a group it cannot consume from."""
APPLICATION_ENDPOINTS = frozenset(
    {API_KEYS["StreamsGroupHeartbeat"], API_KEYS["StreamsGroupDescribe"]}
)
"""APIs whose responses carry hosts and ports that are not brokers: the Streams
instances' own `application.server` endpoints."""


def names_hosts(entity: type[Any], seen: frozenset[type[Any]] = frozenset()) -> bool:
    """Whether an entity, or one nested in it, holds a host and a port."""
    names = {f.name for f in fields(entity)}
    if {"host", "port"} <= names:
        return True
    hints = typing.get_type_hints(entity)
    for f in fields(entity):
        for inner in (hints[f.name], *typing.get_args(hints[f.name])):
            for kind in (inner, *typing.get_args(inner)):
                nested = isinstance(kind, type) and is_dataclass(kind) and kind not in seen
                if nested and names_hosts(kind, seen | {entity}):
                    return True
    return False


@cache
def offered_versions(key: int) -> tuple[int, int] | None:
    """The (min, max) versions of an API the gateway offers in ApiVersions and accepts;
    None: not offered at all. Those kio reads, up to the last one whose responses name
    no brokers, unless the gateway rewrites them: so Fetch stops at v15 (v16+ responses
    may name new leaders, KIP-951, which would forbid cutting large fetch responses
    through as they arrive; clients learn new leaders from Metadata instead), and the
    share-group ShareFetch and ShareAcknowledge, whose every version names brokers, are
    not offered (nor ShareGroupHeartbeat, see NOT_OFFERED)."""
    versions = parsable_versions(key)
    if key in NOT_OFFERED:
        return None
    if versions is None or key in REWRITES_ADDRESSES or key in APPLICATION_ENDPOINTS:
        return versions
    low, high = versions
    for version in range(low, high + 1):
        if names_hosts(load_response_schema(key, version)):
            return (low, version - 1) if version > low else None
    return versions


def settle_offered_versions() -> None:
    """Work out every API's offered versions now. Doing so imports kio's response
    schemas (seconds on a small machine), which would otherwise hold up the first
    client's ApiVersions answer, and with it every client that connects meanwhile."""
    for key in API_KEYS.values():
        offered_versions(key)


def clamp_api_versions(body: Any) -> Any:
    """Keep only the APIs and versions the gateway offers (`offered_versions`), so
    clients never send a request (or expect a response) the gateway cannot read."""
    kept = []
    for entry in body.api_keys:
        key = int(entry.api_key)
        versions = offered_versions(key)
        if versions is None:
            continue
        low = max(int(entry.min_version), versions[0])
        high = min(int(entry.max_version), versions[1])
        if low > high:
            continue
        kept.append(replace(entry, min_version=i16(low), max_version=i16(high)))
    return replace(body, api_keys=tuple(kept))
