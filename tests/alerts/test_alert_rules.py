"""Windows slide by event time, groups alert apart, cooldown holds, windows resolve,
built-in rules match what they say; evaluated without I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kaudit.alerts.rules import Evaluator, dedup_key
from kaudit.alerts.ruleset import compile_rules
from kaudit.alerts.state import AlertRecord
from kaudit.config import load_config_text

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC).timestamp()  # a Monday


def _event(event_type: str, at: float, n: int, **extra: Any) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
    return {"event_type": event_type, "timestamp": stamp, "event_id": f"evt_{n}",
            "actor": {"id": "User:alice", "ip_address": "10.0.0.1"}, **extra}  # fmt: skip


def _evaluator(yaml: str) -> Evaluator:
    config = load_config_text(yaml)
    return Evaluator(compile_rules(config.audit.alerts, config.audit.builtin_alerts))


def _feed(ev: Evaluator, events: list[dict[str, Any]]) -> list[AlertRecord]:
    out = []
    for event in events:
        out += ev.sweep()
        out += ev.judge(event, ev.candidates(event["event_type"]) or [])
    return out


SPIKE = """
audit:
  alerts:
    - name: spike
      condition: "event_type == 'access.denied'"
      threshold: 3
      window: 5m
      cooldown: 10m
"""


def test_window_slides_by_event_time_instead_of_fixed_buckets() -> None:
    # 10:04, 10:06 and 10:08:30 are three events within 5 minutes, though a fixed
    # 10:00-10:05 / 10:05-10:10 bucketing would see 1 and 2.
    ev = _evaluator(SPIKE)
    times = [T0 + 240, T0 + 360, T0 + 510]
    alerts = _feed(ev, [_event("access.denied", t, i) for i, t in enumerate(times)])
    assert [(a.status, a.count) for a in alerts] == [("fired", 3)]
    assert alerts[0].data["alert"]["event_ids"] == ["evt_0", "evt_1", "evt_2"]
    assert alerts[0].data["alert"]["first_at"] == "2026-11-23T10:04:00.000Z"


def test_events_further_apart_than_the_window_do_not_fire() -> None:
    ev = _evaluator(SPIKE)
    times = [T0, T0 + 240, T0 + 301, T0 + 545]
    assert _feed(ev, [_event("access.denied", t, i) for i, t in enumerate(times)]) == []


def test_window_resolves_when_the_count_falls_back_and_cooldown_holds_the_next() -> None:
    ev = _evaluator(SPIKE)
    burst = [_event("access.denied", T0 + i, i) for i in range(3)]
    assert [a.status for a in _feed(ev, burst)] == ["fired"]
    resolved = ev.sweep(T0 + 302)
    assert [(a.status, a.count) for a in resolved] == [("resolved", 1)]
    assert resolved[0].dedup_key == dedup_key("spike", "")
    # A new burst within the 10-minute cooldown of the firing is held back...
    again = [_event("access.denied", T0 + 400 + i, 10 + i) for i in range(3)]
    assert _feed(ev, again) == []
    # ... and one after it fires.
    later = [_event("access.denied", T0 + 700 + i, 20 + i) for i in range(3)]
    assert [a.status for a in _feed(ev, later)] == ["fired"]


def test_group_by_alerts_per_group_with_its_own_dedup_key() -> None:
    ev = _evaluator(
        "audit:\n  alerts:\n    - name: per-user\n"
        "      condition: \"event_type == 'access.denied'\"\n"
        "      threshold: 2\n      window: 1m\n      group_by: [actor.id, details.topic]\n"
    )
    events = [
        _event("access.denied", T0, 1, actor={"id": "User:a"}, details={"topic": "t"}),
        _event("access.denied", T0 + 1, 2, actor={"id": "User:b"}, details={"topic": "t"}),
        _event("access.denied", T0 + 2, 3, actor={"id": "User:a"}, details={"topic": "t"}),
    ]
    alerts = _feed(ev, events)
    assert len(alerts) == 1
    assert alerts[0].data["alert"]["group"] == {"actor.id": "User:a", "details.topic": "t"}
    assert alerts[0].dedup_key == dedup_key("per-user", '["User:a","t"]')
    assert alerts[0].dedup_key != dedup_key("per-user", '["User:b","t"]')


def test_rule_without_window_alerts_on_every_match_and_repeat_interval_renotifies() -> None:
    ev = _evaluator(
        "audit:\n  alerts:\n    - name: each\n      condition: \"event_type == 'backup.failed'\"\n"
        "    - name: ongoing\n      condition: \"event_type == 'access.denied'\"\n"
        "      threshold: 2\n      window: 10m\n      repeat_interval: 2m\n"
    )
    fails = [_event("backup.failed", T0 + i, i) for i in range(2)]
    assert [(a.rule, a.count) for a in _feed(ev, fails)] == [("each", 1), ("each", 1)]
    denied = [_event("access.denied", T0 + s, 10 + s) for s in (0, 1, 60, 125)]
    alerts = _feed(ev, denied)
    assert [(a.status, a.data["alert"]["repeat"]) for a in alerts] == [
        ("fired", False),
        ("fired", True),
    ]


def test_alert_events_are_never_judged() -> None:
    ev = _evaluator('audit:\n  alerts:\n    - name: all\n      condition: "true"\n')
    assert ev.candidates("alert.fired") is None
    assert [r.name for r in ev.candidates("topic.created") or []] == ["all"]
    assert ev.judges_every_type


BUILTINS = """
audit:
  builtin_alerts:
    auth_failures: {enabled: true, threshold: 3, window: 1m}
    access_denied_burst: {enabled: true, threshold: 2, window: 1m}
    off_hours_changes: {enabled: true, hours: "08:00-18:00"}
    audit_degraded: {enabled: true}
    gateway_bypass: {enabled: true}
