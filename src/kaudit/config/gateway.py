"""The `gateway` section: the audit gateway, a Kafka protocol proxy.

This module owns where the gateway listens and which brokers it fronts, TLS on either
side of it, and which Kafka APIs without a record type of their own are recorded as
`kafka.request` (API names are checked against the Kafka protocol's list).
"""

from __future__ import annotations

import difflib
from typing import Annotated

from pydantic import AfterValidator, Field

from kaudit.config.connections import KafkaSecurity
from kaudit.config.fields import BootstrapServers, ConfigModel, HostPort, config_error

__all__ = [
    "DEFAULT_AGGREGATED_APIS",
    "DEFAULT_QUIET_APIS",
    "ClientTls",
    "GatewayConfig",
    "KafkaApiName",
    "RequestEvents",
    "UpstreamTls",
]


# Heartbeats, metadata refreshes and each connection's ApiVersions are constant
# background chatter: not recorded as `kafka.request` unless asked for.
DEFAULT_QUIET_APIS = (
    "ApiVersions",
    "Heartbeat",
    "ConsumerGroupHeartbeat",
    "ShareGroupHeartbeat",
    "StreamsGroupHeartbeat",
    "Metadata",
)

# Transactions, and the offset and coordinator look-ups every consumer repeats: an
# exactly-once application sends them on every commit, so they are counted per window.
DEFAULT_AGGREGATED_APIS = (
    "InitProducerId",
    "AddPartitionsToTxn",
    "AddOffsetsToTxn",
    "EndTxn",
    "TxnOffsetCommit",
    "OffsetCommit",
    "OffsetFetch",
    "FindCoordinator",
    "ListOffsets",
)


def _kafka_api_name(name: str) -> str:
    from kio.schema.index import api_key_map  # the protocol's API names, from kio

    known = sorted(
        "".join(p[:1].upper() + p[1:] for p in n.split("_")) for n in api_key_map.values()
    )
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise config_error(
            "kafka_api",
            f"unknown Kafka API {name!r}; {hint}accepted: Kafka API names such as "
            "Heartbeat, Metadata, OffsetCommit, JoinGroup",
        )
    return name


KafkaApiName = Annotated[str, AfterValidator(_kafka_api_name)]


class RequestEvents(ConfigModel):
    """Which APIs without a record type of their own are recorded as `kafka.request`."""

    enabled: bool = True
    exclude_apis: list[KafkaApiName] = list(DEFAULT_QUIET_APIS)
    include_apis: list[KafkaApiName] = []
    """Recorded even if in exclude_apis (e.g. `Metadata` to see every metadata request)."""
    aggregate_apis: list[KafkaApiName] = list(DEFAULT_AGGREGATED_APIS)
    """Counted per window, like produce and fetch: one `kafka.request` record per client,
    API, resource and result, with `requests`, `first_seen` and `last_seen` (an offset
    reset, which has a record type of its own, is never aggregated)."""


class ClientTls(ConfigModel):
    """TLS terminated at the gateway towards clients."""

    cert_file: str = Field(min_length=1)
    key_file: str = Field(min_length=1)
    ca_file: str | None = None
    """CA for client certificates; with it, a certificate's subject names who acted."""
    require_client_cert: bool = False
    principal_mapping_rules: str = "DEFAULT"
    """How a client certificate's subject (an RFC 2253 DN) becomes a principal, in the
    syntax of Kafka's `ssl.principal.mapping.rules`: `DEFAULT`, `RULE:pattern/replacement/`
    with an optional `L` or `U`, comma-separated; the first rule that matches wins."""


class UpstreamTls(ConfigModel):
    """TLS from the gateway to the brokers."""

    ca_file: str | None = None
    """Trust these CAs (default: the system's)."""
    cert_file: str | None = None
    key_file: str | None = None
    check_hostname: bool = True
    principal: str | None = Field(default=None, pattern=r"^[^:\s]+:\S.*$")
    """The principal the brokers authorize the gateway as when a client does not log in
    with SASL (`User:gateway`). Default: `User:` and cert_file's subject as a broker with
    the default mapping rules names it; without cert_file, User:ANONYMOUS."""


class GatewayConfig(ConfigModel):
    """The audit gateway: a Kafka protocol proxy between clients and brokers."""

    upstream: BootstrapServers
    """The cluster's bootstrap servers (`host:port`, a list or a comma-separated string)."""
    listen: HostPort = "127.0.0.1:9192"
    """The bootstrap address clients use; broker ports follow it."""
    advertised_host: str | None = None
    """The host clients reach the gateway at (default: the listen host)."""
    broker_ports_start: int | None = Field(default=None, gt=0, lt=65536)
    """Broker node N is served on broker_ports_start + N (default: listen port + 1)."""
    brokers: dict[Annotated[int, Field(ge=0)], HostPort] = {}
    """A static broker map, node id → the broker's real `host:port`: each is served on its
    port from start-up, so a client with cached metadata reconnects after a restart."""
    discovery: KafkaSecurity | None = None
    """How the gateway logs in to `upstream` to ask for the brokers at start (a Metadata
    call), so that every broker's port listens from start-up."""
    stop_timeout_seconds: float = Field(default=10.0, ge=0)
    """On SIGTERM, how long requests in flight may take to be answered (and recorded)
    before the remaining connections are closed."""
    max_frame_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    """Larger frames close the connection (Kafka's socket.request.max.bytes default)."""
    max_frame_bytes_before_auth: int = Field(default=512 * 1024, gt=0)
    """Larger frames close a connection that has not logged in yet (brokers allow 512
    KiB before SASL authentication: `sasl.server.max.receive.size`)."""
    max_connections: int = Field(default=10_000, gt=0)
    """Client connections open at once; more are closed as they arrive."""
    max_connections_per_address: int = Field(default=1_000, gt=0)
    """Client connections open at once from one source address."""
    records_window_seconds: float = Field(default=60.0, gt=0)
    """records.produced / records.consumed are aggregated over this window."""
    max_window_keys: int = Field(default=10_000, gt=0)
    """Distinct (client, topic, result) counts per window; what comes under further keys
    is counted into one overflow record (topic `*`), never dropped."""
    request_events: RequestEvents = RequestEvents()
    tls: ClientTls | None = None
    upstream_tls: UpstreamTls | None = None

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])
