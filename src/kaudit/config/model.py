"""The typed configuration of kaudit: every key, its type, default and accepted values.

This module owns the shape of the configuration and the rules that span several keys
(event selectors checked against the catalog, `destination` versus `destinations`).
Reading YAML, substituting environment variables and turning validation errors into
messages belong to `kaudit.config.load`.

Models are frozen and refuse unknown keys, so a typo is an error instead of a setting
that silently does nothing. Unions chosen by a `type:` key (the audit log, destinations)
are tagged unions carrying a `TypeSwitch` marker: adding a kind means writing its model
and adding one `Annotated[Model, Tag("name")]` member to the union.
"""

from __future__ import annotations

import difflib
import re
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from kaudit.events.catalog import EventCatalog, is_glob

__all__ = [
    "AuditConfig",
    "AuditorEntry",
    "AuditorSpec",
    "AwsAccess",
    "Batching",
    "Checkpoints",
    "CloudWatchDestination",
    "ClusterConfig",
    "Config",
    "Destination",
    "DestinationBase",
    "FileDestination",
    "Integrity",
    "KafkaConnection",
    "KafkaDestination",
    "KafkaLog",
    "KafkaSecurity",
    "LocalLog",
    "LogConfig",
    "Rotation",
    "S3Destination",
    "Signing",
    "SlackDestination",
    "StoreDestination",
    "SyslogDestination",
    "SyslogTls",
    "TypeSwitch",
    "WebhookDestination",
]


@dataclass(frozen=True, slots=True)
class TypeSwitch:
    """Marks a union chosen by its `type:` key; `kind` names it in error messages.

    Pydantic ignores this metadata; the loader reads it to say
    "unknown destination type 's3'; accepted: file".
    """

    kind: str


def _type_tag(default: str | None) -> Callable[[Any], str | None]:
    """A discriminator reading `type`, falling back to `default` when the key is absent."""

    def tag(value: Any) -> str | None:
        if isinstance(value, Mapping):
            chosen = value.get("type")
            if chosen is None:
                return default
            return chosen if isinstance(chosen, str) else repr(chosen)
        found = getattr(value, "type", None)
        return found if isinstance(found, str) else None

    return tag


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _error(kind: str, message: str) -> PydanticCustomError:
    # The message travels as context so braces in it are never read as placeholders.
    return PydanticCustomError(f"kaudit_{kind}", "{message}", {"message": message})


# ---------------------------------------------------------------------------- names

_PLUGIN_NAME = re.compile(
    r"[A-Za-z_][\w.-]*"  # entry-point name
    r"|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"  # module:Class
)
_CUSTOM_EVENT_TYPE = re.compile(r"[a-z0-9_]+\.[a-z0-9_]+")


def _plugin_name(name: str) -> str:
    if not _PLUGIN_NAME.fullmatch(name):
        raise _error(
            "plugin_name",
            "must be an entry-point name like 'recorder' or an import path like "
            f"'package.module:Class', got {name!r}",
        )
    return name


def _custom_event_type(name: str) -> str:
    if not _CUSTOM_EVENT_TYPE.fullmatch(name):
        raise _error(
            "event_type_name",
            "must be category.verb in lowercase letters, digits and _ "
            f"(like 'billing.invoice_sent'), got {name!r}",
        )
    return name


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise _error("regex", f"must be a regular expression, got {pattern!r} ({exc})") from None
    return pattern


PluginName = Annotated[str, AfterValidator(_plugin_name)]
CustomEventType = Annotated[str, AfterValidator(_custom_event_type)]
KeyPattern = Annotated[str, AfterValidator(_regex)]


# ---------------------------------------------------------------------------- auditors


class AuditorSpec(_Model):
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


# ---------------------------------------------------------------------------- audit log


class LocalLog(_Model):
    """The embedded audit log: JSON Lines segment files under `<data_dir>/log`."""

    type: Literal["local"] = "local"
    segment_max_mb: int = Field(default=64, gt=0)
    fsync: Literal["never", "batch", "always"] = "batch"
    """When appended records reach the disk: never (the OS decides), per batch, per event."""


# ---------------------------------------------------------------------------- kafka