"""


def test_builtin_rules_match_what_they_promise() -> None:
    ev = _evaluator(BUILTINS)
    ip = {"id": "User:x", "ip_address": "192.0.2.7"}
    events = [
        *[_event("auth.failed", T0 + i, i, actor=ip) for i in range(3)],
        *[_event("access.denied", T0 + i, 10 + i, actor={"id": "User:mallory"}) for i in range(2)],
        _event("acl.created", T0, 20),  # Monday 10:00: inside hours
        _event("auth.credentials_changed", T0 + 12 * 3600, 21),  # 22:00: outside
        _event("acl.deleted", T0 + 5 * 86400, 22),  # Saturday 10:00: not a working day
        _event("audit.degraded", T0, 23),
        _event("access.bypassed_gateway", T0, 24, actor={"id": "User:rogue"}),
    ]
    alerts = _feed(ev, events)
    fired = [(a.rule, a.data["alert"]["group"]) for a in alerts if a.status == "fired"]
    assert fired == [
        ("builtin.auth_failures", {"actor.ip_address": "192.0.2.7"}),
        ("builtin.access_denied_burst", {"actor.id": "User:mallory"}),
        ("builtin.off_hours_changes", {}),
        ("builtin.off_hours_changes", {}),
        ("builtin.audit_degraded", {}),
        ("builtin.gateway_bypass", {"actor.id": "User:rogue"}),
    ]


def test_probe_rules_fire_while_the_fact_holds_and_resolve_after() -> None:
    ev = _evaluator("audit:\n  builtin_alerts:\n    exporter_lag: {enabled: true, cooldown: 0}\n")
    assert ev.observe("exporter_lag", "s3:x", False, T0, {}) is None
    fired = ev.observe("exporter_lag", "s3:x", True, T0, {"details": {"lag_events": 5}})
    assert fired is not None and fired.status == "fired"
    assert fired.data["alert"]["group"] == {"name": "s3:x"}
    assert ev.observe("exporter_lag", "s3:x", True, T0 + 1, {}) is None
    resolved = ev.observe("exporter_lag", "s3:x", False, T0 + 2, {})
    assert resolved is not None and resolved.status == "resolved"


def test_event_time_reads_the_timestamps_events_carry() -> None:
    from kaudit.alerts.rules import event_time

    base = datetime(2026, 11, 22, 10, 15, 30, tzinfo=UTC).timestamp()
    assert event_time({"timestamp": "2026-11-22T10:15:30Z"}) == base
    assert event_time({"timestamp": "2026-11-22T10:15:30.123Z"}) == base + 0.123
    assert event_time({"timestamp": "2026-11-22T10:15:30.5+00:00"}) == base + 0.5
    assert event_time({"timestamp": "2026-11-22T12:15:30+02:00"}) == base
    assert event_time({"timestamp": "2026-11-22T10:15:30"}) == base
    assert event_time({"timestamp": "yesterday"}) is None
    assert event_time({"timestamp": "2026-13-22T10:15:30.1Z"}) is None
    assert event_time({}) is None
