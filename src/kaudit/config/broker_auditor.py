"""The `broker_auditor:` section: reading kaudit's broker auditor plugin, and matching
what it saw with what the gateways saw.

The plugin (``broker-auditor/``) sends its decision records to a topic on the audited
cluster; this section says where that topic is (a `KafkaConnection`), the consumer group
whose committed offsets are the reader's cursor, and `bypass`: whether to look for client
requests the broker authorized that no gateway recorded (``access.bypassed_gateway``),
which addresses are the gateways' own (as the broker sees them), and how long to wait for
a gateway's record before calling a request a bypass.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from kaudit.config.connections import KafkaConnection
from kaudit.config.fields import ConfigModel, config_error
from kaudit.config.secrets import Secret

__all__ = ["BrokerAuditorConfig", "BypassConfig"]


class BypassConfig(ConfigModel):
    """Bypass detection: broker decisions with no matching gateway event."""

    enabled: bool = True
    gateway_addresses: list[str] = []
    """Client addresses the broker sees the gateways connect from. A request from any
    other address went around them, whatever else matches; empty: decide by matching."""
    window_seconds: float = Field(default=30.0, gt=0)
    """How far apart a broker decision and its gateway event may be, and how long a
    decision waits for one before it is reported."""
    aggregate_wait_seconds: float = Field(default=900.0, gt=0)
    """How long a broker's produce/fetch count waits for a gateway's count of the same
    client and topic (the gateway's window, `records_window_seconds`, plus a margin)."""
    count_tolerance: float = Field(default=0.1, ge=0)
    """How far, as a fraction of the requests it is matched with, a broker's produce/fetch
    count may exceed the gateway's counts of the same client (principal, client id) and
    topic: retries, and requests counted either side of a window's edge. Beyond it, the
    difference is a bypass."""
    count_slack: int = Field(default=10, ge=0)
    """Requests a broker's count may exceed the gateway's by in any case."""
    idle_fetches_per_second: float = Field(default=2.0, ge=0)
    """Fetches per second a broker's fetch count may exceed the gateway's by, for a
    consumer the gateway counted: both count every fetch, records or not, but a consumer
    polls on (every `fetch.wait.max.ms`, 500 ms by default), so the counts of a window's
    edges differ most."""


class BrokerAuditorConfig(KafkaConnection):
    """Where the broker auditor's decision topic is, and what to do with it."""

    topic: str = Field(default="__kaudit_broker_decisions", min_length=1)
    group: str = Field(default="kaudit-broker-auditor", min_length=1)
    bypass: BypassConfig = BypassConfig()
    hmac_key: Secret | None = None
    """The key of the HMAC-SHA256 the plugin puts on each record (the brokers'
    ``kaudit.audit.hmac.key.file`` holds the same), e.g. ``${KAUDIT_BROKER_HMAC_KEY}``:
    records without a valid one are refused, not recorded. Unset (and no
    `hmac_key_file`), records are taken unauthenticated, with a warning at start."""
    hmac_key_file: str | None = None
    """A file holding that key (its bytes, trailing whitespace left off), instead of
    `hmac_key`."""

    @model_validator(mode="after")
    def _one_hmac_key(self) -> BrokerAuditorConfig:
        if self.hmac_key is not None and self.hmac_key_file:
            raise config_error(
                "broker_auditor", "give the HMAC key as hmac_key or hmac_key_file, not both"
            )
        return self
