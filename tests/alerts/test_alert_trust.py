"""What an attacker can feed the alert engine does not blind it: an event dated far ahead
does not empty every window."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from kaudit.alerts.rules import MAX_CLOCK_SKEW_S, Evaluator, compile_rules
from kaudit.alerts.state import AlertRecord
from kaudit.config import load_config_text

BRUTE_FORCE = """
audit:
  alerts:
    - name: backup-failed
      condition: "event_type == 'backup.failed'"
  builtin_alerts:
    auth_failures: {enabled: true, threshold: 5, window: 5m}
"""


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def _event(event_type: str, at: float, n: int, ip: str = "203.0.113.7") -> dict[str, Any]:
    return {"event_type": event_type, "timestamp": _stamp(at), "event_id": f"evt_{n}",
            "actor": {"id": "User:x", "ip_address": ip}}  # fmt: skip


def _evaluator(yaml: str) -> Evaluator:
    config = load_config_text(yaml)
    return Evaluator(compile_rules(config.audit.alerts, config.audit.builtin_alerts))


def _run(ev: Evaluator, events: list[dict[str, Any]]) -> list[AlertRecord]:
    """Judge each event and sweep after it as the engine does after a saved batch (by
    the later of the wall clock and the watermark)."""
    out: list[AlertRecord] = []
    for event in events:
        out += ev.judge(event, ev.candidates(event["event_type"]) or [])
        out += ev.sweep(max(time.time(), ev.watermark or 0.0))
    return out


def _burst(start: float, first_id: int = 0) -> list[dict[str, Any]]:
    return [_event("auth.failed", start + 5 * i, first_id + i) for i in range(10)]


def test_an_event_dated_far_ahead_does_not_silence_windowed_rules() -> None:
    now = time.time()
    clean = _run(_evaluator(BRUTE_FORCE), _burst(now - 50))
    assert [(a.rule, a.status) for a in clean] == [("builtin.auth_failures", "fired")]

    ev = _evaluator(BRUTE_FORCE)
    poisoned = _run(ev, [_event("backup.failed", datetime(2099, 1, 1, tzinfo=UTC).timestamp(), 99)])
    # The far-future event is still judged, its own time kept in the alert's data...
    assert [(a.rule, a.status) for a in poisoned] == [("backup-failed", "fired")]
    assert poisoned[0].data["timestamp"] == "2099-01-01T00:00:00Z"
    # ...but it moves the windows no further than the wall clock and the allowed skew.
    assert ev.watermark is not None and ev.watermark <= time.time() + MAX_CLOCK_SKEW_S
    assert poisoned[0].at <= time.time() + MAX_CLOCK_SKEW_S
    after = _run(ev, _burst(now - 50))
    assert [(a.rule, a.status) for a in after] == [("builtin.auth_failures", "fired")]


def test_an_event_dated_far_ahead_does_not_resolve_a_firing_window() -> None:
    now = time.time()
    ev = _evaluator(BRUTE_FORCE)
    fired = _run(ev, _burst(now - 50)[:5])
    assert [a.status for a in fired] == ["fired"]
    later = _run(ev, [_event("backup.failed", now + 10 * 365 * 86400, 99)])
    assert [(a.rule, a.status) for a in later] == [("backup-failed", "fired")]
    assert [s.firing for (rule, _), s in ev.states.items() if rule == "builtin.auth_failures"] == [
        True
    ]
