"""The file destination: JSON Lines, size rotation with max_files and gzip, formats, and
per-destination event selection, driven from a real audit log by the exporter runner."""

from __future__ import annotations

import gzip
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

import kaudit
from kaudit.config import Config
from kaudit.events.codec import decode
from kaudit.exporters import runners_for
from kaudit.log.segments import LogReader

MB = 1 << 20


def make_config(tmp_path: Path, destinations: list[dict[str, Any]]) -> Config:
    return Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "cluster": {"id": "prod", "environment": "production"},
            "audit": {"log": {"fsync": "never"}, "destinations": destinations},
        }
    )


def emit_events(config: Config, types: list[str], pad: int = 0) -> None:
    with kaudit.open(config) as session:
        for i, event_type in enumerate(types):
            details: dict[str, Any] = {"i": i}
            if pad:
                details["pad"] = "x" * pad
            session.emit(
                event_type, actor="User:alice", resource=f"topic:t{i % 5}", details=details
            )


def drain_all(config: Config) -> None:
    for runner in runners_for(config):
        try:
            runner.drain()
        finally:
            runner.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    assert data == b"" or data.endswith(b"\n")
    return [orjson.loads(line) for line in data.splitlines()]


def test_native_output_is_the_log_line_for_line(tmp_path: Path) -> None:
    out = tmp_path / "out" / "audit.log"
    config = make_config(tmp_path, [{"type": "file", "path": str(out)}])
    emit_events(config, ["topic.created", "acl.created", "auth.login"] * 10)
    drain_all(config)
    log_lines = [line for _, line in LogReader(config.log_dir).iter_lines()]
    assert out.read_bytes() == b"".join(log_lines)
    assert [e["details"]["i"] for e in read_jsonl(out)] == list(range(30))


def _rotated_in_order(out: Path, compress: bool) -> list[Path]:
    """Rotated files oldest first (highest number first), then the live file."""
    suffix = ".gz" if compress else ""
    rotated = sorted(
        out.parent.glob(out.name + ".*"),
        key=lambda p: int(p.name[len(out.name) + 1 :].removesuffix(suffix)),
        reverse=True,
    )
    return [*rotated, out]


@pytest.mark.parametrize("compress", [True, False])
def test_rotation_by_size_keeps_every_event_in_order(tmp_path: Path, compress: bool) -> None:
    out = tmp_path / "out" / "audit.log"
    config = make_config(
        tmp_path,
        [
            {
                "type": "file",
                "path": str(out),
                "rotation": {"max_size_mb": 1, "max_files": 10, "compress": compress},
            }
        ],
    )
    total = 420  # ~10 KiB each: about four rotations
    emit_events(config, ["records.produced"] * total, pad=10_000)
    drain_all(config)

    files = _rotated_in_order(out, compress)
    names = sorted(p.name for p in out.parent.iterdir())
    if compress:
        assert names == sorted(["audit.log", *(f"audit.log.{i}.gz" for i in range(1, 5))])
    else:
        assert names == sorted(["audit.log", *(f"audit.log.{i}" for i in range(1, 5))])
    numbers: list[int] = []
    for path in files:
        events = read_jsonl(path)
        numbers += [e["details"]["i"] for e in events]
        raw = gzip.decompress(path.read_bytes()) if compress and path != out else path.read_bytes()
        assert len(raw) <= MB
    assert numbers == list(range(total))


def test_rotation_keeps_at_most_max_files(tmp_path: Path) -> None:
    out = tmp_path / "out" / "audit.log"
    config = make_config(
        tmp_path,
        [{"type": "file", "path": str(out), "rotation": {"max_size_mb": 1, "max_files": 2}}],
    )
    total = 520  # about five rotations, of which only the two newest are kept
    emit_events(config, ["records.produced"] * total, pad=10_000)
    drain_all(config)
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "audit.log",
        "audit.log.1.gz",
        "audit.log.2.gz",
    ]
    numbers = [e["details"]["i"] for path in _rotated_in_order(out, True) for e in read_jsonl(path)]
    # The newest events, contiguous up to the last one: only whole old files were removed.
    assert numbers == list(range(numbers[0], total))
    assert 150 < len(numbers) < 320


