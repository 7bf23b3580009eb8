"""What an exporter runner counts (`ExporterMetrics`) and the file where `kaudit run`
keeps the latest counts of each destination: written by the runner, read back for
`kaudit exporters status`."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from kaudit.config import Config
from kaudit.files import open_private
from kaudit.log.cursor import safe_name

log = logging.getLogger("kaudit.exporters")


@dataclass
class ExporterMetrics:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    last_error: str | None = None
    last_sequence: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def metrics_path(config: Config, name: str) -> Path:
    """Where `kaudit run` keeps the latest metrics of the destination called `name`."""
    return config.data_path / "exporters" / f"{safe_name(name)}.metrics.json"


def write_metrics(path: Path, metrics: ExporterMetrics, name: str) -> None:
    """Replace the metrics file at `path` with `metrics` of the destination `name`; a
    failure to write is logged, never raised (delivery does not depend on it)."""
    body = {
        "sent": metrics.sent,
        "failed": metrics.failed,
        "retried": metrics.retried,
        "dead_lettered": metrics.dead_lettered,
        "skipped": metrics.skipped,
        "last_error": metrics.last_error,
        "last_sequence": metrics.last_sequence,
        "updated": time.time(),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open_private(tmp) as f:
            f.write(orjson.dumps(body))
        tmp.replace(path)
    except OSError as exc:
        log.warning("%s: cannot write metrics to %s: %s", name, path, exc)


def read_metrics(path: Path | None) -> Any:
    """What `write_metrics` last wrote at `path` (sent, failed, retried, ...); None when
    there is no such file or it cannot be read."""
    if path is None:
        return None
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
