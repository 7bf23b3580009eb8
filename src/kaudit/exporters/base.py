"""The exporter contract and the runner that drives one exporter from the log.

An `Exporter` only knows how to deliver a batch of rendered events to its destination.
The `ExporterRunner` owns everything around it: reading from the cursor, selecting by
`events` / `exclude_events`, rendering in the destination's `format`, retrying with
exponential backoff and jitter when retrying can help, writing what the destination
refuses as invalid to a dead-letter file, and saving the cursor only after delivery
(for destinations without acknowledgements, only once delivery has settled) — so
delivery is at-least-once and the cursor never passes an undelivered event.
"""

from __future__ import annotations

import collections
import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec
import orjson

from kaudit.config import Config
from kaudit.config.model import Batching, Destination, KafkaLog
from kaudit.errors import EventDecodeError, ExporterError, RecordsRejectedError
from kaudit.events.codec import from_dict
from kaudit.events.filter import EventFilter
from kaudit.events.formats import render_bytes
from kaudit.log.cursor import Cursor, safe_name
from kaudit.log.segments import LogReader
from kaudit.retry import Backoff

log = logging.getLogger("kaudit.exporters")


class _Envelope(msgspec.Struct, gc=False):
    """What the runner reads of a line it passes on unchanged: the type its filter
    selects on and the integrity block with the sequence number. Decoding only these
    (the rest is checked as JSON and skipped) costs a tenth of decoding the event."""

    event_type: Any = None
    integrity: Any = None


_decode_envelope = msgspec.json.Decoder(_Envelope).decode


class Exporter(Protocol):
    """Delivers rendered events (one JSON document each, no newline) to a destination.

    An exporter that renders by itself (e.g. CloudEvents binary mode, where attributes
    become Kafka headers) sets `native_input = True` and is given the native canonical
    lines instead. An exporter with an `idle(delivered_through)` method has it called
    whenever the runner has caught up with the log, with the sequence number of the last
    event delivered (the S3 exporter uploads the heartbeat checkpoints then).
    """

    name: str

    def send(self, records: list[bytes]) -> None:
        """Deliver all of `records` or raise ExporterError (retryable or not)."""

    def close(self) -> None: ...


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


class Feed(Protocol):
    """Where a runner reads the log from, and how it saves its cursor."""

    def read(self, max_lines: int) -> tuple[list[bytes], Any]:
        """The next lines and a token that `commit` takes to move the cursor past them."""

    def commit(self, token: Any, sequence: int | None) -> None: ...

    def lag(self) -> int: ...

    def position(self) -> dict[str, Any] | None: ...

    def last_sequence(self) -> int | None: ...

    def close(self) -> None: ...


class LocalFeed:
    """The local segment log, with a cursor file (read once; this feed is its only
    writer, so the position is kept in memory and the file is only written)."""

    def __init__(self, log_dir: Path, cursor: Cursor) -> None:
        self.reader = LogReader(log_dir)
        self.cursor = cursor
        self._position = cursor.load()
        self._sequence = cursor.sequence()
        # Reading runs ahead of the saved position while delivered batches wait to be
        # settled (see ExporterRunner); with immediate commits the two stay equal.
        self._read_at = self._position

    def read(self, max_lines: int) -> tuple[list[bytes], Any]:
        lines, token = self.reader.read(self._read_at, max_lines)
        if lines:
            self._read_at = token
        return lines, token

    def rewind(self) -> None:
        """Read again from the saved position (what was read since was not delivered)."""
        self._read_at = self._position

    def commit(self, token: Any, sequence: int | None) -> None:
        self.cursor.save(token, sequence=sequence)
        self._position, self._sequence = token, sequence

    def lag(self) -> int:
        return sum(1 for _ in self.reader.iter_lines(self._position))

    def position(self) -> dict[str, Any] | None:
        at = self._position
        return None if at is None else {"segment": at.segment, "offset": at.offset}

    def last_sequence(self) -> int | None:
        return self._sequence

    def close(self) -> None:
        pass


_EMPTY_POLLS_BEFORE_IDLE = 30


