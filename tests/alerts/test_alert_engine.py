"""The engine on a real audit log: it judges each event once across restarts, records
alert.fired in the log, and keeps and retries notifications until they are delivered."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from alert_servers import AlertReceiver

import kaudit
from kaudit.alerts import AlertEngine
from kaudit.alerts.rules import dedup_key
from kaudit.alerts.status import alert_status
from kaudit.config import Config, load_config_text
from kaudit.log.segments import LogReader


def _config(tmp_path: Path, receiver: AlertReceiver, threshold: int = 3) -> Config:
    return load_config_text(f"""
data_dir: {tmp_path}
cluster: {{id: prod-us-west-2, environment: production}}
enterprise:
  audit:
    alerts:
      - name: access-denied-spike
        condition: "event_type == 'access.denied'"
        threshold: {threshold}
        window: 5m
        group_by: actor.id
        notify:
          - type: pagerduty
            routing_key: R0UTINGKEY0000000000000000000000
            url: {receiver.url}/v2/enqueue
""")


def _emit(config: Config, *events: tuple[str, str]) -> None:
    with kaudit.open(config) as session:
        for event_type, actor in events:
            session.emit(event_type, actor=actor, resource="topic:orders", result="denied")


def _engine(config: Config, recorded: list[tuple[str, Any]]) -> AlertEngine:
    def record(event_type: str, fields: Any) -> None:
        recorded.append((event_type, fields))

    return AlertEngine(config, record=record)


def _log_events(config: Config) -> list[dict[str, Any]]:
    lines, _ = LogReader(config.log_dir).read(None, 100_000)
    return [orjson.loads(line) for line in lines]


def test_restart_mid_window_still_meets_the_threshold_and_sends_once(
    tmp_path: Path, receiver: AlertReceiver
) -> None:
    config = _config(tmp_path, receiver)
    recorded: list[tuple[str, Any]] = []
    _emit(config, ("access.denied", "User:bob"), ("access.denied", "User:bob"))
    first = _engine(config, recorded)
    assert first.drain() == 2
    assert first.counters.alerts_fired == 0
    first.close()

    # The third event arrives while the engine is down; the two before are remembered.
    _emit(config, ("access.denied", "User:bob"))
    second = _engine(config, recorded)
    second.drain()
    assert second.counters.alerts_fired == 1
    assert second.deliver_due() == 1
    second.close()
    body = receiver.wait_for(1)[0].json()
    assert body["dedup_key"] == dedup_key("access-denied-spike", '["User:bob"]')
    assert body["payload"]["custom_details"]["count"] == 3

    # A restart with nothing new, even with the log cursor lost, sends nothing again: it
    # resumes at the position saved with its state.
    (tmp_path / "cursors" / "kaudit-alerts.json").unlink()
    third = _engine(config, recorded)
    assert third.drain() == 0
    assert third.counters.events_judged == 0
    assert third.deliver_due() == 0
    third.close()
    assert len(receiver.requests) == 1
    assert [t for t, _ in recorded] == ["alert.fired"]


def test_alert_fired_is_recorded_in_the_audit_log(tmp_path: Path, receiver: AlertReceiver) -> None:
    config = _config(tmp_path, receiver, threshold=2)
    _emit(config, ("access.denied", "User:eve"), ("access.denied", "User:eve"))
    denied_ids = [e["event_id"] for e in _log_events(config)]
    with kaudit.open(config, source="alerts") as session:

        def record(event_type: str, fields: Any) -> None:
            session.emit(event_type, durable=True, **fields)

        engine = AlertEngine(config, record=record)
        engine.drain()
        engine.close()
    fired = [e for e in _log_events(config) if e["event_type"] == "alert.fired"]
    assert len(fired) == 1
    details = fired[0]["details"]
    assert details["rule"] == "access-denied-spike"
    assert details["group"] == {"actor.id": "User:eve"}
    assert details["count"] == 2
    assert details["event_ids"] == denied_ids
    assert fired[0]["resource"] == {"type": "alert_rule", "id": "access-denied-spike",
                                    "path": None}  # fmt: skip
    # The engine's own record is not judged on the next pass.
    again = AlertEngine(config)
    again.drain()
    assert again.counters.events_judged == 0
    again.close()


def test_failed_notifications_are_kept_and_retried_as_the_receiver_asks(
    tmp_path: Path, receiver: AlertReceiver
) -> None:
    config = _config(tmp_path, receiver, threshold=1)
    _emit(config, ("access.denied", "User:carol"))
    engine = _engine(config, [])
    engine.drain()
    receiver.answer(500, b"unavailable")
    receiver.answer(429, b"slow down", {"Retry-After": "7"})
    receiver.answer(400, b'{"status":"invalid event"}')
    now = time.time()
    assert engine.deliver_due(now) == 0  # 500: retried after about a second
    assert engine.deliver_due(now) == 0  # not due yet
    assert engine.deliver_due(now + 2) == 0  # 429 with Retry-After: 7
    assert engine.deliver_due(now + 5) == 0  # not due yet
    assert engine.deliver_due(now + 10) == 0  # 400: kept, tried again much later
    pending = alert_status(config)["notifications"][0]
    assert pending["status"] == "pending" and pending["attempts"] == 3
    assert "400" in pending["last_error"]
    assert engine.deliver_due(now + 20) == 0  # not due before 30 s
    assert engine.deliver_due(now + 10 + 125) == 1
    assert [r.status for r in receiver.requests] == [500, 429, 400, 202]
    assert engine.counters.notifications_failed == 3
    assert engine.counters.notifications_sent == 1
    sent = alert_status(config)["notifications"][0]
    assert sent["status"] == "sent" and sent["attempts"] == 4
    engine.close()


def test_window_resolution_resolves_the_pagerduty_incident(
    tmp_path: Path, receiver: AlertReceiver
) -> None:
    config = _config(tmp_path, receiver, threshold=2)
    past = time.time_ns() - 10 * 60 * 10**9  # ten minutes ago: the window has passed
    with kaudit.open(config) as session:
        for _ in range(2):
            session.emit("access.denied", actor="User:dan", resource="topic:t", time_ns=past)
    engine = _engine(config, [])
    engine.drain()  # fires on the events, then resolves by the clock: the window is over
    assert (engine.counters.alerts_fired, engine.counters.alerts_resolved) == (1, 1)
    assert engine.deliver_due() == 2
    trigger, resolve = (r.json() for r in receiver.wait_for(2))
    assert trigger["event_action"] == "trigger"
    assert resolve == {
        "routing_key": "R0UTINGKEY0000000000000000000000",
        "event_action": "resolve",
        "dedup_key": trigger["dedup_key"],
    }
    status = alert_status(config)
    assert status["rules"][0]["firing"] is False
    assert status["rules"][0]["last_alert"]["status"] == "resolved"
    engine.close()


def test_log_integrity_fires_on_an_event_cut_out_of_the_chain(
    tmp_path: Path, receiver: AlertReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIT_SIGNING_KEY", "k" * 32)
    config = load_config_text(f"""
