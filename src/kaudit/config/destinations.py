"""The `audit.destination` / `audit.destinations` section: where the log is exported.

This module owns `DestinationBase` (type, name, format, event filter), one model per
destination kind (file, kafka, s3, cloudwatch, syslog, webhook, slack, store) with the
settings they share (`Batching`), and `Destination`, the union choosing a kind by
`type`. Adding a kind means writing its model and adding one
`Annotated[Model, Tag("name")]` member to the union.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Discriminator, Field, Tag, field_validator, model_validator

from kaudit.config.connections import AwsAccess, KafkaConnection
from kaudit.config.fields import ConfigModel, EventSelector, TypeSwitch, config_error, type_tag
from kaudit.config.secrets import Secret, SecretUrl, shown_url

__all__ = [
    "SYSLOG_FACILITIES",
    "Batching",
    "CloudWatchDestination",
    "Destination",
    "DestinationBase",
    "FileDestination",
    "KafkaDestination",
    "ParquetFiles",
    "ParquetOutput",
    "Rotation",
    "S3Destination",
    "SlackDestination",
    "StoreDestination",
    "SyslogDestination",
    "SyslogTls",
    "WebhookDestination",
]


class DestinationBase(ConfigModel):
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


class Rotation(ConfigModel):
    """When a file destination starts a new file and how many old ones it keeps."""

    max_size_mb: int = Field(default=100, gt=0)
    max_files: int = Field(default=10, ge=1)
    compress: bool = True


class ParquetFiles(ConfigModel):
    """When a Parquet file is complete: at `target_size_mb` (query engines read files of
    64 to 256 MB best), or once its first event has waited `max_age_secs`."""

    target_size_mb: int = Field(default=128, ge=1, le=1024)
    max_age_secs: float = Field(default=900.0, ge=0)


class ParquetOutput(ConfigModel):
    """`encoding: parquet` writes Parquet files partitioned by day (`dt=YYYY-MM-DD/`)
    instead of JSON Lines (exporters/parquet.py); they hold native events."""

    encoding: Literal["jsonl", "parquet"] = "jsonl"
    parquet: ParquetFiles = ParquetFiles()

    @model_validator(mode="after")
    def _parquet_is_native(self) -> ParquetOutput:
        if self.encoding == "parquet" and getattr(self, "format", "native") != "native":
            raise config_error(
                "parquet_format",
                "encoding: parquet writes the native event's columns; set format: native "
                "(or encoding: jsonl for cloudevents or ocsf)",
            )
        return self


class FileDestination(DestinationBase, ParquetOutput):
    """Events appended to a local file, rotated by size; with `encoding: parquet`, `path`
    is the folder the Parquet files go in."""

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


class Batching(ConfigModel):
    """How a destination groups events: a batch is sent when it holds `batch_size` events
    or when its first event has waited `batch_interval_secs`, whichever comes first."""

    batch_size: int = Field(default=500, gt=0)
    batch_interval_secs: float = Field(default=1.0, ge=0)


_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _s3_bucket(name: str) -> str:
    if not _S3_BUCKET.fullmatch(name) or ".." in name:
        raise config_error(
            "s3_bucket",
            "must be an S3 bucket name: 3 to 63 lowercase letters, digits, '.' and '-', "
            f"starting and ending with a letter or digit, got {name!r}",
        )
    return name


class S3Destination(DestinationBase, Batching, AwsAccess, ParquetOutput):
    """Events uploaded to S3 as gzipped JSON Lines objects, one per batch, named by
    stream and sequence range (or as Parquet files, `encoding: parquet`); optionally
    written under Object Lock retention."""

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
            raise config_error(
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
        raise config_error(
            "facility",
            f"unknown syslog facility {name!r}; accepted: {', '.join(SYSLOG_FACILITIES)}",
        )
    return name


class SyslogTls(ConfigModel):
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
            raise config_error(
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
    url: SecretUrl
    """Secret: a webhook URL often carries its token; messages show its host only."""
    headers: dict[str, Secret] = {}
    """Secret values (an Authorization header's token)."""
    batch_size: int = Field(default=100, gt=0)
    retry_attempts: int = Field(default=3, ge=0)
    """Quick retries of one request before the runner backs off (and keeps trying)."""
    timeout: float = Field(default=10.0, gt=0)
    """Seconds to connect, send and get an answer."""
    secret: Secret | None = Field(default=None, min_length=16)
    """HMAC-SHA256 key: each request carries X-Kaudit-Signature over timestamp and body."""

    @property
    def target(self) -> str:
        return shown_url(self.url.get_secret_value())


class SlackDestination(DestinationBase, Batching):
    """Kpow's Slack integration: each user action as a readable message to a Slack
    incoming webhook."""

    type: Literal["slack"] = "slack"
    webhook: SecretUrl
    """The incoming-webhook URL (https://hooks.slack.com/services/...): a secret."""
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
        return self.channel or shown_url(self.webhook.get_secret_value()).split("://")[1]


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
    Discriminator(type_tag(default=None)),
    TypeSwitch("destination"),
]
"""One place the audit log is exported to, chosen by `type`."""