class KafkaFeed:
    """The Kafka log topic, with a consumer group whose committed offsets are the cursor."""

    def __init__(self, config: KafkaLog, group: str, poll_s: float = 1.0) -> None:
        from kaudit.log.kafka import KafkaLogReader

        self.reader = KafkaLogReader(config, group=group)
        self.group = group
        self.poll_s = poll_s
        self._last_sequence: int | None = None

    def read(self, max_lines: int) -> tuple[list[bytes], Any]:
        records = self.reader.poll_batch(max_lines, self.poll_s)
        # An empty poll can mean a rebalance in progress rather than the end: say
        # "caught up" only when the group has nothing left to read.
        for _ in range(_EMPTY_POLLS_BEFORE_IDLE):
            if records or self.reader.lag() == 0:
                break
            records = self.reader.poll_batch(max_lines, self.poll_s)
        return [r.line for r in records], records

    def commit(self, token: Any, sequence: int | None) -> None:
        self.reader.commit(token)
        self._last_sequence = sequence

    def lag(self) -> int:
        return self.reader.lag()

    def position(self) -> dict[str, Any] | None:
        return {"consumer_group": self.group}

    def last_sequence(self) -> int | None:
        return self._last_sequence

    def close(self) -> None:
        self.reader.close()


class ExporterRunner:
    """Moves events from the log to one exporter, batch by batch, behind a durable cursor."""

    def __init__(
        self,
        exporter: Exporter,
        *,
        log_dir: Path | None = None,
        cursor: Cursor | None = None,
        feed: Feed | None = None,
        fmt: str = "native",
        events: tuple[str, ...] = ("*",),
        exclude_events: tuple[str, ...] = (),
        batch_max: int | None = None,
        interval_s: float = 1.0,
        linger_s: float = 0.0,
        dead_letter: Path | None = None,
        metrics_path: Path | None = None,
        max_backoff_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.exporter = exporter
        if feed is None:
            if log_dir is None or cursor is None:
                raise ValueError("ExporterRunner needs a feed, or log_dir and cursor")
            feed = LocalFeed(log_dir, cursor)
        self.feed = feed
        self.fmt = fmt
        self.filter = EventFilter(events, exclude_events)
        # Unless told, an exporter's own batch size (the search index: larger batches,
        # fewer commits), else 1000 lines.
        self.batch_max: int = (
            batch_max if batch_max is not None else getattr(exporter, "batch_max", 1000)
        )
        self.interval_s = interval_s
        self.linger_s = linger_s
        self.dead_letter = dead_letter
        self.metrics_path = metrics_path
        self.settle_timeout_s = 2.0
        self._published = float("-inf")
        self.max_backoff_s = max_backoff_s
        self.metrics = ExporterMetrics(last_sequence=feed.last_sequence())
        self._native_input = bool(getattr(exporter, "native_input", False))
        self._unsettled_since: Callable[[], float | None] | None = getattr(
            exporter, "unsettled_since", None
        )
        self._pending: collections.deque[tuple[float, Any, int | None]] = collections.deque()
        self._sleep = sleep
        # Set by run(); drain() never sets it, so a retry there goes on until it succeeds.
        self._stop = threading.Event()
        self._idle_hook: Callable[[int | None], None] | None = getattr(exporter, "idle", None)

    @property
    def name(self) -> str:
        return self.exporter.name

    def _render(self, line: bytes) -> tuple[bytes | None, int | None]:
        """(rendered record or None when not selected, the event's sequence number)."""
        if self.fmt == "native" or self._native_input:
            try:
                envelope = _decode_envelope(line)
            except msgspec.MsgspecError:
                pass  # not a JSON object: the full decode below says what is wrong
            else:
                integrity = envelope.integrity
                seq = integrity.get("sequence_number") if type(integrity) is dict else None
                if not self.filter(str(envelope.event_type)):
                    return None, seq
                return line.rstrip(b"\n"), seq
        obj = orjson.loads(line)
        seq = (obj.get("integrity") or {}).get("sequence_number") if isinstance(obj, dict) else None
        if not isinstance(obj, dict) or not self.filter(str(obj.get("event_type"))):
            return None, seq
        if self.fmt == "native" or self._native_input:
            return line.rstrip(b"\n"), seq
        return render_bytes(from_dict(obj), self.fmt), seq

    def run_once(self) -> int:
        """Deliver the next batch; the number of log lines consumed (0: caught up)."""
        self._commit_settled()
        lines, token = self.feed.read(self.batch_max)
        if not lines:
            return 0
        try:
            return self._process(lines, token)
        except BaseException:
            # Nothing after the saved position may be skipped by the next read.
            self._pending.clear()
            rewind = getattr(self.feed, "rewind", None)
            if rewind is not None:
                rewind()
            raise

    def _process(self, lines: list[bytes], token: Any) -> int:
        records: list[bytes] = []
        last_seq = self.metrics.last_sequence
        for line in lines:
            try:
                record, seq = self._render(line)
            except (orjson.JSONDecodeError, EventDecodeError) as exc:
                # Kept as a JSON string, so the dead-letter file stays valid JSON Lines.
                raw = orjson.dumps(line.rstrip(b"\n").decode("utf-8", "backslashreplace"))
                self._dead_letter([raw], f"unreadable log line: {exc}")
                continue
            if seq is not None:
                last_seq = seq
            if record is None:
                self.metrics.skipped += 1
            else:
                records.append(record)
        if records:
            self._deliver(records)
        self.metrics.last_sequence = last_seq
        if self._unsettled_since is None:
            self.feed.commit(token, last_seq)
        else:
            self._pending.append((time.monotonic(), token, last_seq))
            self._commit_settled()
        return len(lines)

    def _commit_settled(self) -> None:
        """Save the cursor past the delivered batches the destination holds as settled.

        A destination without acknowledgements of its own (syslog over TCP/TLS) keeps
        what it sent lately "in doubt" and sends it again if the connection turns out to
        have closed; its `unsettled_since()` is when the oldest data still in doubt was
        sent. The cursor stays before that data, so a kaudit killed meanwhile sends it
        again after its restart instead of losing it.
        """
        if not self._pending or self._unsettled_since is None:
            return
        oldest = self._unsettled_since()
        settled = None
        while self._pending and (oldest is None or self._pending[0][0] < oldest):
            settled = self._pending.popleft()
            if not isinstance(self.feed, LocalFeed):
                self.feed.commit(settled[1], settled[2])
        if settled is not None and isinstance(self.feed, LocalFeed):
            # One save covers every batch before it in a local log.
            self.feed.commit(settled[1], settled[2])

    def _idle(self) -> None:
        """Caught up: let the exporter do what waits for a quiet moment. A failure is
        retried at the next one (nothing is lost meanwhile), so it only shows in metrics."""
        if self._idle_hook is None:
            return
        try:
            self._idle_hook(self.metrics.last_sequence)
        except ExporterError as exc:
            self.metrics.last_error = str(exc)
            log.warning("%s: %s", self.name, exc)

    def settle(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for delivered batches to settle and save the cursor."""
        deadline = time.monotonic() + timeout_s
        self._commit_settled()
        while self._pending and time.monotonic() < deadline:
            time.sleep(0.05)
            self._commit_settled()

    def _deliver(self, records: list[bytes]) -> None:
        backoff = Backoff(0.2, self.max_backoff_s, jitter=True)
        while True:
            try:
                self.exporter.send(records)
            except RecordsRejectedError as exc:
                self.metrics.failed += 1
                self.metrics.last_error = str(exc)
                log.error(
                    "%s refused %d of %d records: %s",
                    self.name,
                    len(exc.rejected),
                    len(records),
                    exc,
                )
                rejected = set(exc.rejected)
                self._dead_letter([records[i] for i in sorted(rejected)], str(exc))
                self.metrics.sent += len(records) - len(rejected)
                return
            except ExporterError as exc:
                self.metrics.failed += 1
                self.metrics.last_error = str(exc)
                if not exc.retryable:
                    log.error("%s refused a batch of %d: %s", self.name, len(records), exc)
                    self._dead_letter(records, str(exc))
                    return
                self.metrics.retried += 1
                log.warning("%s failed, retrying in %.1fs: %s", self.name, backoff.step_s, exc)
                self._sleep(backoff.next_wait())
                if self._stop.is_set():
                    raise
                continue
            self.metrics.sent += len(records)
            self.metrics.last_error = None
            return

    def _dead_letter(self, records: list[bytes], reason: str) -> None:
        self.metrics.dead_lettered += len(records)
        if self.dead_letter is None:
            log.error(
                "%s dropped %d records with no dead-letter file: %s",
                self.name,
                len(records),
                reason,
            )
            return
        self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
        with open(self.dead_letter, "ab") as f:
            for record in records:
                f.write(orjson.dumps({"reason": reason, "record": orjson.Fragment(record)}))
                f.write(b"\n")

    def drain(self) -> int:
        """Deliver until caught up with the log; the number of log lines consumed."""
        total = 0
        while n := self.run_once():
            total += n
        self.settle(self.settle_timeout_s)
        self._idle()
        return total

    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set, polling the log every `interval_s` when idle.

        With `linger_s`, a batch smaller than `batch_max` waits until its first event has
        waited `linger_s` (the destination's `batch_interval_secs`), so a trickle of
        events becomes a few large batches (S3 objects) instead of many small ones.
        """
        self._stop = stop
        waiting_since: float | None = None
        try:
            while not stop.is_set():
                self.publish_metrics()
                self._commit_settled()
                if self.linger_s > 0:
                    waited, waiting_since = self._linger(waiting_since)
                    if waited:
                        continue
                if self.run_once() == 0:
                    self._idle()
                    stop.wait(self.interval_s)
        except ExporterError:
            # Retryable failure while stopping: the cursor has not moved, nothing lost.
            return
        finally:
            self.settle(self.settle_timeout_s)
            self.publish_metrics(force=True)

    def publish_metrics(self, force: bool = False) -> None:
        """Write the metrics to `metrics_path` (at most once a second unless `force`), for
        `kaudit exporters status` to show what a running `kaudit run` has done."""
        now = time.monotonic()
        if self.metrics_path is None or (not force and now - self._published < 1.0):
            return
        self._published = now
        body = {
            "sent": self.metrics.sent,
            "failed": self.metrics.failed,
            "retried": self.metrics.retried,
            "dead_lettered": self.metrics.dead_lettered,
            "skipped": self.metrics.skipped,
            "last_error": self.metrics.last_error,
            "last_sequence": self.metrics.last_sequence,
            "updated": time.time(),
        }
        try:
            self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.metrics_path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(body))
            tmp.replace(self.metrics_path)
        except OSError as exc:
            log.warning("%s: cannot write metrics to %s: %s", self.name, self.metrics_path, exc)

    def _linger(self, waiting_since: float | None) -> tuple[bool, float | None]:
        """(whether it waited instead of sending, when the pending batch started waiting)."""
        pending = self.feed.lag()
        if pending == 0:
            self._idle()
            self._stop.wait(self.interval_s)
            return True, None
        if pending >= self.batch_max:
            return False, None
        now = time.monotonic()
        since = now if waiting_since is None else waiting_since
        left = self.linger_s - (now - since)
        if left <= 0:
            return False, None
        self._stop.wait(min(left, self.interval_s))
        return True, since

    def lag(self) -> int:
        """Log lines not yet consumed by this exporter."""
        return self.feed.lag()

    def close(self) -> None:
        self.exporter.close()
        self.feed.close()


_EXPORTERS: dict[str, str] = {
    "file": "kaudit.exporters.file:FileExporter",
    "kafka": "kaudit.exporters.kafka:KafkaExporter",
    "store": "kaudit.exporters.store:StoreExporter",
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
    runners = []
    log_config = config.audit.log
    for destination in config.audit.all_destinations:
        exporter = build_exporter(destination, config.data_path, config)
        batch_max, linger_s = batching(destination)
        name = destination.display_name
        feed: Feed = (
            KafkaFeed(log_config, group=f"kaudit-exporter-{_safe(name)}")
            if isinstance(log_config, KafkaLog)
            else LocalFeed(config.log_dir, Cursor.named(config.data_path, name))
        )
        runners.append(
            ExporterRunner(
                exporter,
                feed=feed,
                fmt=destination.format,
                events=tuple(destination.events),
                exclude_events=tuple(destination.exclude_events),
                batch_max=batch_max,
                linger_s=linger_s,
                # A short linger is also how quickly new events are noticed.
                interval_s=min(1.0, linger_s) if linger_s > 0 else 1.0,
                dead_letter=config.data_path / "dead-letter" / f"{_safe(name)}.jsonl",
                metrics_path=metrics_path(config, name),
            )
        )
    return runners


def metrics_path(config: Config, name: str) -> Path:
    """Where `kaudit run` keeps the latest metrics of the destination called `name`."""
    return config.data_path / "exporters" / f"{_safe(name)}.metrics.json"


def _safe(name: str) -> str:
    return safe_name(name)


def drain_all(config: Config) -> dict[str, int]:
    """Deliver what is in the log now to every configured destination, then close them;
    the log lines each one consumed, by destination name."""
    counts: dict[str, int] = {}
    for runner in runners_for(config):
        try:
            counts[runner.name] = runner.drain()
        finally:
            runner.close()
    return counts