def _servers(value: Any) -> Any:
    # The seed writes a YAML list; "host1:9092,host2:9092" is accepted as well.
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    return value


def _server(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _error("server", f"must be host:port (like kafka:9092), got {address!r}")
    return address


BootstrapServers = Annotated[
    list[Annotated[str, AfterValidator(_server)]],
    BeforeValidator(_servers),
    Field(min_length=1),
]

SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")


class KafkaSecurity(_Model):
    """How kaudit authenticates to Kafka (the OSO seed's `security:` block)."""

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: str | None = None

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSecurity:
        if self.security_protocol.startswith("SASL_"):
            if self.sasl_mechanism is None:
                raise _error(
                    "sasl",
                    f"security_protocol {self.security_protocol} needs sasl_mechanism "
                    f"(one of {', '.join(SASL_MECHANISMS)})",
                )
            if self.sasl_mechanism != "OAUTHBEARER" and (
                not self.sasl_username or self.sasl_password is None
            ):
                raise _error(
                    "sasl",
                    f"sasl_mechanism {self.sasl_mechanism} needs sasl_username and sasl_password",
                )
        return self

    def client_settings(self) -> dict[str, str]:
        """librdkafka settings for this block."""
        out: dict[str, str] = {"security.protocol": self.security_protocol}
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out


class KafkaConnection(_Model):
    """Where a Kafka cluster is and how to log in to it."""

    bootstrap_servers: BootstrapServers
    security: KafkaSecurity = KafkaSecurity()
    client_config: dict[str, str | int | float | bool] = {}
    """Extra librdkafka settings, applied last."""

    def client_settings(self) -> dict[str, Any]:
        """confluent-kafka settings: bootstrap servers, security, then `client_config`."""
        return {
            "bootstrap.servers": ",".join(self.bootstrap_servers),
            **self.security.client_settings(),
            **self.client_config,
        }


class KafkaLog(KafkaConnection):
    """The audit log on a Kafka topic, partitioned and replicated (Kpow's
    `__oprtr_audit_log`): keyed by resource so each resource's events stay in order."""

    type: Literal["kafka"] = "kafka"
    topic: str = Field(default="__oprtr_audit_log", min_length=1, max_length=249)
    partitions: int = Field(default=6, gt=0)
    replication_factor: int = Field(default=-1, ge=-1)
    """-1: the broker's default.replication.factor."""
    retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=-1)
    """How long Kafka keeps the log; 7 days as Kpow keeps it; -1 forever."""
    create_topic: bool = True
    write_timeout_ms: int = Field(default=30_000, gt=0)
    """How long one batch may wait for the broker's acks=all before the write has failed."""


LogConfig = Annotated[
    # Add log kinds here as `Annotated[Model, Tag("type")]` members of a union.
    Annotated[LocalLog, Tag("local")] | Annotated[KafkaLog, Tag("kafka")],
    Discriminator(_type_tag(default="local")),
    TypeSwitch("log"),
]
"""The audit log's backend, chosen by `type` (default `local`)."""


# ---------------------------------------------------------------------------- destinations

EventSelector = list[str]
"""Event type names or globs (`topic.*`), checked against the catalog by `AuditConfig`."""


class DestinationBase(_Model):
    """What every destination has: its type, an optional name, format and event filter."""

    type: str
    name: str | None = None
    format: Literal["native", "cloudevents", "ocsf"] = "native"
    events: EventSelector = ["*"]
    exclude_events: EventSelector = []

    @property
    @abstractmethod
    def target(self) -> str:
        """Where the events go, in the destination's own terms (a path, a URL, a topic)."""

    @property
    def display_name(self) -> str:
        """The name, or `type:target` when the destination has none."""
        return self.name or f"{self.type}:{self.target}"


class Rotation(_Model):
    """When a file destination starts a new file and how many old ones it keeps."""

    max_size_mb: int = Field(default=100, gt=0)
    max_files: int = Field(default=10, ge=1)
    compress: bool = True


class FileDestination(DestinationBase):
    """Events appended to a local file, rotated by size."""

    type: Literal["file"] = "file"
    path: str = Field(min_length=1)
    rotation: Rotation = Rotation()

    @property
    def target(self) -> str:
        return self.path


