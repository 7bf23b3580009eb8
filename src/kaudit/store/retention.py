"""How long audit data is kept: `audit.retention` applied to the local log, the search
index and the file destinations' rotated files.

The rule, everywhere: data older than `max_days` is removed; data younger than
`min_days` never is (the configuration refuses `max_days < min_days`, and the cutoff
used is the later of the two anyway). Without `max_days` nothing is removed. An event's
age is its timestamp's; "older than" is strict, so an event exactly `max_days` old stays.

- Local log: only whole rolled segments go, oldest first, never the segment being
  written (the last one); a segment goes when its newest event is past the cutoff, and
  removal stops at the first segment that must stay, so what remains is one unbroken
  stretch of the log. Its integrity checkpoint file goes with it. Exporters whose cursor
  pointed into a removed segment continue at the next one; `kaudit verify` reports the
  removed start of the log as missing "(deleted, or removed by retention)".
- Search index: events with a timestamp before the cutoff.
- File destinations: rotated files (`audit.log.3.gz`) last written before the cutoff;
  a file is written after every event in it, so all its events are older still. The
  file being written is never removed. With `encoding: parquet`, the Parquet files of a
  `dt=YYYY-MM-DD/` folder whose whole day lies before the cutoff (each holds that day's
  events only), and the folder once empty; files not named as the exporter names its
  own are left where they are.
- A Kafka log keeps what its topic's `retention_ms` says; S3 lifecycle rules are
  applied by the S3 destination.

Where it runs: `kaudit retention apply` (with `--dry-run` to see what would go), and
`kaudit run`, which applies it when it starts and then every hour.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import orjson

from kaudit.config import Config
from kaudit.config.model import FileDestination, LocalLog, Retention
from kaudit.errors import KauditError
from kaudit.exporters.file import rotated_files
from kaudit.integrity.store import SUFFIX as CHECKPOINT_SUFFIX
from kaudit.log.segments import list_segments, segment_name
from kaudit.store.index import EventIndex
from kaudit.store.query import store_destination
from kaudit.store.schema import parse_timestamp, to_ms

log = logging.getLogger("kaudit.retention")

RUN_EVERY_S = 3600.0
_TIMESTAMP_PREFIX = b'{"timestamp":"'


@dataclass
class RetentionReport:
    """What one application of retention removed (or, with `dry_run`, would remove)."""

    cutoff: datetime | None
    dry_run: bool = False
    segments: list[Path] = field(default_factory=list)
    checkpoint_files: list[Path] = field(default_factory=list)
    index_events: int = 0
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
            "dry_run": self.dry_run,
            "log_segments": [str(p) for p in self.segments],
            "checkpoint_files": [str(p) for p in self.checkpoint_files],
            "index_events": self.index_events,
            "files": [str(p) for p in self.files],
            "notes": self.notes,
        }


def cutoff(retention: Retention, now: datetime) -> datetime | None:
    """The time before which data goes, or None when everything is kept."""
    if retention.max_days is None:
        return None
    return now - timedelta(days=max(retention.max_days, retention.min_days))


def _timestamps(path: Path) -> Iterator[int | None]:
    """Each line's timestamp in ms (None for a line without a readable one)."""
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                if line.startswith(_TIMESTAMP_PREFIX):
                    # Canonical lines start with the timestamp: no need to decode the rest.
                    end = line.index(b'"', len(_TIMESTAMP_PREFIX))
                    yield parse_timestamp(line[len(_TIMESTAMP_PREFIX) : end].decode())
                else:
                    yield parse_timestamp(orjson.loads(line)["timestamp"])
            except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
                yield None


def _last_line(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - (1 << 16)))
        tail = f.read().rstrip(b"\n")
    return tail.rpartition(b"\n")[2]


def segment_expired(path: Path, cutoff_ms: int) -> bool:
    """Whether every event of a segment is older than `cutoff_ms` (an unreadable
    timestamp counts as young: when in doubt, keep)."""
    last = _last_line(path)
    if last.startswith(_TIMESTAMP_PREFIX):
        end = last.find(b'"', len(_TIMESTAMP_PREFIX))
        try:
            if parse_timestamp(last[len(_TIMESTAMP_PREFIX) : end].decode()) >= cutoff_ms:
                return False  # the common case for a young segment: one read of its tail
        except ValueError:
            return False
    # Timestamps need not grow with the sequence (clocks, backfills): check them all.
    return all(ts is not None and ts < cutoff_ms for ts in _timestamps(path))


