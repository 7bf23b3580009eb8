"""The typed configuration of kaudit: the whole file, `Config`, and its top-level keys.

This module owns `Config` (`data_dir`, `cluster`, `auditors`, and the `audit`, `gateway`
and `console` sections) and the auditor entries. Each section is modelled in a module of its
own: `audit` (recorder settings and rules across its keys), `log`, `destinations`,
`integrity` and `retention` under it, `gateway`; `connections` holds the Kafka and AWS
blocks several of them embed, `fields` what all of them share. Every model and field type
of those modules is re-exported here, so `kaudit.config.model` stays the one place to
import them from. Reading YAML belongs to `kaudit.config.load`, substituting
environment variables to `kaudit.config.env`, and turning validation errors into
messages to `kaudit.config.issues`.

Models are frozen and refuse unknown keys, so a typo is an error instead of a setting
that silently does nothing. Unions chosen by a `type:` key (the audit log, destinations)
are tagged unions carrying a `TypeSwitch` marker.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Discriminator, Field, Tag

from kaudit.config.audit import AuditConfig, CustomEventType, KeyPattern
from kaudit.config.broker_auditor import BrokerAuditorConfig, BypassConfig
from kaudit.config.connections import SASL_MECHANISMS, AwsAccess, KafkaConnection, KafkaSecurity
from kaudit.config.console import ConsoleConfig
from kaudit.config.destinations import (
    SYSLOG_FACILITIES,
    Batching,
    CloudWatchDestination,
    Destination,
    DestinationBase,
    FileDestination,
    KafkaDestination,
    Rotation,
    S3Destination,
    SlackDestination,
    StoreDestination,
    SyslogDestination,
    SyslogTls,
    WebhookDestination,
)
from kaudit.config.fields import (
    BootstrapServers,
    ConfigModel,
    EventSelector,
    HostPort,
    TypeSwitch,
    config_error,
)
from kaudit.config.gateway import (
    DEFAULT_QUIET_APIS,
    ClientTls,
    GatewayConfig,
    KafkaApiName,
    RequestEvents,
    UpstreamTls,
)
from kaudit.config.integrity import Chain, Checkpoints, Integrity, Signing
from kaudit.config.log import KafkaLog, LocalLog, LogConfig
from kaudit.config.metrics import MetricsConfig
from kaudit.config.retention import LifecycleRule, Retention
from kaudit.events.catalog import EventCatalog

__all__ = [
    "DEFAULT_QUIET_APIS",
    "SASL_MECHANISMS",
    "SYSLOG_FACILITIES",
    "AuditConfig",
    "AuditorEntry",
    "AuditorSpec",
    "AwsAccess",
    "Batching",
    "BootstrapServers",
    "BrokerAuditorConfig",
    "BypassConfig",
    "Chain",
    "Checkpoints",
    "ClientTls",
    "CloudWatchDestination",
    "ClusterConfig",
    "Config",
    "ConsoleConfig",
    "CustomEventType",
    "Destination",
    "DestinationBase",
    "EventSelector",
    "FileDestination",
    "GatewayConfig",
    "HostPort",
    "Integrity",
    "KafkaApiName",
    "KafkaConnection",
    "KafkaDestination",
    "KafkaLog",
    "KafkaSecurity",
    "KeyPattern",
    "LifecycleRule",
    "LocalLog",
    "LogConfig",
    "MetricsConfig",
    "PluginName",
    "RequestEvents",
    "Retention",
    "Rotation",
    "S3Destination",
    "Signing",
    "SlackDestination",
    "StoreDestination",
    "SyslogDestination",
    "SyslogTls",
    "TypeSwitch",
    "UpstreamTls",
    "WebhookDestination",
]


# ---------------------------------------------------------------------------- auditors

_PLUGIN_NAME = re.compile(
    r"[A-Za-z_][\w.-]*"  # entry-point name
    r"|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"  # module:Class
)


def _plugin_name(name: str) -> str:
    if not _PLUGIN_NAME.fullmatch(name):
        raise config_error(
            "plugin_name",
            "must be an entry-point name like 'recorder' or an import path like "
            f"'package.module:Class', got {name!r}",
        )
    return name


PluginName = Annotated[str, AfterValidator(_plugin_name)]
"""An entry-point name (`recorder`) or an import path (`package.module:Class`)."""


class AuditorSpec(ConfigModel):
    """An auditor to load, with the mapping passed to its `configure()`."""

    name: PluginName
    """An entry-point name in the `kaudit.auditors` group, or a `module:Class` import path."""
    config: dict[str, Any] = {}


def _auditor_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return "name"
    if isinstance(value, Mapping | AuditorSpec):
        return "spec"
    return None


AuditorEntry = Annotated[
    Annotated[PluginName, Tag("name")] | Annotated[AuditorSpec, Tag("spec")],
    Discriminator(
        _auditor_tag,
        custom_error_type="kaudit_auditor_entry",
        custom_error_message=(
            "must be a plugin name (like recorder or package.module:Class) "
            "or a mapping with keys name, config"
        ),
    ),
]
"""An entry of `auditors:`: a bare plugin name, or a name with configuration."""


# ---------------------------------------------------------------------------- top level


class ClusterConfig(ConfigModel):
    """The Kafka cluster audited here; both values are added to every event's context."""

    id: str | None = None
    environment: str | None = None


class Config(ConfigModel):
    """The whole kaudit configuration file."""

    data_dir: str = Field(default="./kaudit-data", min_length=1)
    cluster: ClusterConfig = ClusterConfig()
    auditors: list[AuditorEntry] = ["recorder"]
    audit: AuditConfig = AuditConfig()
    gateway: GatewayConfig | None = None
    console: ConsoleConfig | None = None
    metrics: MetricsConfig | None = None
    broker_auditor: BrokerAuditorConfig | None = None

    def catalog(self) -> EventCatalog:
        """The built-in event types plus `audit.custom_event_types`."""
        return EventCatalog(self.audit.custom_event_types)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def log_dir(self) -> Path:
        """Where the local audit log keeps its segments."""
        return self.data_path / "log"

    @property
    def auditor_specs(self) -> list[AuditorSpec]:
        """`auditors` with bare names turned into specs with an empty config."""
        return [
            AuditorSpec(name=entry) if isinstance(entry, str) else entry for entry in self.auditors
        ]
