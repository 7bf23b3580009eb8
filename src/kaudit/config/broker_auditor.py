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

from pydantic import Field

from kaudit.config.connections import KafkaConnection
from kaudit.config.fields import ConfigModel

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


class BrokerAuditorConfig(KafkaConnection):
    """Where the broker auditor's decision topic is, and what to do with it."""

    topic: str = Field(default="__kaudit_broker_decisions", min_length=1)
    group: str = Field(default="kaudit-broker-auditor", min_length=1)
    bypass: BypassConfig = BypassConfig()