data_dir: {tmp_path}
audit:
  integrity:
    signing: {{enabled: true}}
    chain: {{enabled: true}}
  builtin_alerts:
    log_integrity:
      enabled: true
      notify: [{{type: webhook, url: "{receiver.url}/hook"}}]
""")
    _emit(config, *[("topic.created", "User:a")] * 3)
    engine = _engine(config, [])
    engine.drain()
    assert engine.counters.alerts_fired == 0
    engine.close()
    _emit(config, *[("topic.created", "User:a")] * 3)
    # Someone removes the first of the new events from the segment.
    (segment,) = config.log_dir.glob("*.jsonl")
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[:3] + lines[4:]))
    engine = _engine(config, [])
    engine.drain()
    assert engine.counters.alerts_fired == 1
    assert engine.deliver_due() == 1
    body = receiver.wait_for(1)[0].json()
    assert body["alert"]["rule"] == "builtin.log_integrity"
    assert body["event"]["details"]["problem"] == "sequence number 4 follows 2"
    engine.close()


def test_firings_and_failed_notifications_reach_the_metrics_by_rule_and_notifier_kind(
    tmp_path: Path, receiver: AlertReceiver
) -> None:
    from kaudit.ops import metrics

    def sample(name: str, **labels: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    fired_before = sample("kaudit_alerts_fired_total", rule="access-denied-spike")
    failed_before = sample("kaudit_alert_notifications_failed_total", notifier="pagerduty")
    config = _config(tmp_path, receiver, threshold=1)
    _emit(config, ("access.denied", "User:mallory"))
    engine = AlertEngine(
        config,
        record=lambda *_: None,
        on_fired=metrics.alert_fired,
        on_notification_failed=metrics.notification_failed,
    )
    engine.drain()
    receiver.answer(500, b"unavailable")
    engine.deliver_due()
    engine.close()
    assert sample("kaudit_alerts_fired_total", rule="access-denied-spike") == fired_before + 1
    assert (
        sample("kaudit_alert_notifications_failed_total", notifier="pagerduty") == failed_before + 1
    )