class KafkaDestination(DestinationBase, KafkaConnection):
    """Events copied to a Kafka topic (the OSO seed's `kafka` destination)."""

    type: Literal["kafka"] = "kafka"
    topic: str = Field(min_length=1, max_length=249)
    cloudevents_mode: Literal["structured", "binary"] = "structured"
    """With format cloudevents: one JSON document per record, or ce_ headers + data."""
    create_topic: bool = True

    @property
    def target(self) -> str:
        return self.topic


class Batching(_Model):
    """How a destination groups events: a batch is sent when it holds `batch_size` events
    or when its first event has waited `batch_interval_secs`, whichever comes first."""

    batch_size: int = Field(default=500, gt=0)
    batch_interval_secs: float = Field(default=1.0, ge=0)


class AwsAccess(_Model):
    """Where an AWS API is and who calls it. Credentials left unset come from boto3's
    usual chain (environment, shared files, instance or pod role)."""

    region: str | None = None
    endpoint_url: str | None = None
    """Another endpoint speaking the same API (MinIO, LocalStack, a VPC endpoint)."""
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    timeout_secs: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _keys_in_pairs(self) -> AwsAccess:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise _error(
                "aws_keys",
                "access_key_id and secret_access_key go together: set both, or neither to "
                "use the environment's credentials",
            )
        return self


_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _s3_bucket(name: str) -> str:
    if not _S3_BUCKET.fullmatch(name) or ".." in name:
        raise _error(
            "s3_bucket",
            "must be an S3 bucket name: 3 to 63 lowercase letters, digits, '.' and '-', "
            f"starting and ending with a letter or digit, got {name!r}",
        )
    return name


class S3Destination(DestinationBase, Batching, AwsAccess):
    """Events uploaded to S3 as gzipped JSON Lines objects, one per batch, named by
    stream and sequence range; optionally written under Object Lock retention."""

    type: Literal["s3"] = "s3"
    bucket: Annotated[str, AfterValidator(_s3_bucket)]
    prefix: str = ""
    batch_size: int = Field(default=10_000, gt=0)
    batch_interval_secs: float = Field(default=60.0, ge=0)
    object_lock: bool = False
    """Write each object with Object Lock retention (the bucket must have Object Lock on)."""
    object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "COMPLIANCE"
    object_lock_days: int | None = Field(default=None, gt=0)
    """How long each object is locked; unset: audit.retention.min_days."""
    storage_class: str | None = None

    @property
    def target(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


class CloudWatchDestination(DestinationBase, Batching, AwsAccess):
    """Events sent to a CloudWatch Logs stream, one log event each."""

    type: Literal["cloudwatch"] = "cloudwatch"
    log_group: str = Field(min_length=1, max_length=512, pattern=r"^[\w#/.-]+$")
    log_stream: str | None = Field(default=None, min_length=1, max_length=512)
    """Default: this machine's host name. `${HOSTNAME}` is the usual choice in a pod."""
    batch_size: int = Field(default=1000, gt=0, le=10_000)
    batch_interval_secs: float = Field(default=5.0, ge=0)
    create_log_group: bool = True
    """Create the group and the stream when missing (needs logs:CreateLogGroup/Stream)."""

    @field_validator("log_stream")
    @classmethod
    def _no_colon_or_star(cls, stream: str | None) -> str | None:
        if stream is not None and (":" in stream or "*" in stream):
            raise _error(
                "log_stream", f"a log stream name may not contain ':' or '*', got {stream!r}"
            )
        return stream

    @property
    def target(self) -> str:
        return f"{self.log_group}:{self.log_stream}" if self.log_stream else self.log_group


SYSLOG_FACILITIES: dict[str, int] = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    "ntp": 12,
    "security": 13,
    "console": 14,
    "solaris-cron": 15,
    **{f"local{n}": 16 + n for n in range(8)},
}


def _facility(name: str) -> str:
    if name not in SYSLOG_FACILITIES:
        raise _error(
            "facility",
            f"unknown syslog facility {name!r}; accepted: {', '.join(SYSLOG_FACILITIES)}",
        )
    return name