def test_rotation_counts_what_an_earlier_process_already_wrote(tmp_path: Path) -> None:
    out = tmp_path / "out" / "audit.log"
    destination = {"type": "file", "path": str(out), "rotation": {"max_size_mb": 1}}
    config = make_config(tmp_path, [destination])
    emit_events(config, ["records.produced"] * 80, pad=10_000)
    drain_all(config)  # ~0.8 MiB in audit.log
    assert not list(out.parent.glob("audit.log.*"))
    emit_events(config, ["records.produced"] * 40, pad=10_000)
    drain_all(config)  # a new runner and exporter: must still rotate at 1 MiB
    assert len(out.read_bytes()) <= MB
    rotated = read_jsonl(out.parent / "audit.log.1.gz")
    live = read_jsonl(out)
    assert [e["details"]["i"] for e in rotated + live] == [*range(80), *range(40)]


def test_cloudevents_format(tmp_path: Path) -> None:
    out = tmp_path / "ce.log"
    config = make_config(tmp_path, [{"type": "file", "path": str(out), "format": "cloudevents"}])
    emit_events(config, ["topic.created", "auth.login"])
    drain_all(config)
    native = [decode(line) for _, line in LogReader(config.log_dir).iter_lines()]
    events = read_jsonl(out)
    assert len(events) == 2
    for ce, event in zip(events, native, strict=True):
        assert ce["specversion"] == "1.0"
        assert ce["id"] == event.event_id
        assert ce["type"] == f"io.kaudit.{event.event_type}"
        assert ce["time"] == event.timestamp
        assert ce["source"] == "kaudit://prod/sdk"
        assert ce["datacontenttype"] == "application/json"
        assert decode(orjson.dumps(ce["data"])) == event
    assert events[0]["subject"] == "kafka://prod/topic/t0"


def test_ocsf_format(tmp_path: Path) -> None:
    out = tmp_path / "ocsf.log"
    config = make_config(tmp_path, [{"type": "file", "path": str(out), "format": "ocsf"}])
    emit_events(config, ["topic.created", "auth.login", "auth.failed"])
    drain_all(config)
    events = read_jsonl(out)
    assert [e["class_uid"] for e in events] == [6003, 3002, 3002]
    assert events[0]["api"]["operation"] == "create"
    assert events[0]["actor"]["user"]["name"] == "alice"
    assert events[0]["metadata"]["sequence"] == 0
    assert all(e["unmapped"]["details"]["i"] == i for i, e in enumerate(events))


def test_each_destination_selects_its_own_events(tmp_path: Path) -> None:
    topics = tmp_path / "topics.log"
    auth = tmp_path / "auth.log"
    everything = tmp_path / "all.log"
    config = make_config(
        tmp_path,
        [
            {
                "type": "file",
                "name": "topics",
                "path": str(topics),
                "events": ["topic.*"],
                "exclude_events": ["topic.deleted"],
            },
            {"type": "file", "name": "auth", "path": str(auth), "events": ["auth.*"]},
            {"type": "file", "name": "all", "path": str(everything)},
        ],
    )
    types = [
        "topic.created",
        "topic.deleted",
        "auth.login",
        "topic.config_changed",
        "acl.created",
        "auth.failed",
    ]
    emit_events(config, types)
    runners = runners_for(config)
    for runner in runners:
        assert runner.drain() == len(types)  # each consumed the whole log
        runner.close()
    assert [e["event_type"] for e in read_jsonl(topics)] == [
        "topic.created",
        "topic.config_changed",
    ]
    assert [e["event_type"] for e in read_jsonl(auth)] == ["auth.login", "auth.failed"]
    assert [e["event_type"] for e in read_jsonl(everything)] == types
    assert [r.metrics.skipped for r in runners] == [4, 4, 0]
    # Each has its own cursor: all are caught up.
    assert [r.lag() for r in runners_for(config)] == [0, 0, 0]


def test_rotated_files_are_no_more_readable_than_the_live_file(tmp_path: Path) -> None:
    out = tmp_path / "out" / "audit.log"
    config = make_config(
        tmp_path, [{"type": "file", "path": str(out), "rotation": {"max_size_mb": 1}}]
    )
    emit_events(config, ["records.produced"] * 120, pad=10_000)
    drain_all(config)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.parent.iterdir()}
    assert set(modes) == {"audit.log", "audit.log.1.gz"}
    assert modes["audit.log"] == 0o640
    assert modes["audit.log.1.gz"] & 0o007 == 0, oct(modes["audit.log.1.gz"])
