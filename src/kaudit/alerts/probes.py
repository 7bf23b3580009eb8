"""The built-in rules whose facts are not events, checked every `every_s` seconds:

- `log_integrity`: the local log's newest checkpoint promised a heartbeat that is now
  overdue by more than `grace` (the writer stopped sealing: the log may be frozen or cut
  back), while the stream was not closed cleanly; and, as the engine reads, `ChainWatch`
  checks each event against the one before it (consecutive sequence numbers, the HMAC
  chain's `previous_signature` link): a gap or a broken link is what `kaudit verify`
  would report, seen as it happens;
- `exporter_lag`: a destination more than `max_events` lines behind the local log.

Each fact is handed to `Evaluator.observe`, which fires when it starts to hold and
resolves when it stops. Only the local log is probed; a Kafka log's checkpoints and
consumer lag are watched by `kaudit verify` and the consumer group's own metrics.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, timedelta
from typing import Any

from kaudit.alerts.rules import Evaluator
from kaudit.alerts.state import AlertRecord
from kaudit.config import Config
from kaudit.config.model import KafkaLog
from kaudit.exporters.feeds import LocalFeed
from kaudit.integrity.checkpoint import Checkpoint
from kaudit.integrity.store import last_checkpoint
from kaudit.log.cursor import Cursor

__all__ = ["ChainWatch", "Probes"]

log = logging.getLogger("kaudit.alerts")


def _checkpoint_body(note: bytes) -> bytes:
    """The checkpoint text of a signed note (the part before the signature lines)."""
    body, _, _ = note.partition(b"\n\n")
    return body + b"\n"


class Probes:
    def __init__(self, config: Config, evaluator: Evaluator, every_s: float) -> None:
        self.config = config
        self.evaluator = evaluator
        self.every_s = every_s
        self._next = 0.0
        builtin = config.audit.builtin_alerts
        local = not isinstance(config.audit.log, KafkaLog)
        self.integrity = builtin.log_integrity if builtin.log_integrity.enabled and local else None
        self.lag = builtin.exporter_lag if builtin.exporter_lag.enabled and local else None

    def run_if_due(self, now: float) -> list[AlertRecord]:
        if (self.integrity is None and self.lag is None) or now < self._next:
            return []
        self._next = now + self.every_s
        alerts: list[AlertRecord] = []
        if self.integrity is not None:
            alerts += self._heartbeat(now, self.integrity.grace)
        if self.lag is not None:
            alerts += self._lag(now, self.lag.max_events)
        return alerts

    def _heartbeat(self, now: float, grace: float) -> list[AlertRecord]:
        stored = last_checkpoint(self.config.log_dir)
        if stored is None:
            return []
        try:
            checkpoint = Checkpoint.from_body(_checkpoint_body(stored.note))
        except ValueError as exc:
            log.warning("alerts: the newest checkpoint cannot be read: %s", exc)
            return []
        when, beat = checkpoint.time, checkpoint.heartbeat
        holds = False
        facts: dict[str, object] = {"event_type": "integrity.heartbeat_missing"}
        if when is not None and beat is not None and not checkpoint.closed:
            due = when.astimezone(UTC) + timedelta(seconds=beat + grace)
            holds = now > due.timestamp()
            facts |= {
                "details": {
                    "checkpoint_time": when.isoformat(),
                    "heartbeat_s": beat,
                    "tree_size": checkpoint.size,
                    "overdue_since": due.isoformat(),
                },
                "resource": {"type": "log", "id": str(self.config.log_dir)},
            }
        alert = self.evaluator.observe("log_integrity", "heartbeat", holds, now, facts)
        return [alert] if alert is not None else []

    def _lag(self, now: float, limit: int) -> list[AlertRecord]:
        alerts = []
        for destination in self.config.audit.all_destinations:
            name = destination.display_name
            feed = LocalFeed(self.config.log_dir, Cursor.named(self.config.data_path, name))
            behind = feed.lag()
            facts = {
                "event_type": "exporter.lagging",
                "resource": {"type": "destination", "id": name},
                "details": {"lag_events": behind, "max_events": limit},
            }
            alert = self.evaluator.observe("exporter_lag", name, behind > limit, now, facts)
            if alert is not None:
                alerts.append(alert)
        return alerts


class ChainWatch:
    """Checks the log's sequence numbers and HMAC links as the engine reads them; the
    first break fires `log_integrity` (group `chain`) with where it is. A line without
    an integer sequence number (which the writer never writes) is a break too."""

    def __init__(self, evaluator: Evaluator, tail: list[Any] | None) -> None:
        self.evaluator = evaluator
        self.sequence: int | None = tail[0] if tail else None
        self.signature: str | None = tail[1] if tail else None

    def check(self, integrity: dict[str, Any]) -> AlertRecord | None:
        seq = integrity.get("sequence_number")
        if type(seq) is not int:
            return None
        signature = integrity.get("signature")
        link = integrity.get("previous_signature")
        problem = None
        if self.sequence is not None:
            if seq != self.sequence + 1:
                problem = f"sequence number {seq} follows {self.sequence}"
            elif self.signature is not None and link != self.signature:
                problem = f"event {seq} does not link to the signature of event {self.sequence}"
        self.sequence, self.signature = seq, signature if isinstance(signature, str) else None
        if problem is None:
            return None
        return self._broken(problem, seq)

    def unnumbered(self) -> AlertRecord | None:
        """A line without an integer sequence number, read where one was due."""
        where = "" if self.sequence is None else f" follows event {self.sequence}"
        return self._broken(f"a line without an integer integrity.sequence_number{where}", None)

    def _broken(self, problem: str, seq: int | None) -> AlertRecord | None:
        facts = {
            "event_type": "integrity.chain_broken",
            "resource": {"type": "log", "id": "audit log"},
            "details": {"problem": problem, "sequence_number": seq},
        }
        return self.evaluator.observe("log_integrity", "chain", True, time.time(), facts)

    @property
    def tail(self) -> list[Any] | None:
        """What to save, to go on checking after a restart."""
        return None if self.sequence is None else [self.sequence, self.signature]
