"""Helpers shared by the destination tests: a configuration around one destination, a
real audit log to export from, running its exporters, and one event line to send."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

import kaudit
from kaudit.config import Config
from kaudit.exporters import ExporterRunner, runners_for
from kaudit.log.segments import LogReader

ONE_EVENT_LINE = (
    b'{"timestamp":"2026-11-22T10:00:00.000Z","event_type":"topic.created",'
    b'"event_id":"evt_1","actor":{"type":"user","id":"User:a"},'
    b'"resource":{"type":"topic","id":"t"},"action":{"operation":"create"}}'
)
"""A native log line with only the members an event needs, for sending one event to an
exporter directly (no log, no runner)."""


def make_config(tmp_path: Path, *destinations: dict[str, Any], **audit: Any) -> Config:
    return Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "cluster": {"id": "prod", "environment": "production"},
            "audit": {"log": {"fsync": "never"}, "destinations": list(destinations), **audit},
        }
    )


def emit_events(
    config: Config, types: list[str], *, start: int = 0, pad: int = 0, result: str = "success"
) -> None:
    with kaudit.open(config) as session:
        for n, event_type in enumerate(types):
            i = start + n
            details: dict[str, Any] = {"i": i}
            if pad:
                details["pad"] = "x" * pad
            session.emit(
                event_type,
                actor="User:alice",
                resource=f"topic:t{i % 5}",
                details=details,
                result=result,
            )


def log_events(config: Config) -> list[dict[str, Any]]:
    return [orjson.loads(line) for _, line in LogReader(config.log_dir).iter_lines()]


def one_runner(config: Config) -> ExporterRunner:
    (runner,) = runners_for(config)
    runner._sleep = lambda _s: None
    return runner


def drain(config: Config) -> ExporterRunner:
    """Deliver everything in the log with the configuration's one runner, then close it."""
    runner = one_runner(config)
    try:
        runner.drain()
    finally:
        runner.close()
    return runner


def dead_letters(config: Config) -> list[dict[str, Any]]:
    out = []
    for path in sorted((config.data_path / "dead-letter").glob("*.jsonl")):
        out += [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return out
