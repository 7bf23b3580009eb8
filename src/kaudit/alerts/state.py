"""The alert engine's memory: one SQLite file (`<data_dir>/alerts/state.sqlite`).

It holds, changed together in one transaction per batch of the log:
- `meta`: on the local log, the position the rules have read to (a restart resumes
  there, even when the log cursor was not yet saved), the sequence number reached, the
  chain's tail and the engine's counters;
- `groups`: each (rule, group)'s window and firing state (`GroupState` as JSON);
- `alerts`: every firing and resolution, with its count, the ids of its events and the
  data its templates render, and whether its `alert.fired`/`alert.resolved` event is in
  the audit log yet;
- `notifications`: the notification log: one row per alert and target, pending until
  the target took it, with attempts, the next try and the last error. A row is never
  deleted by failing: it is retried until it is sent.

So a restart neither repeats an alert (its firing is saved with the position it came
from) nor loses one (a firing saved but not yet sent is still pending).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["AlertRecord", "PendingNotification", "StateStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS groups (
    rule TEXT NOT NULL, grp TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (rule, grp));
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, rule TEXT NOT NULL, grp TEXT NOT NULL, dedup_key TEXT NOT NULL,
    status TEXT NOT NULL, at REAL NOT NULL, created REAL NOT NULL, count INTEGER NOT NULL,
    data TEXT NOT NULL, recorded INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY, alert_id INTEGER NOT NULL REFERENCES alerts(id),
    target INTEGER NOT NULL, target_type TEXT NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL, last_error TEXT,
    sent_at REAL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (status, next_try);
"""


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """A firing (`fired`, `repeat`) or resolution (`resolved`) of one rule and group."""

    rule: str
    group: str
    dedup_key: str
    status: str
    at: float
    count: int
    data: dict[str, Any]
    """What templates render and the alert.fired event carries."""
    targets: tuple[str, ...]
    """The type of each notify target of the rule, in order."""
    id: int | None = None


@dataclass(frozen=True, slots=True)
class PendingNotification:
    id: int
    alert: AlertRecord
    target: int
    target_type: str
    attempts: int


class StateStore:
    """The SQLite file, used from the engine's thread and its delivery thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    # -- reading -------------------------------------------------------------------------

    def meta(self, key: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def groups(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Every saved (rule, group, state)."""
        with self._lock:
            rows = self._db.execute("SELECT rule, grp, state FROM groups").fetchall()
        for rule, group, state in rows:
            yield rule, group, orjson.loads(state)

    # -- one batch, in one transaction ---------------------------------------------------

    def save_batch(
        self,
        *,
        meta: dict[str, Any],
        groups: Iterable[tuple[str, str, dict[str, Any] | None]],
        alerts: Iterable[AlertRecord],
    ) -> list[AlertRecord]:
        """Save what one batch changed: `meta` values, group states (None: forget the
        group), and new alerts with a pending notification per target. The alerts with
        their ids."""
        now = time.time()
        saved = []
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [(k, orjson.dumps(v).decode()) for k, v in meta.items()],
                )
                for rule, group, state in groups:
                    if state is None:
                        db.execute("DELETE FROM groups WHERE rule = ? AND grp = ?", (rule, group))
                    else:
                        db.execute(
                            "INSERT OR REPLACE INTO groups (rule, grp, state) VALUES (?, ?, ?)",
                            (rule, group, orjson.dumps(state).decode()),
                        )
                for alert in alerts:
                    cursor = db.execute(
                        "INSERT INTO alerts (rule, grp, dedup_key, status, at, created, count, "
                        "data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            alert.rule,
                            alert.group,
                            alert.dedup_key,
                            alert.status,
                            alert.at,
                            now,
                            alert.count,
                            orjson.dumps({"data": alert.data, "targets": alert.targets}).decode(),
                        ),
                    )
                    alert_id = cursor.lastrowid
                    assert alert_id is not None
                    db.executemany(
                        "INSERT INTO notifications (alert_id, target, target_type, status, "
                        "next_try, created) VALUES (?, ?, ?, 'pending', ?, ?)",
                        [(alert_id, i, kind, now, now) for i, kind in enumerate(alert.targets)],
                    )
                    saved.append(_with_id(alert, alert_id))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return saved

    # -- the audit log's copy of each alert ------------------------------------------------

    def unrecorded(self) -> list[AlertRecord]:
        """Alerts whose alert.fired / alert.resolved event is not in the audit log yet."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, rule, grp, dedup_key, status, at, count, data FROM alerts "
                "WHERE recorded = 0 ORDER BY id"
            ).fetchall()
        return [_alert(row) for row in rows]

    def mark_recorded(self, alert_id: int) -> None:
        with self._lock:
            self._db.execute("UPDATE alerts SET recorded = 1 WHERE id = ?", (alert_id,))

    # -- the notification log --------------------------------------------------------------

    def due(self, now: float, limit: int = 100) -> list[PendingNotification]:
        """Pending notifications whose next try has come, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT n.id, n.target, n.target_type, n.attempts, a.id, a.rule, a.grp, "
                "a.dedup_key, a.status, a.at, a.count, a.data FROM notifications n "
                "JOIN alerts a ON a.id = n.alert_id WHERE n.status = 'pending' "
                "AND n.next_try <= ? ORDER BY n.id LIMIT ?",
                (now, limit),
            ).fetchall()
        return [
            PendingNotification(row[0], _alert(row[4:]), row[1], row[2], row[3]) for row in rows
        ]

    def next_due(self) -> float | None:
        """When the earliest pending notification is due, if any is pending."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_try) FROM notifications WHERE status = 'pending'"
            ).fetchone()
        return None if row is None else row[0]

    def sent(self, notification_id: int) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE notifications SET status = 'sent', sent_at = ?, attempts = attempts + 1, "
                "last_error = NULL WHERE id = ?",
                (time.time(), notification_id),
            )

    def failed(self, notification_id: int, error: str, next_try: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE notifications SET attempts = attempts + 1, last_error = ?, "
                "next_try = ? WHERE id = ?",
                (error, next_try, notification_id),
            )

    def notification_log(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The latest notifications, newest first, for `kaudit alerts status`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT n.id, a.rule, a.grp, a.status, n.target_type, n.status, n.attempts, "
                "n.last_error, n.created, n.sent_at FROM notifications n "
                "JOIN alerts a ON a.id = n.alert_id ORDER BY n.id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        keys = (
            "id",
            "rule",
            "group",
            "alert",
            "target",
            "status",
            "attempts",
            "last_error",
            "created",
            "sent_at",
        )
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def last_alerts(self) -> dict[str, dict[str, Any]]:
        """Each rule's latest alert (firing or resolution)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT rule, grp, status, at, count, created FROM alerts WHERE id IN "
                "(SELECT MAX(id) FROM alerts GROUP BY rule)"
            ).fetchall()
        return {
            row[0]: {
                "group": row[1],
                "status": row[2],
                "at": row[3],
                "count": row[4],
                "recorded_at": row[5],
            }
            for row in rows
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _with_id(alert: AlertRecord, alert_id: int) -> AlertRecord:
    return AlertRecord(
        alert.rule,
        alert.group,
        alert.dedup_key,
        alert.status,
        alert.at,
        alert.count,
        alert.data,
        alert.targets,
        alert_id,
    )


def _alert(row: Any) -> AlertRecord:
    alert_id, rule, group, dedup_key, status, at, count, raw = row
    stored = orjson.loads(raw)
    return AlertRecord(
        rule,
        group,
        dedup_key,
        status,
        at,
        count,
        stored["data"],
        tuple(stored["targets"]),
        alert_id,
    )
