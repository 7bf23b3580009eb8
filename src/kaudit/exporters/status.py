"""Where each destination stands (`kaudit exporters status`): its cursor, how many events
it is behind, and what the last `kaudit run` wrote about it (sent, failed, retried...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from kaudit.config import Config
from kaudit.exporters import runners_for


def exporter_status(config: Config) -> list[dict[str, Any]]:
    """One row per configured destination, in configuration order."""
    rows = []
    for r in runners_for(config):
        rows.append(
            {
                "destination": r.name,
                "format": r.fmt,
                "cursor": r.feed.position(),
                "last_sequence": r.feed.last_sequence(),
                "lag_events": r.lag(),
                "metrics": read_metrics(r.metrics_path),
            }
        )
        r.close()
    return rows


def read_metrics(path: Path | None) -> Any:
    """What the last `kaudit run` wrote about a destination (sent, failed, retried, ...)."""
    if path is None:
        return None
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
