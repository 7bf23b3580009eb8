"""The `audit.log` section: where the recorder writes the audit log.

This module owns the log's backends, `LocalLog` (segment files under the data
directory) and `KafkaLog` (a Kafka topic), and `LogConfig`, the union choosing one of
them by `type`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Discriminator, Field, Tag

from kaudit.config.connections import KafkaConnection
from kaudit.config.fields import ConfigModel, TypeSwitch, type_tag

__all__ = ["KafkaLog", "LocalLog", "LogConfig"]


class LocalLog(ConfigModel):
    """The embedded audit log: JSON Lines segment files under `<data_dir>/log`."""

    type: Literal["local"] = "local"
    segment_max_mb: int = Field(default=64, gt=0)
    fsync: Literal["never", "batch", "always"] = "batch"
    """When appended records reach the disk: never (the OS decides), per batch, per event."""


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
    Discriminator(type_tag(default="local")),
    TypeSwitch("log"),
]
"""The audit log's backend, chosen by `type` (default `local`)."""
