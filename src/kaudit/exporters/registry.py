"""From configuration to running exporters: which exporter class serves each
destination type (imported only when configured), and one runner per configured
destination with its own feed, cursor, batching, dead-letter file and metrics file."""

from __future__ import annotations

import importlib
from pathlib import Path

from kaudit.config import Config
from kaudit.config.model import Batching, Destination, KafkaLog
from kaudit.config.secrets import mask
from kaudit.errors import DeliveryIncompleteError, ExporterError
from kaudit.exporters.base import Exporter
from kaudit.exporters.feeds import Feed, KafkaFeed, LocalFeed
from kaudit.exporters.metrics import metrics_path
from kaudit.exporters.runner import ExporterRunner
from kaudit.log.cursor import Cursor, safe_name

_EXPORTERS: dict[str, str] = {
    "file": "kaudit.exporters.file:FileExporter",
    "kafka": "kaudit.exporters.kafka:KafkaExporter",
    # The search index's exporter lives with the index: kaudit.store may use exporters,
    # never the other way round.
    "store": "kaudit.store.exporter:StoreExporter",
    "s3": "kaudit.exporters.s3:S3Exporter",
    "cloudwatch": "kaudit.exporters.cloudwatch:CloudWatchExporter",
    "syslog": "kaudit.exporters.syslog:SyslogExporter",
    "webhook": "kaudit.exporters.webhook:WebhookExporter",
    "slack": "kaudit.exporters.slack:SlackExporter",
}
"""Destination type -> the exporter class, imported only when that type is configured
(boto3 and confluent-kafka are slow to import)."""


def build_exporter(
    destination: Destination, data_path: Path = Path("."), config: Config | None = None
) -> Exporter:
    """The exporter for one configured destination (`data_path`: where files with no
    path of their own go; `config`: the whole configuration, for destinations that read
    other sections, like S3's retention rules)."""
    path = _EXPORTERS.get(destination.type)
    if getattr(destination, "encoding", "jsonl") == "parquet":
        path = "kaudit.exporters.parquet:ParquetExporter"  # file and s3 alike
    if path is None:
        raise ExporterError(
            f"no exporter for destination type {destination.type!r}; "
            f"accepted: {', '.join(sorted(_EXPORTERS))}",
            retryable=False,
        )
    module_name, _, class_name = path.partition(":")
    exporter_class = getattr(importlib.import_module(module_name), class_name)
    exporter: Exporter
    if destination.type == "store":
        exporter = exporter_class(destination, data_path)
    elif getattr(exporter_class, "wants_config", False):
        exporter = exporter_class(destination, config or Config())
    else:
        exporter = exporter_class(destination)
    return exporter


def batching(destination: Destination) -> tuple[int | None, float]:
    """(largest batch, how long a smaller batch may wait) for a destination; None: the
    exporter's own batch size (see `ExporterRunner`)."""
    if isinstance(destination, Batching):
        return destination.batch_size, destination.batch_interval_secs
    return None, 0.0


def runners_for(config: Config) -> list[ExporterRunner]:
    """One runner per configured destination, each with its own cursor and dead letters."""
    return [runner_for(config, destination) for destination in config.audit.all_destinations]


def runner_for(config: Config, destination: Destination) -> ExporterRunner:
    """The runner of one configured destination, with its own cursor and dead letters."""
    log_config = config.audit.log
    exporter = build_exporter(destination, config.data_path, config)
    batch_max, linger_s = batching(destination)
    name = destination.display_name
    feed: Feed = (
        KafkaFeed(log_config, group=f"kaudit-exporter-{safe_name(name)}")
        if isinstance(log_config, KafkaLog)
        else LocalFeed(config.log_dir, Cursor.named(config.data_path, name))
    )
    return ExporterRunner(
        exporter,
        feed=feed,
        fmt=destination.format,
        events=tuple(destination.events),
        exclude_events=tuple(destination.exclude_events),
        batch_max=batch_max,
        linger_s=linger_s,
        # A short linger is also how quickly new events are noticed.
        interval_s=min(1.0, linger_s) if linger_s > 0 else 1.0,
        dead_letter=config.data_path / "dead-letter" / f"{safe_name(name)}.jsonl",
        metrics_path=metrics_path(config, name),
    )


def drain_all(config: Config, retries: int | None = None) -> dict[str, int]:
    """Deliver what is in the log now to every configured destination, then close them;
    the log lines each one consumed, by destination name. With `retries`, a destination
    still failing after them is given up on (its cursor stays where delivery stopped),
    the others are served, then DeliveryIncompleteError says what was not delivered."""
    counts: dict[str, int] = {}
    undelivered: list[str] = []
    for runner in runners_for(config):
        try:
            counts[runner.name] = runner.drain(retries)
        except ExporterError as exc:
            if retries is None or not exc.retryable:
                raise
            after = runner.metrics.last_sequence
            undelivered.append(
                f"{runner.name}: {runner.lag()} {'event' if runner.lag() == 1 else 'events'} "
                "not delivered, from sequence "
                f"{0 if after is None else after + 1} on ({mask(str(exc))})"
            )
        finally:
            runner.close()
    if undelivered:
        done = ", ".join(f"{name}: {n}" for name, n in counts.items())
        raise DeliveryIncompleteError(
            f"gave up after {retries} {'retry' if retries == 1 else 'retries'}; "
            + "; ".join(undelivered)
            + (f"; delivered {done}" if done else "")
            + ". Their cursors stay there: the next run starts from them."
        )
    return counts
