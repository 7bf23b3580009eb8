"""The runner that drives one exporter from the log, batch by batch, behind a cursor.

The `ExporterRunner` owns everything around an `Exporter`: reading from its feed,
selecting by `events` / `exclude_events`, rendering in the destination's `format`,
batching (with `linger_s`, a trickle of events waits to become larger batches),
retrying with exponential backoff and jitter when retrying can help, writing what the
destination refuses as invalid to a dead-letter file, and saving the cursor only after
delivery (for destinations without acknowledgements, only once delivery has settled) —
so delivery is at-least-once and the cursor never passes an undelivered event.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson

from kaudit.config.secrets import mask
from kaudit.errors import EventDecodeError, ExporterError, RecordsRejectedError
from kaudit.events.codec import from_dict
from kaudit.events.filter import EventFilter
from kaudit.events.formats import render_bytes
from kaudit.exporters.base import Exporter
from kaudit.exporters.feeds import Feed, LocalFeed
from kaudit.exporters.metrics import ExporterMetrics, write_metrics
from kaudit.files import open_private
from kaudit.log.cursor import Cursor
from kaudit.retry import Backoff

log = logging.getLogger("kaudit.exporters")


class _Envelope(msgspec.Struct, gc=False):
    """What the runner reads of a line it passes on unchanged: the type its filter
    selects on and the integrity block with the sequence number. Decoding only these
    (the rest is checked as JSON and skipped) costs a tenth of decoding the event."""

    event_type: Any = None
    integrity: Any = None


_decode_envelope = msgspec.json.Decoder(_Envelope).decode


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
        sleep: Callable[[float], None] | None = None,
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
        # Set by run(); drain() never sets it, so a retry there goes on until it succeeds
        # or, given `retries`, until it gives up.
        self._stop = threading.Event()
        self._retries: int | None = None
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
            self.metrics.last_error = mask(str(exc))
            log.warning("%s: %s", self.name, self.metrics.last_error)

    def settle(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for delivered batches to settle and save the cursor."""
        deadline = time.monotonic() + timeout_s
        self._commit_settled()
        while self._pending and time.monotonic() < deadline:
            time.sleep(0.05)
            self._commit_settled()

    def _deliver(self, records: list[bytes]) -> None:
        backoff = Backoff(0.2, self.max_backoff_s, jitter=True)
        retried = 0
        while True:
            try:
                self.exporter.send(records)
            except RecordsRejectedError as exc:
                self.metrics.failed += 1
                self.metrics.last_error = reason = mask(str(exc))
                log.error(
                    "%s refused %d of %d records: %s",
                    self.name,
                    len(exc.rejected),
                    len(records),
                    reason,
                )
                rejected = set(exc.rejected)
                self._dead_letter([records[i] for i in sorted(rejected)], reason)
                self.metrics.sent += len(records) - len(rejected)
                return
            except ExporterError as exc:
                self.metrics.failed += 1
                self.metrics.last_error = reason = mask(str(exc))
                if not exc.retryable:
                    log.error("%s refused a batch of %d: %s", self.name, len(records), reason)
                    self._dead_letter(records, reason)
                    return
                if self._retries is not None and retried >= self._retries:
                    self.publish_metrics(force=True)
                    raise  # a batch run gives up: the cursor stays before this batch
                retried += 1
                self.metrics.retried += 1
                self.publish_metrics()  # `exporters status` shows why it is stuck
                log.warning("%s failed, retrying in %.1fs: %s", self.name, backoff.step_s, reason)
                # A stop (SIGTERM) ends the wait: the cursor has not moved, nothing is lost.
                if self._sleep is None:
                    self._stop.wait(backoff.next_wait())
                else:
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
        with open_private(self.dead_letter, "ab") as f:
            for record in records:
                f.write(orjson.dumps({"reason": reason, "record": orjson.Fragment(record)}))
                f.write(b"\n")

    def drain(self, retries: int | None = None) -> int:
        """Deliver until caught up with the log; the number of log lines consumed. With
        `retries`, a batch still failing after that many retries raises its
        ExporterError (the cursor stays before it); without, it is retried until it goes."""
        self._retries = retries
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
        write_metrics(self.metrics_path, self.metrics, self.name)

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
