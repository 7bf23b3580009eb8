"""Where each destination stands (`kaudit exporters status`): its cursor, how many events
it is behind, and what the last `kaudit run` wrote about it (sent, failed, retried...)."""

from __future__ import annotations

from typing import Any

from kaudit.config import Config
from kaudit.exporters import runners_for
from kaudit.exporters.metrics import read_metrics


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