class SyslogTls(_Model):
    """TLS for `protocol: tls` (RFC 5425): whom to trust, and our own certificate when
    the server asks for one."""

    ca_file: str | None = None
    """The CA bundle that signed the server's certificate; default: the system's."""
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    """The name checked against the server's certificate; default: the server's host."""
    verify: bool = True


class SyslogDestination(DestinationBase, Batching):
    """RFC 5424 messages with structured data to a syslog server over UDP (RFC 5426),
    TCP with octet counting (RFC 6587) or TLS (RFC 5425)."""

    type: Literal["syslog"] = "syslog"
    server: str = Field(min_length=1)
    """host:port, or host alone for the protocol's port (514 for udp/tcp, 6514 for tls)."""
    protocol: Literal["udp", "tcp", "tls"] = "udp"
    facility: Annotated[str, AfterValidator(_facility)] = "local0"
    app_name: str = Field(default="kaudit", min_length=1, max_length=48, pattern=r"^[!-~]+$")
    tls: SyslogTls = SyslogTls()
    timeout_secs: float = Field(default=10.0, gt=0)

    @field_validator("server")
    @classmethod
    def _host_port(cls, server: str) -> str:
        host, sep, port = server.rpartition(":")
        if sep and (not host or not port.isdigit() or not 0 < int(port) < 65536):
            raise _error(
                "server", f"must be host or host:port (like syslog.company.com:514), got {server!r}"
            )
        return server

    @property
    def address(self) -> tuple[str, int]:
        host, sep, port = self.server.rpartition(":")
        if sep:
            return host.strip("[]"), int(port)
        return self.server, 6514 if self.protocol == "tls" else 514

    @property
    def target(self) -> str:
        return f"{self.protocol}://{self.server}"


class WebhookDestination(DestinationBase, Batching):
    """Batches of events POSTed as a JSON array to an HTTP endpoint, signed with HMAC."""

    type: Literal["webhook"] = "webhook"
    url: Annotated[str, Field(pattern=r"^https?://[^\s/]+")]
    headers: dict[str, str] = {}
    batch_size: int = Field(default=100, gt=0)
    retry_attempts: int = Field(default=3, ge=0)
    """Quick retries of one request before the runner backs off (and keeps trying)."""
    timeout: float = Field(default=10.0, gt=0)
    """Seconds to connect, send and get an answer."""
    secret: str | None = Field(default=None, min_length=16)
    """HMAC-SHA256 key: each request carries X-Kaudit-Signature over timestamp and body."""

    @property
    def target(self) -> str:
        return self.url


class SlackDestination(DestinationBase, Batching):
    """Kpow's Slack integration: each user action as a readable message to a Slack
    incoming webhook."""

    type: Literal["slack"] = "slack"
    webhook: Annotated[str, Field(pattern=r"^https?://[^\s/]+")]
    """The incoming-webhook URL (https://hooks.slack.com/services/...)."""
    channel: str | None = None
    """Overrides the webhook's default channel (legacy webhooks honour it)."""
    verbosity: Literal["MUTATIONS", "QUERIES", "ALL"] = "MUTATIONS"
    """MUTATIONS: actions that change something; QUERIES: reads; ALL: both."""
    username: str | None = None
    batch_size: int = Field(default=20, gt=0)
    timeout: float = Field(default=10.0, gt=0)

    @property
    def target(self) -> str:
        # Never the URL: its path is the webhook's secret.
        return self.channel or self.webhook.split("://", 1)[1].split("/", 1)[0]


class StoreDestination(DestinationBase):
    """The embedded search index (`kaudit search`, `kaudit report`): one SQLite file,
    fed from the log like any destination, idempotent on `event_id`."""

    type: Literal["store"] = "store"
    path: str | None = Field(default=None, min_length=1)
    """The SQLite file; default `<data_dir>/index.sqlite`."""
    format: Literal["native"] = "native"
    """The index keeps the native event (what `kaudit search` prints)."""

    @property
    def target(self) -> str:
        return self.path or "<data_dir>/index.sqlite"

    def index_path(self, data_path: Path) -> Path:
        """The SQLite file, with the default resolved under `data_path`."""
        return Path(self.path).expanduser() if self.path else data_path / "index.sqlite"


