"""The alert engine: reads the audit log behind its own durable cursor, judges each event
once, saves what the rules decided, records each alert in the audit log and sends its
notifications until they are delivered.

It reads like an exporter (the exporters' `LocalFeed` / `KafkaFeed` with a cursor named
`kaudit-alerts`), but a batch's work is saved in the state store first (group windows,
new alerts, their pending notifications and, on the local log, the reading position
reached, in one transaction) and the cursor after; a restart reads the local log from
the position saved with the work, so a stop between the two repeats nothing. The
position is where reading got to in the segments, never a number read from a line: the
content of the log cannot make a restart skip events. `alert.fired` and
`alert.resolved` are recorded through `record` (the session's recorder, handed in by
whoever runs the engine: the engine itself never imports the write path) and marked
recorded once durable. Notifications go out from a delivery loop of their own, so a slow
or failing target never holds up judging; a failed one stays pending and is tried again
with backoff (and as soon as the target's Retry-After allows), never dropped.

The counters on `AlertEngine.counters` (alerts fired and resolved, notifications sent
and failed, events judged) are for metrics to read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import msgspec
import orjson

from kaudit.alerts.notifiers import Notifier, build_notifier
from kaudit.alerts.probes import ChainWatch, Probes
from kaudit.alerts.rules import MAX_GROUPS_PER_RULE, Evaluator
from kaudit.alerts.ruleset import CompiledRule, compile_rules
from kaudit.alerts.state import AlertRecord, StateStore
from kaudit.config import Config
from kaudit.config.alerts import alert_warnings
from kaudit.config.model import KafkaLog
from kaudit.config.secrets import mask
from kaudit.errors import ExporterError, LogError
from kaudit.exporters.feeds import Feed, KafkaFeed, LocalFeed
from kaudit.log.cursor import Cursor
from kaudit.log.segments import Position

__all__ = ["CURSOR_NAME", "AlertCounters", "AlertEngine", "Record", "has_rules", "state_path"]

log = logging.getLogger("kaudit.alerts")

CURSOR_NAME = "kaudit-alerts"

Record = Callable[[str, Mapping[str, Any]], None]
"""Records one event in the audit log durably: (event type, the emit keywords)."""


class _Envelope(msgspec.Struct, gc=False):
    """What the engine reads of every line: its type (most types match no rule) and
    its sequence number; the rest is decoded only for lines a rule may match."""

    event_type: Any = None
    integrity: Any = None


_decode_envelope = msgspec.json.Decoder(_Envelope).decode


@dataclass
class AlertCounters:
    """What the engine has done since it started (for metrics)."""

    events_judged: int = 0
    alerts_fired: int = 0
    alerts_resolved: int = 0
    notifications_sent: int = 0
    notifications_failed: int = 0
    events_over_group_limit: int = 0
    """Events counted in a rule's overflow group (the rule kept the most groups)."""
    lines_unnumbered: int = 0
    """Lines without an integer sequence number, not judged (not the writer's)."""

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def state_path(config: Config) -> Path:
    """The engine's state store."""
    return config.data_path / "alerts" / "state.sqlite"


def has_rules(config: Config) -> bool:
    """Whether the configuration asks for any alert rule (configured or built in)."""
    return bool(compile_rules(config.audit.alerts, config.audit.builtin_alerts))


def _feed(config: Config) -> Feed:
    log_config = config.audit.log
    if isinstance(log_config, KafkaLog):
        return KafkaFeed(log_config, group=CURSOR_NAME)
    return LocalFeed(config.log_dir, Cursor.named(config.data_path, CURSOR_NAME))


