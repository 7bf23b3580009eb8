"""audit.retention on the local log, the search index and rotated export files: data
older than max_days goes, data younger than min_days never does, only whole rolled
segments go (never the one being written) with their checkpoint files, and the cutoff
instant itself is kept."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from kaudit_store_data import export, index_path, log_events, make_config, record_traffic

from kaudit.cli import main
from kaudit.config import Config
from kaudit.events.codec import encode_line
from kaudit.events.model import Action, Actor, AuditEvent, Integrity, Resource
from kaudit.integrity.keys import generate
from kaudit.log.segments import SegmentLog, list_segments, segment_name
from kaudit.store.query import Filter, IndexSearch
from kaudit.store.retention import apply_retention, expired_segments
from kaudit.store.schema import to_ms

START = datetime(2026, 1, 1, tzinfo=UTC)


def retained_config(tmp_path: Path, min_days: int, max_days: int | None, **audit: object) -> Config:
    keys = generate(tmp_path / "signing", "kaudit/retention-test")
    return make_config(
        tmp_path,
        log={"fsync": "never", "segment_max_mb": 1},
        retention={"min_days": min_days, "max_days": max_days},
        integrity={
            "checkpoints": {"enabled": True, "key_file": str(keys.private), "every_events": 500}
        },
        **audit,
    )


def newest_ms(path: Path) -> int:
    return max(
        to_ms(datetime.fromisoformat(orjson.loads(line)["timestamp"]))
        for line in path.read_bytes().splitlines()
    )


def test_rolled_segments_past_max_days_go_with_their_checkpoints(tmp_path: Path) -> None:
    config = retained_config(tmp_path, min_days=10, max_days=20)
    record_traffic(config, 6000, START, START + timedelta(days=40))
    log_dir = config.log_dir
    before = list_segments(log_dir)
    assert len(before) >= 4
    checkpointed = {b for b in before if (log_dir / f"{b:020d}.checkpoints.jsonl").exists()}
    assert len(checkpointed) >= 2
    now = START + timedelta(days=40)
    cutoff_ms = to_ms(now - timedelta(days=20))

    report = apply_retention(config, now=now)

    after = list_segments(log_dir)
    gone = [b for b in before if b not in after]
    assert gone and after == before[len(gone) :], "the oldest segments go, in one stretch"
    assert [p.name for p in report.segments] == [segment_name(b) for b in gone]
    assert checkpointed & set(gone) and checkpointed & set(after)
    assert sorted(p.name for p in report.checkpoint_files) == [
        f"{b:020d}.checkpoints.jsonl" for b in sorted(checkpointed & set(gone))
    ]
    for base in gone:
        assert not (log_dir / f"{base:020d}.checkpoints.jsonl").exists()
    for base in checkpointed & set(after):
        assert (log_dir / f"{base:020d}.checkpoints.jsonl").exists()
    # Every event past the cutoff is still there; the first kept segment holds a young one.
    assert newest_ms(log_dir / segment_name(after[0])) >= cutoff_ms
    kept = log_events(config)
    young = [e for e in kept if to_ms(datetime.fromisoformat(e["timestamp"])) >= cutoff_ms]
    assert len(young) == sum(
        1 for i in range(6000) if START + timedelta(days=40) * i / 6000 >= now - timedelta(days=20)
    )


def test_the_segment_being_written_is_never_removed(tmp_path: Path) -> None:
    config = retained_config(tmp_path, min_days=1, max_days=1)
    record_traffic(config, 3000, START, START + timedelta(days=2))
    segments = list_segments(config.log_dir)
    apply_retention(config, now=START + timedelta(days=3650))
    assert list_segments(config.log_dir) == segments[-1:]
    assert log_events(config), "the active segment keeps its events"


def test_without_max_days_nothing_is_removed(tmp_path: Path) -> None:
    config = retained_config(tmp_path, min_days=0, max_days=None)
    record_traffic(config, 3000, START, START + timedelta(days=2))
    segments = list_segments(config.log_dir)
    report = apply_retention(config, now=START + timedelta(days=3650))
    assert report.cutoff is None and list_segments(config.log_dir) == segments


def test_min_days_wins_over_a_smaller_cutoff() -> None:
    from kaudit.config.model import Retention
    from kaudit.store.retention import cutoff

    now = datetime(2026, 11, 22, tzinfo=UTC)
    assert cutoff(Retention(min_days=30, max_days=30), now) == now - timedelta(days=30)
    # A Retention built without validation cannot pull the cutoff inside min_days.
    loose = Retention.model_construct(min_days=90, max_days=30, lifecycle=[])
    assert cutoff(loose, now) == now - timedelta(days=90)


def _line(seq: int, when: datetime) -> bytes:
    return encode_line(
        AuditEvent(
            timestamp=when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            event_type="topic.created",
            event_id=f"evt_{seq:08d}",
            actor=Actor(type="user", id="User:alice"),
            resource=Resource(type="topic", id="orders"),
            action=Action(operation="create"),
            details={"pad": "x" * 300},
            integrity=Integrity(sequence_number=seq),
        )
    )


def write_segments(log_dir: Path, times: list[list[datetime]]) -> list[int]:
    """One segment per inner list (each a little over 1 KiB per event)."""
    seq = 0
    with SegmentLog(log_dir, segment_max_bytes=400 * 10, fsync="never") as log:
        for group in times:
            lines = []
            for when in group:
                lines.append(_line(seq, when))
                seq += 1
            log.append(lines)
            log._roll(seq)
    return list_segments(log_dir)


def test_the_cutoff_instant_is_kept_and_one_millisecond_older_goes(tmp_path: Path) -> None:
    cut = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    ms = timedelta(milliseconds=1)
    bases = write_segments(
        tmp_path,
        [
            [cut - timedelta(days=3), cut - ms],  # newest just before: goes
            [cut - timedelta(days=2), cut],  # newest exactly at the cutoff: stays
            [cut - timedelta(days=5)],  # old, but after one that stays
        ],
    )
    assert expired_segments(tmp_path, to_ms(cut)) == bases[:1]


def test_a_young_event_anywhere_in_a_segment_keeps_it(tmp_path: Path) -> None:
    cut = datetime(2026, 6, 1, tzinfo=UTC)
    old = cut - timedelta(days=30)
    bases = write_segments(
        tmp_path,
        [
            [old, old],
            [old, cut + timedelta(hours=1), old],  # a clock that jumped: the newest is inside
            [old],
        ],
    )
    assert expired_segments(tmp_path, to_ms(cut)) == bases[:1]


def test_the_index_drops_events_past_max_days_and_forgets_their_words(tmp_path: Path) -> None:
    config = retained_config(tmp_path, min_days=5, max_days=10, destinations=[{"type": "store"}])
    record_traffic(config, 2000, START, START + timedelta(days=20))
    export(config)
    now = START + timedelta(days=20)
    cutoff_ms = to_ms(now - timedelta(days=10))
    events = log_events(config)
    old = [e for e in events if to_ms(datetime.fromisoformat(e["timestamp"])) < cutoff_ms]
    report = apply_retention(config, now=now)
    assert report.index_events == len(old) > 0
    search = IndexSearch(index_path(config))
    try:
        left = search.search(Filter(), None)
        assert len(left) == 2000 - len(old)
        assert min(h.fields.ts for h in left) >= cutoff_ms
        failed = [h for h in search.search(Filter(query="unreachable"), None)]
        assert failed and all(h.fields.ts >= cutoff_ms for h in failed)
        assert all(h.line == orjson.dumps(orjson.loads(h.line)) for h in left[:20])
        counted = sum(n for _, n in search.count_by(Filter(), ("actor",)))
        assert counted == len(left)
    finally:
        search.close()


def test_rotated_files_last_written_before_the_cutoff_go(tmp_path: Path) -> None:
    out = tmp_path / "out" / "audit.log"
    config = retained_config(
        tmp_path,
        min_days=30,
        max_days=60,
        destinations=[{"type": "file", "path": str(out)}],
    )
    out.parent.mkdir(parents=True)
    now = datetime(2026, 11, 22, tzinfo=UTC)
    ages = {"audit.log": 400, "audit.log.1.gz": 59, "audit.log.2.gz": 61, "audit.log.3": 90}
    for name, days in ages.items():
        path = out.parent / name
        path.write_bytes(b"{}\n")
        stamp = (now - timedelta(days=days)).timestamp()
        os.utime(path, (stamp, stamp))
    (out.parent / "audit.log.bak").write_bytes(b"not ours")

    dry = apply_retention(config, now=now, dry_run=True)
    assert sorted(p.name for p in dry.files) == ["audit.log.2.gz", "audit.log.3"]
    assert all((out.parent / n).exists() for n in ages)

    apply_retention(config, now=now)
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "audit.log",
        "audit.log.1.gz",
        "audit.log.bak",
    ]


def test_a_dry_run_removes_nothing(tmp_path: Path) -> None:
    config = retained_config(tmp_path, min_days=1, max_days=2, destinations=[{"type": "store"}])
    record_traffic(config, 3000, START, START + timedelta(days=4))
    export(config)
    segments = list_segments(config.log_dir)
    report = apply_retention(config, now=START + timedelta(days=30), dry_run=True)
    assert report.segments and report.index_events == 3000
    assert list_segments(config.log_dir) == segments
    search = IndexSearch(index_path(config))
    try:
        assert len(search.search(Filter(), None)) == 3000
    finally:
        search.close()


def _write_config(tmp_path: Path, retention: dict[str, object]) -> Path:
    path = tmp_path / "kaudit.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "audit": {
                    "log": {"segment_max_mb": 1, "fsync": "never"},
                    "retention": retention,
                    "destinations": [{"type": "store"}],
                },
            }
        )
    )
    return path


def test_kaudit_retention_apply_and_run_once_remove_old_data(tmp_path: Path) -> None:
    config_file = _write_config(tmp_path, {"min_days": 30, "max_days": 90})
    config = make_config(
        tmp_path, log={"segment_max_mb": 1, "fsync": "never"}, destinations=[{"type": "store"}]
    )
    now = datetime.now(UTC)
    record_traffic(config, 3000, now - timedelta(days=400), now - timedelta(days=380))
    record_traffic(config, 300, now - timedelta(days=10), now - timedelta(days=1), seed=3)
    segments = list_segments(config.log_dir)

    dry = CliRunner().invoke(main, ["retention", "apply", "-c", str(config_file), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert orjson.loads(dry.output)["log_segments"] and list_segments(config.log_dir) == segments

    run = CliRunner().invoke(main, ["run", "-c", str(config_file), "--once"])
    assert run.exit_code == 0, run.output
    assert "retention: removed" in run.output
    assert list_segments(config.log_dir) == segments[-1:]
    search = IndexSearch(index_path(config))
    try:
        assert len(search.search(Filter(since=now - timedelta(days=90)), None)) == 300
        assert not search.search(Filter(until=now - timedelta(days=90)), None)
    finally:
        search.close()

    again = CliRunner().invoke(main, ["retention", "apply", "-c", str(config_file)])
    assert again.exit_code == 0 and orjson.loads(again.output)["index_events"] == 0


def test_max_days_below_min_days_is_refused_naming_max_days(tmp_path: Path) -> None:
    config_file = _write_config(tmp_path, {"min_days": 365, "max_days": 30})
    result = CliRunner().invoke(main, ["retention", "apply", "-c", str(config_file)])
    assert result.exit_code == 2
    assert "audit.retention.max_days" in result.output


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_kafka_log_is_left_to_its_topic_retention(tmp_path: Path, dry_run: bool) -> None:
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path),
            "audit": {
                "log": {"type": "kafka", "bootstrap_servers": ["localhost:9"]},
                "retention": {"min_days": 1, "max_days": 2},
            },
        }
    )
    report = apply_retention(config, dry_run=dry_run)
    assert any("retention_ms" in note for note in report.notes)


def test_parquet_days_wholly_before_the_cutoff_go(tmp_path: Path) -> None:
    out = tmp_path / "parquet"
    config = retained_config(
        tmp_path,
        min_days=1,
        max_days=2,
        destinations=[{"type": "file", "path": str(out), "encoding": "parquet",
                       "parquet": {"max_age_secs": 0}}],
    )  # fmt: skip
    record_traffic(config, 2000, START, START + timedelta(days=4))
    export(config)
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints  # the signed checkpoints are copied beside the files
    days = sorted(p.name for p in out.iterdir() if p.name != "checkpoints")
    assert days == ["dt=2026-01-01", "dt=2026-01-02", "dt=2026-01-03", "dt=2026-01-04"]
    (out / "dt=2026-01-01" / "notes.txt").write_text("not the exporter's")
    # Two days back from the middle of 2026-01-05: before 12:00 on 2026-01-03.
    now = START + timedelta(days=4, hours=12)

    dry = apply_retention(config, now=now, dry_run=True)
    assert {p.parent.name for p in dry.files} == {"dt=2026-01-01", "dt=2026-01-02"}
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", *days]

    apply_retention(config, now=now)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "dt=2026-01-01", *days[2:]]
    # The checkpoints stay, as a local log's (verify reports the removed days as missing).
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == checkpoints
    assert [p.name for p in (out / "dt=2026-01-01").iterdir()] == ["notes.txt"]
    cutoff_ms = to_ms(now - timedelta(days=2))
    kept = [
        to_ms(when)
        for path in out.glob("dt=*/*.parquet")
        for when in pq.read_table(path, columns=["time"]).column("time").to_pylist()
    ]
    assert kept and min(kept) >= to_ms(START + timedelta(days=2))
    assert max(kept) > cutoff_ms