Destination = Annotated[
    # Add destination kinds here as `Annotated[Model, Tag("type")]` members of a union.
    Annotated[FileDestination, Tag("file")]
    | Annotated[KafkaDestination, Tag("kafka")]
    | Annotated[S3Destination, Tag("s3")]
    | Annotated[CloudWatchDestination, Tag("cloudwatch")]
    | Annotated[SyslogDestination, Tag("syslog")]
    | Annotated[WebhookDestination, Tag("webhook")]
    | Annotated[SlackDestination, Tag("slack")]
    | Annotated[StoreDestination, Tag("store")],
    Discriminator(_type_tag(default=None)),
    TypeSwitch("destination"),
]
"""One place the audit log is exported to, chosen by `type`."""


# ---------------------------------------------------------------------------- retention


class LifecycleRule(_Model):
    """Move exported objects to a cheaper storage class after `days` (S3 lifecycle)."""

    days: int = Field(gt=0)
    storage_class: Literal[
        "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"
    ]


class Retention(_Model):
    """How long audit data is kept: never removed before `min_days`, removed after
    `max_days` (the local log, the search index and exported files)."""

    min_days: int = Field(default=365, ge=0)
    """Data younger than this is never removed (the compliance minimum)."""
    max_days: int | None = Field(default=None, gt=0)
    """Data older than this is removed; unset keeps everything."""
    lifecycle: list[LifecycleRule] = []
    """The seed's S3 lifecycle rules, applied to the bucket of each S3 destination."""

    @field_validator("max_days")
    @classmethod
    def _not_below_min(cls, max_days: int | None, info: ValidationInfo) -> int | None:
        min_days = info.data.get("min_days")
        if max_days is not None and isinstance(min_days, int) and max_days < min_days:
            raise _error(
                "retention_range",
                f"max_days ({max_days}) is below min_days ({min_days}): data would have to "
                "be removed before it may be; accepted: max_days >= min_days, or unset",
            )
        return max_days


# ---------------------------------------------------------------------------- audit

_Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class _Problem:
    """A problem spanning several keys: where (relative to `audit`), what, and the value."""

    loc: _Loc
    message: str
    value: object


def _pattern_message(catalog: EventCatalog, pattern: str) -> str | None:
    """Why `pattern` selects nothing, or None when it selects at least one type."""
    if not is_glob(pattern):
        return None if pattern in catalog else catalog.unknown_message(pattern)
    if catalog.matching(pattern):
        return None
    categories = sorted({name.partition(".")[0] for name in catalog.names})
    hint = ""
    category, dot, rest = pattern.partition(".")
    if dot and not is_glob(category) and category not in categories:
        close = difflib.get_close_matches(category, categories, n=1, cutoff=0.6)
        if close:
            hint = f"; did you mean {close[0]}.{rest}?"
    return (
        f"pattern {pattern!r} matches no event type{hint} "
        f"(known categories: {', '.join(categories)})"
    )


def _selector_problems(catalog: EventCatalog, raw: Mapping[str, Any], loc: _Loc) -> list[_Problem]:
    problems = []
    for key in ("events", "exclude_events"):
        patterns = raw.get(key)
        if not isinstance(patterns, list):
            continue  # a wrong type is reported by pydantic itself
        for index, pattern in enumerate(patterns):
            if isinstance(pattern, str):
                message = _pattern_message(catalog, pattern)
                if message:
                    problems.append(_Problem((*loc, key, index), message, pattern))
    return problems


