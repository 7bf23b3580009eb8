"""Shared by the search, retention and report tests: a real audit log of generated
traffic at chosen times, its events read back as plain dicts, and the store destination
fed from it by the real exporter runner."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

import kaudit
from kaudit.config import Config
from kaudit.exporters import drain_all
from kaudit.generate import TrafficGenerator
from kaudit.log.segments import LogReader


def make_config(tmp_path: Path, **audit: Any) -> Config:
    audit.setdefault("log", {"fsync": "never"})
    audit.setdefault("destinations", [{"type": "store"}])
    return Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "cluster": {"id": "prod-eu-1", "environment": "production"},
            "audit": audit,
        }
    )


def record_traffic(
    config: Config, count: int, start: datetime, end: datetime, seed: int = 7
) -> None:
    """`count` events of generated traffic at evenly spaced times in [start, end)."""
    gen = TrafficGenerator(seed)
    first = int(start.timestamp() * 1e9)
    step = (int(end.timestamp() * 1e9) - first) // count
    with kaudit.open(config) as session:
        for i in range(count):
            e, actor = gen.next()
            session.emit(
                e.event_type,
                actor=actor,
                resource=e.resource,
                result=e.result,
                error=e.error,
                details=e.details,
                authorization=e.authorization,
                correlation_id=f"req_{seed}_{i}",
                time_ns=first + i * step,
            )


def log_lines(config: Config) -> list[bytes]:
    return [line.rstrip(b"\n") for _, line in LogReader(config.log_dir).iter_lines()]


def log_events(config: Config) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in log_lines(config)]


def export(config: Config) -> dict[str, int]:
    """Run every configured destination until it has caught up with the log."""
    return drain_all(config)


def index_path(config: Config) -> Path:
    return config.data_path / "index.sqlite"