def expired_segments(log_dir: Path, cutoff_ms: int) -> list[int]:
    """The rolled segments (by base sequence) that may go, oldest first."""
    rolled = list_segments(log_dir)[:-1]  # the last one is being written
    out = []
    for base in rolled:
        if not segment_expired(log_dir / segment_name(base), cutoff_ms):
            break
        out.append(base)
    return out


def apply_retention(
    config: Config, *, now: datetime | None = None, dry_run: bool = False
) -> RetentionReport:
    """Apply `audit.retention` to the local log, the search index and file destinations."""
    when = cutoff(config.audit.retention, now or datetime.now(UTC))
    report = RetentionReport(cutoff=when, dry_run=dry_run)
    if when is None:
        report.notes.append("retention.max_days is not set: everything is kept")
        return report
    cutoff_ms = to_ms(when)
    if isinstance(config.audit.log, LocalLog):
        _prune_log(config.log_dir, cutoff_ms, report)
    else:
        report.notes.append(
            "the Kafka log is kept by its topic's retention_ms, not by audit.retention"
        )
    store = store_destination(config)
    if store is not None:
        _prune_index(store.index_path(config.data_path), cutoff_ms, report)
    for destination in config.audit.all_destinations:
        if isinstance(destination, FileDestination) and destination.encoding == "parquet":
            _prune_parquet(Path(destination.path).expanduser(), cutoff_ms, report)
        elif isinstance(destination, FileDestination):
            _prune_files(Path(destination.path).expanduser(), cutoff_ms, report)
    return report


def _prune_log(log_dir: Path, cutoff_ms: int, report: RetentionReport) -> None:
    for base in expired_segments(log_dir, cutoff_ms):
        segment = log_dir / segment_name(base)
        checkpoints = log_dir / f"{base:020d}{CHECKPOINT_SUFFIX}"
        report.segments.append(segment)
        if checkpoints.exists():
            report.checkpoint_files.append(checkpoints)
        if report.dry_run:
            continue
        # The segment first: a checkpoint file left by a crash in between only says
        # how many events there were, which is true.
        segment.unlink(missing_ok=True)
        checkpoints.unlink(missing_ok=True)
        log.info("retention removed %s", segment)


def _prune_index(path: Path, cutoff_ms: int, report: RetentionReport) -> None:
    if not path.exists():
        return
    if report.dry_run:
        with EventIndex(path, readonly=True) as index:
            row = index.conn.execute(
                "SELECT count(*) FROM events WHERE ts < ?", (cutoff_ms,)
            ).fetchone()
            report.index_events = int(row[0])
        return
    with EventIndex(path) as index:
        report.index_events = index.delete_before(cutoff_ms)


def _prune_files(path: Path, cutoff_ms: int, report: RetentionReport) -> None:
    for rotated in rotated_files(path):
        try:
            written_ms = rotated.stat().st_mtime_ns // 1_000_000
        except FileNotFoundError:
            continue
        if written_ms >= cutoff_ms:
            continue
        report.files.append(rotated)
        if not report.dry_run:
            rotated.unlink(missing_ok=True)
            log.info("retention removed %s", rotated)


def _prune_parquet(folder: Path, cutoff_ms: int, report: RetentionReport) -> None:
    from kaudit.exporters.parquet import PARQUET_KEY  # imports pyarrow: only when needed

    try:
        days = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("dt="))
    except FileNotFoundError:
        return
    for day_folder in days:
        try:
            day = date.fromisoformat(day_folder.name.removeprefix("dt="))
        except ValueError:
            continue  # not a day partition of ours
        day_end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
        if to_ms(day_end) > cutoff_ms:
            continue  # some of the day is younger than the cutoff
        for path in sorted(day_folder.iterdir()):
            if PARQUET_KEY.fullmatch(f"/{day_folder.name}/{path.name}"):
                report.files.append(path)
                if not report.dry_run:
                    path.unlink(missing_ok=True)
                    log.info("retention removed %s", path)
        if not report.dry_run and not any(day_folder.iterdir()):
            day_folder.rmdir()


class RetentionWorker:
    """Applies retention now and then every `every_s` until stopped (`kaudit run`)."""

    def __init__(self, config: Config, every_s: float = RUN_EVERY_S) -> None:
        self.config = config
        self.every_s = every_s
        self.last: RetentionReport | None = None
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(stop,), name="kaudit-retention", daemon=True
        )
        self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.last = apply_retention(self.config)
                self.last_error = None
            except (KauditError, OSError) as exc:
                # Kept running: a busy index or a file in use is tried again next time.
                self.last_error = str(exc)
                log.error("retention failed, trying again in %.0fs: %s", self.every_s, exc)
            stop.wait(self.every_s)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