def _audit_problems(raw: Mapping[str, Any]) -> list[_Problem]:
    """Rules spanning several keys of `audit`, checked on the raw input.

    Working on the raw mapping rather than the validated model lets these problems be
    reported together with pydantic's own, instead of only once everything else is fixed.
    """
    custom = raw.get("custom_event_types")
    declared = (
        [n for n in custom if isinstance(n, str) and _CUSTOM_EVENT_TYPE.fullmatch(n)]
        if isinstance(custom, list)
        else []
    )
    catalog = EventCatalog(declared)
    problems = _selector_problems(catalog, raw, ())

    destination = raw.get("destination")
    if isinstance(destination, Mapping):
        problems += _selector_problems(catalog, destination, ("destination",))
    destinations = raw.get("destinations")
    if isinstance(destinations, list):
        for index, item in enumerate(destinations):
            if isinstance(item, Mapping):
                problems += _selector_problems(catalog, item, ("destinations", index))

    if destination is not None and isinstance(destinations, list) and destinations:
        problems.append(
            _Problem(
                (),
                "destination and destinations are both set; use destination for one "
                "destination or destinations for a list, not both",
                dict(raw),
            )
        )
    return problems


_PYDANTIC_ERROR_TYPES: frozenset[str] = frozenset(get_args(ErrorType))


def _reraisable(exc: ValidationError) -> list[InitErrorDetails]:
    """`exc`'s errors in the form `ValidationError.from_exception_data` takes back."""
    details: list[InitErrorDetails] = []
    for error in exc.errors():
        kind = error["type"]
        if kind in _PYDANTIC_ERROR_TYPES:
            detail = InitErrorDetails(type=kind, loc=error["loc"], input=error["input"])
            if "ctx" in error:
                detail["ctx"] = error["ctx"]
        else:
            custom = PydanticCustomError(kind, "{message}", {"message": error["msg"]})
            detail = InitErrorDetails(type=custom, loc=error["loc"], input=error["input"])
        details.append(detail)
    return details


# ---------------------------------------------------------------------------- integrity


class Signing(_Model):
    """The OSO seed's HMAC signing of each event; the key comes from the environment."""

    enabled: bool = False
    algorithm: Literal["HMAC-SHA256"] = "HMAC-SHA256"
    key_env_var: str = Field(default="AUDIT_SIGNING_KEY", min_length=1)


class Chain(_Model):
    """Chain each signature to the previous event's (needs signing)."""

    enabled: bool = False


class Checkpoints(_Model):
    """Signed Merkle checkpoints (RFC 6962 tree, Ed25519 signed notes)."""

    enabled: bool = False
    key_file: str | None = None
    """The Ed25519 private key written by `kaudit keys generate` (PATH.key)."""
    every_events: int = Field(default=10_000, gt=0)
    every_seconds: float = Field(default=60.0, gt=0)
    origin: str | None = None
    """The log's name in checkpoints; default: kaudit/<cluster id or host>."""
    anchor_path: str | None = None
    """Also append every signed checkpoint to this file, kept apart from the log (another
    volume, WORM storage), as an external anchor a log rewrite cannot reach."""

    @model_validator(mode="after")
    def _needs_key(self) -> Checkpoints:
        if self.enabled and not self.key_file:
            raise _error(
                "checkpoint_key",
                "checkpoints need key_file: the private key from `kaudit keys generate`",
            )
        return self


class Integrity(_Model):
    """Tamper evidence applied once, at the writer."""

    signing: Signing = Signing()
    chain: Chain = Chain()
    checkpoints: Checkpoints = Checkpoints()

    @model_validator(mode="after")
    def _chain_needs_signing(self) -> Integrity:
        if self.chain.enabled and not self.signing.enabled:
            raise _error("chain", "chain.enabled needs signing.enabled: the chain links signatures")
        return self


