"""What one gateway's connections share: the listener makes it and hands it to each.

`SharedState` holds what follows from the configuration (the upstream brokers and TLS,
which requests and responses to decode, which APIs are recorded as `kafka.request`),
what responses teach (topic ids → names, delegation token owners; broker addresses live
in the `BrokerMap`), the read buffers, the open connections, the event loop with the
tasks the gateway owns, and the door to the audit session (`Recording`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Coroutine
from typing import Any, Protocol

from kaudit.config.model import GatewayConfig
from kaudit.gateway.codec import (
    API_KEYS,
    API_NAMES,
    CREATE_DELEGATION_TOKEN,
    DESCRIBE_DELEGATION_TOKEN,
    parsable_versions,
)
from kaudit.gateway.framing import BufferPool
from kaudit.gateway.metadata import TopicNames
from kaudit.gateway.offsets import ConsumptionPositions
from kaudit.gateway.recording import Recording
from kaudit.gateway.rewrite import Address, BrokerMap
from kaudit.gateway.tls_identity import gateway_identities

# Free cut-through buffers kept for reuse, across all connections: a few consumers'
# worth of multi-megabyte fetch responses.
_POOLED_BUFFER_BYTES = 64 * 1024 * 1024
# What one ordinary read takes at most (uvloop's own read size).
_READ_BYTES = 256 * 1024

TOKEN_APIS = frozenset({CREATE_DELEGATION_TOKEN, DESCRIBE_DELEGATION_TOKEN})
"""APIs whose responses name delegation tokens' owners (see `learn_token_owners`)."""


class Connection(Protocol):
    """An open client connection, as the gateway drains and closes it when it stops."""

    @property
    def busy(self) -> bool: ...

    def drain(self) -> None: ...

    def close(self, reason: str, quiet: bool = False) -> None: ...


class SharedState:
    """The state a gateway's connections share (all of it used on the event loop)."""

    def __init__(
        self,
        config: GatewayConfig,
        recording: Recording,
        brokers: BrokerMap,
        upstream_ssl: ssl.SSLContext | None,
    ) -> None:
        self.config = config
        self.recording = recording
        self.metrics = recording.metrics
        self.fail_closed = recording.fail_closed
        self.brokers = brokers
        self.upstream_ssl = upstream_ssl
        # Who a client certificate names, and whom the brokers authorize the gateway as.
        self.client_principals, self.upstream_principal = gateway_identities(config)
        self._apply_limits(config)
        self._per_address: dict[str | None, int] = {}
        self.buffers = BufferPool(_POOLED_BUFFER_BYTES)
        # Where every connection's ordinary reads land. One buffer serves them all: each
        # read is copied out (into the bytes the framing keeps) before the event loop
        # reads anything else.
        self.read_buffer = memoryview(bytearray(_READ_BYTES))
        self.drain_timeout = 30.0
        self.connections: set[Connection] = set()
        self.topic_names = TopicNames()
        self._token_owners: dict[str, str] = {}
        self.positions = ConsumptionPositions()
        self._apply_apis(config)
        # Every answer is read: any may refuse the client a resource (audit_map).
        self._decoded_responses = frozenset(API_NAMES)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- configuration-derived decisions --------------------------------------------------

    def reconfigure(self, config: GatewayConfig) -> None:
        """Decide by `config` from the next request on (a configuration reload)."""
        self.config = config
        self._apply_limits(config)
        self._apply_apis(config)

    def _apply_limits(self, config: GatewayConfig) -> None:
        self.max_frame_bytes = config.max_frame_bytes
        self.max_frame_bytes_before_auth = min(
            config.max_frame_bytes_before_auth, config.max_frame_bytes
        )

    def _apply_apis(self, config: GatewayConfig) -> None:
        self._generic = self._generic_apis()
        # Under fail_closed each answer waits for its own record, and a window's counts
        # of chatter would be lost to a kill -9: those requests are recorded one by one.
        self._aggregated = frozenset(
            API_KEYS[name]
            for name in config.request_events.aggregate_apis
            if name in API_KEYS and not self.fail_closed
        )

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

    def admit_connection(self, address: str | None) -> str | None:
        """Count a new client connection from `address` in; why it is refused instead
        (gateway.max_connections, gateway.max_connections_per_address), or None."""
        config = self.config
        if len(self.connections) >= config.max_connections:
            return f"{len(self.connections)} connections open (gateway.max_connections)"
        open_here = self._per_address.get(address, 0)
        if open_here >= config.max_connections_per_address:
            return (
                f"{open_here} connections open from {address} (gateway.max_connections_per_address)"
            )
        self._per_address[address] = open_here + 1
        return None

    def connection_gone(self, address: str | None) -> None:
        """Count an admitted connection out again."""
        left = self._per_address.get(address, 0) - 1
        if left > 0:
            self._per_address[address] = left
        else:
            self._per_address.pop(address, None)

    def aggregates(self, key: int) -> bool:
        """Whether a recorded request of this API is counted into its window (chatter)
        rather than recorded on its own."""
        return key in self._aggregated

    def decodes_request(self, key: int) -> bool:
        return parsable_versions(key) is not None

    def decodes_response(self, key: int) -> bool:
        return key in self._decoded_responses

    def upstream_for(self, node_id: int | None) -> list[Address]:
        """The brokers a connection to this gateway port goes to (None: the bootstrap
        port, any of the configured upstream servers)."""
        if node_id is None:
            return [
                Address(s.rpartition(":")[0], int(s.rpartition(":")[2]))
                for s in self.config.upstream
            ]
        address = self.brokers.upstream_of(node_id)
        if address is None:
            raise LookupError(f"broker {node_id} is not known yet (no metadata has named it)")
        return [address]

    # -- what responses teach ---------------------------------------------------------------

    def learn_topics(self, metadata: Any) -> None:
        for topic in metadata.topics:
            topic_id = getattr(topic, "topic_id", None)
            if topic_id is not None and topic.name:
                self.topic_names.learn(topic_id, str(topic.name))

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
        name = self.topic_names.get(topic_id)
        return name if name is not None else str(topic_id)

    # -- the event loop and the gateway's tasks ---------------------------------------------

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the gateway runs on (set when it starts)."""
        self._loop = loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the gateway is not running"
        return self._loop

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run one of the gateway's tasks (a port's server, a connection's connect); the
        gateway cancels them when it stops."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_tasks(self) -> None:
        """Cancel every task still running and wait until they have ended."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