class AlertEngine:
    """Judges the log against the configured rules and delivers the alerts."""

    def __init__(
        self,
        config: Config,
        *,
        record: Record | None = None,
        feed: Feed | None = None,
        poll_s: float = 0.2,
        batch_max: int = 5000,
        probe_every_s: float = 15.0,
        max_backoff_s: float = 300.0,
        on_fired: Callable[[str], None] | None = None,
        on_notification_failed: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        # Metrics, by rule name and by notifier kind (kaudit.ops.metrics when served).
        self._on_fired = on_fired or (lambda rule: None)
        self._on_notification_failed = on_notification_failed or (lambda kind: None)
        self.rules: list[CompiledRule] = compile_rules(
            config.audit.alerts, config.audit.builtin_alerts
        )
        self.evaluator = Evaluator(self.rules, projected=True)
        self.store = StateStore(state_path(config))
        self.evaluator.load(self.store.groups())
        self.feed = feed if feed is not None else _feed(config)
        self._reached: int | None = self.store.meta("last_sequence")
        """The highest sequence number reached through consecutive ones, saved as
        `last_sequence` and shown with the cursor; only shown: a restart resumes at the
        saved position, whatever numbers the lines carry."""
        if isinstance(self.feed, LocalFeed):
            self._resume(self.feed)
        self._previous: int | None = None
        """The sequence number of the line read last."""
        self._numbered = isinstance(self.feed, LocalFeed | KafkaFeed)
        """Whether every line of the log carries a sequence number (kaudit's own logs)."""
        self.record = record
        self.poll_s = poll_s
        self.batch_max = batch_max
        self.max_backoff_s = max_backoff_s
        self.counters = AlertCounters()
        self.probes = Probes(config, self.evaluator, every_s=probe_every_s)
        self.chain = (
            ChainWatch(self.evaluator, self.store.meta("chain_tail"))
            if self.probes.integrity is not None
            else None
        )
        self._notifiers: dict[tuple[str, int], Notifier] = {}
        self._wake_delivery = threading.Event()
        self.warnings = alert_warnings(config.audit.alerts, config.audit.builtin_alerts)
        self.save_every_s = 30.0
        self.save_every_lines = 250_000
        self._saved_at = 0.0
        self._unsaved_lines = 0
        self._unsaved_seq: int | None = None
        self._unsaved_token: Any = None
        self._held: list[AlertRecord] = []
        """Alerts raised in batches not saved yet (while catching up)."""

    # -- judging -----------------------------------------------------------------------

    def run_once(self) -> int:
        """Judge the next batch of the log; the number of lines read (0: caught up)."""
        lines, token = self.feed.read(self.batch_max)
        alerts: list[AlertRecord] = []
        reached, previous = self._reached, self._previous
        numbered = self._numbered
        evaluator = self.evaluator
        chain = self.chain
        # Every line is decoded once, into what the rules read (the evaluator's
        # projection). When some condition is left to rule-engine (which may read
        # anything): when some rule is judged on every event, every line is decoded
        # whole; else only its type and sequence number, and the rest when a rule may
        # match.
        projection = evaluator.projection
        whole = evaluator.judges_every_type
        loads, decode = orjson.loads, _decode_envelope
        judged = unnumbered = 0
        integrity: Any
        for line in lines:
            event: Any = None
            try:
                if projection is not None:
                    event = projection.decode(line)
                    event_type, integrity = event.event_type, event.integrity
                elif whole:
                    event = loads(line)
                    if type(event) is not dict:
                        continue  # not an event: the verifier reports such lines
                    event_type, integrity = event.get("event_type"), event.get("integrity")
                else:
                    envelope = decode(line)
                    event_type, integrity = envelope.event_type, envelope.integrity
            except (msgspec.MsgspecError, orjson.JSONDecodeError):
                continue
            seq = integrity.get("sequence_number") if type(integrity) is dict else None
            if type(seq) is int:
                if reached is None or seq == reached + 1:
                    reached = seq
                elif previous is not None and seq == previous + 1 and seq > reached:
                    reached = seq  # the log goes on past a gap (the chain watch says so)
                previous = seq
                if chain is not None:
                    broken = chain.check(integrity)
                    if broken is not None:
                        alerts.append(broken)
            elif numbered or reached is not None:
                # Not a line the writer wrote: a break in the chain, and not judged.
                unnumbered += 1
                if chain is not None:
                    broken = chain.unnumbered()
                    if broken is not None:
                        alerts.append(broken)
                continue
            candidates = evaluator.candidates(event_type)
            if candidates is None:
                continue
            judged += 1
            if event is None:
                event = loads(line)
            raised = evaluator.judge(event, candidates, line if projection is not None else None)
            if raised:
                alerts += raised
        self.counters.events_judged += judged
        self._previous = previous
        if unnumbered:
            self.counters.lines_unnumbered += unnumbered
            log.warning(
                "alerts: %d lines without an integer integrity.sequence_number (not written "
                "by the log's writer) were not judged",
                unnumbered,
            )
        if reached != self._reached:
            self._reached = self._unsaved_seq = reached
        if lines:
            self._unsaved_token = token
        # While catching up on a backlog, state (with the alerts raised) and cursor are
        # saved every `save_every_lines` lines or `save_every_s` seconds, whichever comes
        # first (saving writes every changed window, so counting lines keeps its cost per
        # event the same however slow the machine is): until then a stop loses nothing,
        # as judging resumes from the state and position saved before. Once caught up,
        # after every read.
        self._unsaved_lines += len(lines)
        caught_up = len(lines) < self.batch_max
        if (
            caught_up
            or self._unsaved_lines >= self.save_every_lines
            or time.monotonic() - self._saved_at >= self.save_every_s
        ):
            self._unsaved_lines = 0
            alerts, self._held = self._held + alerts, []
            alerts += evaluator.sweep(None if lines else self._now())
            alerts += self.probes.run_if_due(time.time())
            seq = self._unsaved_seq
            token = self._unsaved_token
            self._save(alerts, seq, token if isinstance(token, Position) else None)
            if self._unsaved_token is not None:
                self.feed.commit(self._unsaved_token, seq)
                self._unsaved_token = None
            self._saved_at = time.monotonic()
            if alerts:
                self._wake_delivery.set()
            self.record_pending()
        else:
            self._held += alerts
        return len(lines)

    def _now(self) -> float | None:
        """The clock windows slide by when the log is idle: wall time for a live log
        (events stop arriving, the windows still empty)."""
        return time.time()

    def _resume(self, feed: LocalFeed) -> None:
        """Read the local log from the position saved with the engine's work (at or
        past the cursor file, which is saved after the work)."""
        saved = self.store.meta("position")
        if isinstance(saved, list) and len(saved) == 2 and all(type(n) is int for n in saved):
            feed.seek(Position(saved[0], saved[1]))
            return
        if saved is not None:
            raise LogError(
                f"alerts state {self.store.path}: saved position {saved!r} is not "
                "[segment, offset]; move the file aside to judge the log from the cursor"
            )
        if self.store.meta("last_sequence") is not None:
            log.warning(
                "alerts: the state in %s is from an earlier kaudit and holds no position "
                "in the log; resuming at the cursor %s (if it stopped between saving the "
                "two, the events of its last batch are judged again)",
                self.store.path,
                feed.cursor.path,
            )

    def _save(
        self, alerts: list[AlertRecord], last_seq: int | None, position: Position | None
    ) -> None:
        changed = self.evaluator.changed()
        if not alerts and not changed and last_seq is None and position is None:
            return
        self._unsaved_seq = None
        over = sum(self.evaluator.overflowed.values())
        if over > self.counters.events_over_group_limit:
            log.warning(
                "alerts: %d events counted in overflow groups (%s): a rule keeps at most %d groups",
                over,
                ", ".join(sorted(self.evaluator.overflowed)),
                MAX_GROUPS_PER_RULE,
            )
            self.counters.events_over_group_limit = over
        meta: dict[str, Any] = {"counters": self.counters.as_dict()}
        if last_seq is not None:
            meta["last_sequence"] = last_seq
        if position is not None:
            meta["position"] = [position.segment, position.offset]
        if self.chain is not None and self.chain.tail is not None:
            meta["chain_tail"] = self.chain.tail
        self.store.save_batch(meta=meta, groups=changed, alerts=alerts)
        for alert in alerts:
            if alert.status == "resolved":
                self.counters.alerts_resolved += 1
            else:
                self.counters.alerts_fired += 1
                self._on_fired(alert.rule)
            log.warning(
                "alert %s %s%s: %d events",
                alert.rule,
                alert.status,
                f" ({alert.group})" if alert.group else "",
                alert.count,
            )

    def record_pending(self) -> None:
        """Put each saved alert not yet in the audit log there (`alert.fired` /
        `alert.resolved`), marking it once the recorder has made it durable."""
        if self.record is None:
            return
        for alert in self.store.unrecorded():
            info = alert.data["alert"]
            event_type = "alert.resolved" if alert.status == "resolved" else "alert.fired"
            try:
                self.record(
                    event_type,
                    {
                        "actor": {"type": "service", "id": "kaudit-alerts"},
                        "resource": {"type": "alert_rule", "id": alert.rule},
                        "details": {
                            "rule": alert.rule,
                            "group": info["group"],
                            "count": alert.count,
                            "threshold": info["threshold"],
                            "window_s": info["window_s"],
                            "severity": info["severity"],
                            "dedup_key": alert.dedup_key,
                            "event_ids": info["event_ids"],
                            "first_at": info["first_at"],
                            "last_at": info["last_at"],
                            "repeat": info["repeat"],
                        },
                    },
                )
            except Exception as exc:  # the recorder's own failure policy decides; retried
                log.warning("alert %s: cannot record %s yet: %s", alert.rule, event_type, exc)
                return
            assert alert.id is not None
            self.store.mark_recorded(alert.id)

    def drain(self) -> int:
        """Judge until caught up with the log; the number of lines read."""
        total = 0
        while n := self.run_once():
            total += n
        return total

    # -- delivering ----------------------------------------------------------------------

    def _notifier(self, rule: str, target: int) -> Notifier | None:
        key = (rule, target)
        notifier = self._notifiers.get(key)
        if notifier is None:
            compiled = self.evaluator.rules.get(rule)
            if compiled is None or target >= len(compiled.notify):
                return None
            notifier = self._notifiers[key] = build_notifier(compiled.notify[target])
        return notifier

    def deliver_due(self, now: float | None = None) -> int:
        """Try every notification that is due; the number delivered."""
        now = time.time() if now is None else now
        delivered = 0
        for pending in self.store.due(now):
            alert = pending.alert
            notifier = self._notifier(alert.rule, pending.target)
            if notifier is None:
                # The rule or target is no longer configured: kept, said, tried later.
                error = "its rule or target is no longer configured"
                self.store.failed(pending.id, error, now + self.max_backoff_s)
                self.counters.notifications_failed += 1
                self._on_notification_failed(pending.target_type)
                continue
            try:
                notifier.send(alert)
            except ExporterError as exc:
                self.counters.notifications_failed += 1
                self._on_notification_failed(pending.target_type)
                wait = self._backoff(pending.attempts, exc)
                reason = mask(str(exc))
                self.store.failed(pending.id, reason, now + wait)
                log.warning(
                    "alert %s: %s notification failed (attempt %d, next in %.1f s): %s",
                    alert.rule,
                    pending.target_type,
                    pending.attempts + 1,
                    wait,
                    reason,
                )
                continue
            self.store.sent(pending.id)
            self.counters.notifications_sent += 1
            delivered += 1
        return delivered

    def _backoff(self, attempts: int, exc: ExporterError) -> float:
        """Seconds before the next try: what the receiver asked for, else doubling from
        1 s (from 30 s when retrying cannot help until someone fixes the target)."""
        asked = getattr(exc, "retry_after", None)
        if isinstance(asked, int | float):
            return min(float(asked), self.max_backoff_s)
        first = 1.0 if exc.retryable else 30.0
        return min(first * 2.0 ** min(attempts, 20), self.max_backoff_s)

    def _deliver_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.deliver_due()
            except Exception:
                log.exception("alert delivery failed; trying again")
            due = self.store.next_due()
            wait = 5.0 if due is None else min(max(due - time.time(), 0.0), 5.0)
            if self._wake_delivery.wait(wait):
                self._wake_delivery.clear()

    # -- running -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Judge and deliver until `stop` is set."""
        for warning in self.warnings:
            log.warning("%s", warning)
        delivery = threading.Thread(
            target=self._deliver_loop, args=(stop,), name="alerts-delivery", daemon=True
        )
        delivery.start()
        try:
            while not stop.is_set():
                try:
                    if self.run_once() == 0:
                        stop.wait(self.poll_s)
                except ExporterError as exc:
                    log.warning("alerts: %s", mask(str(exc)))
                    stop.wait(1.0)
        finally:
            self._wake_delivery.set()
            delivery.join()

    def close(self) -> None:
        for notifier in self._notifiers.values():
            notifier.close()
        self.feed.close()
        self.store.close()