class AuditConfig(_Model):
    """What is audited, how the recorder behaves under pressure, and where events go."""

    enabled: bool = True
    log: LogConfig = LocalLog()
    failure_policy: Literal["fail_open", "fail_closed"] = "fail_open"
    """fail_open drops (and counts) events when the log cannot keep up; fail_closed
    makes callers wait up to `block_timeout_ms`, then refuses their request."""
    queue_max_events: int = Field(default=100_000, gt=0)
    block_timeout_ms: int = Field(default=5000, ge=0)
    batch_max_events: int = Field(default=4096, gt=0)
    events: EventSelector = ["*"]
    exclude_events: EventSelector = []
    custom_event_types: list[CustomEventType] = []
    redact_keys: list[KeyPattern] = []
    """Regular expressions for key names to redact, on top of the built-in ones."""
    destination: Destination | None = None
    destinations: list[Destination] = []
    integrity: Integrity = Integrity()
    retention: Retention = Retention()

    @property
    def all_destinations(self) -> list[Destination]:
        """`destination` and `destinations` as one list."""
        single = [self.destination] if self.destination is not None else []
        return [*single, *self.destinations]

    @model_validator(mode="wrap")
    @classmethod
    def _check_across_keys(
        cls, data: Any, handler: ModelWrapValidatorHandler[AuditConfig]
    ) -> AuditConfig:
        problems = _audit_problems(data) if isinstance(data, Mapping) else []
        if not problems:
            return handler(data)
        extra = [
            InitErrorDetails(type=_error("cross_field", p.message), loc=p.loc, input=p.value)
            for p in problems
        ]
        try:
            handler(data)
        except ValidationError as exc:
            # Raise one error listing pydantic's problems and ours, so a reader fixes
            # everything in one pass.
            raise ValidationError.from_exception_data(
                exc.title, [*_reraisable(exc), *extra]
            ) from None
        raise ValidationError.from_exception_data(cls.__name__, extra)


# ---------------------------------------------------------------------------- gateway

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


def _kafka_api_name(name: str) -> str:
    from kio.schema.index import api_key_map  # the protocol's API names, from kio

    known = sorted(
        "".join(p[:1].upper() + p[1:] for p in n.split("_")) for n in api_key_map.values()
    )
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise _error(
            "kafka_api",
            f"unknown Kafka API {name!r}; {hint}accepted: Kafka API names such as "
            "Heartbeat, Metadata, OffsetCommit, JoinGroup",
        )
    return name


KafkaApiName = Annotated[str, AfterValidator(_kafka_api_name)]


class RequestEvents(_Model):
    """Which APIs without a record type of their own are recorded as `kafka.request`."""

    enabled: bool = True
    exclude_apis: list[KafkaApiName] = list(DEFAULT_QUIET_APIS)
    include_apis: list[KafkaApiName] = []
    """Recorded even if in exclude_apis (e.g. `Metadata` to see every metadata request)."""


class ClientTls(_Model):
    """TLS terminated at the gateway towards clients."""

    cert_file: str = Field(min_length=1)
    key_file: str = Field(min_length=1)
    ca_file: str | None = None
    """CA for client certificates; with it, a certificate's subject is the principal."""
    require_client_cert: bool = False


class UpstreamTls(_Model):
    """TLS from the gateway to the brokers."""

    ca_file: str | None = None
    """Trust these CAs (default: the system's)."""
    cert_file: str | None = None
    key_file: str | None = None
    check_hostname: bool = True


class GatewayConfig(_Model):
    """The audit gateway: a Kafka protocol proxy between clients and brokers."""

    upstream: BootstrapServers
    """The cluster's bootstrap servers (`host:port`, a list or a comma-separated string)."""
    listen: Annotated[str, AfterValidator(_server)] = "127.0.0.1:9192"
    """The bootstrap address clients use; broker ports follow it."""
    advertised_host: str | None = None
    """The host clients reach the gateway at (default: the listen host)."""
    broker_ports_start: int | None = Field(default=None, gt=0, lt=65536)
    """Broker node N is served on broker_ports_start + N (default: listen port + 1)."""
    max_frame_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    """Larger frames close the connection (Kafka's socket.request.max.bytes default)."""
    records_window_seconds: float = Field(default=60.0, gt=0)
    """records.produced / records.consumed are aggregated over this window."""
    request_events: RequestEvents = RequestEvents()
    tls: ClientTls | None = None
    upstream_tls: UpstreamTls | None = None

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])


# ---------------------------------------------------------------------------- top level


class ClusterConfig(_Model):
    """The Kafka cluster audited here; both values are added to every event's context."""

    id: str | None = None
    environment: str | None = None


class Config(_Model):
    """The whole kaudit configuration file."""

    data_dir: str = Field(default="./kaudit-data", min_length=1)
    cluster: ClusterConfig = ClusterConfig()
    auditors: list[AuditorEntry] = ["recorder"]
    audit: AuditConfig = AuditConfig()
    gateway: GatewayConfig | None = None

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
