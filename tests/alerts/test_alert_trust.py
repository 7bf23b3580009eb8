"""What an attacker can feed the alert engine does not blind it: an event dated far ahead
does not empty every window; groups made of chosen values are forgotten once done with
and bounded in number; a line the log's writer did not write is not judged, and cannot
make a restart skip the log."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

import kaudit
from kaudit.alerts import AlertEngine, rules
from kaudit.alerts.engine import state_path
from kaudit.alerts.replay import replay
from kaudit.alerts.rules import MAX_CLOCK_SKEW_S, Evaluator
from kaudit.alerts.ruleset import compile_rules
from kaudit.alerts.state import AlertRecord
from kaudit.config import Config, load_config_text

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


def test_a_group_is_forgotten_once_resolved_and_past_its_cooldown() -> None:
    # 200 addresses failing 5 times each: 200 alerts, then nothing kept once each window
    # has emptied and its cooldown (30 minutes) has passed.
    t0 = time.time() - 3 * 3600
    ev = _evaluator(BRUTE_FORCE.replace("window: 5m}", "window: 5m, cooldown: 30m}"))
    events = [_event("auth.failed", t0 + i, i, f"10.0.{i // 5 // 256}.{i // 5 % 256}")
              for i in range(1000)]  # fmt: skip
    fired = [a for a in _feed_only(ev, events) if a.status == "fired"]
    assert len(fired) == 200
    ev.changed()
    resolved = ev.sweep(t0 + 1000 + 301)  # every window has emptied; cooldowns running
    assert len(resolved) == 200
    assert len(ev.states) == 200  # kept: a new burst now would still be held back
    saved = ev.changed()
    assert len(saved) == 200 and all(state is not None for _, _, state in saved)
    assert ev.sweep(t0 + 1000 + 1801) == []
    assert ev.states == {}
    forgotten = ev.changed()
    assert sorted(forgotten) == sorted(("builtin.auth_failures", g, None) for _, g, _ in saved)


def test_groups_past_the_limit_are_counted_together_never_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rules, "MAX_GROUPS_PER_RULE", 50)
    t0 = time.time() - 3600
    ev = _evaluator(BRUTE_FORCE)
    events = [_event("auth.failed", t0 + i, i, f"198.51.100.{i % 60}") for i in range(300)]
    fired = [a for a in _feed_only(ev, events) if a.status == "fired"]
    # 50 groups alert apart; the other 10 addresses' 50 events fall in the overflow
    # group, which alerts (once: it keeps firing) and is counted.
    assert len(fired) == 51
    overflow = [a for a in fired if a.group == rules.OVERFLOW_GROUP]
    assert len(overflow) == 1
    assert overflow[0].data["alert"]["group"] == {"overflow": "past 50 groups"}
    assert ev.overflowed == {"builtin.auth_failures": 50}
    assert len(ev.states) == 51
    # Once groups are forgotten, new ones are kept apart again.
    ev.sweep(t0 + 300 + 301)
    assert ev.states == {}
    later = [_event("auth.failed", t0 + 1000 + i, 1000 + i, "192.0.2.1") for i in range(5)]
    assert [a.group for a in _feed_only(ev, later)] == ['["192.0.2.1"]']


def _feed_only(ev: Evaluator, events: list[dict[str, Any]]) -> list[AlertRecord]:
    out: list[AlertRecord] = []
    for event in events:
        out += ev.judge(event, ev.candidates(event["event_type"]) or [])
    return out


def test_forgotten_groups_neither_repeat_nor_lose_alerts_across_restarts(
    tmp_path: Path,
) -> None:
    config = _engine_config(tmp_path, "      cooldown: 10m\n")
    minutes_ago = {"User:a": 8, "User:b": 20}  # A within its cooldown after this, B past it
    _denied_at(config, minutes_ago)
    engine = AlertEngine(config)
    engine.drain()  # fires both, then resolves both by the clock: their windows are over
    assert (engine.counters.alerts_fired, engine.counters.alerts_resolved) == (2, 2)
    assert [group for _, group, _ in engine.store.groups()] == ['["User:a"]']
    engine.close()

    engine = AlertEngine(config)
    assert engine.drain() == 0
    assert engine.counters.alerts_fired == 0
    # A new burst of A a minute later is still held back by A's cooldown; B, forgotten,
    # alerts again.
    _denied_at(config, {"User:a": 7, "User:b": 6})
    engine.drain()
    assert (engine.counters.alerts_fired, engine.counters.alerts_resolved) == (1, 1)
    assert [a.group for a in engine.store.unrecorded()][-2:] == ['["User:b"]', '["User:b"]']
    engine.close()


def _denied_at(config: Config, minutes_ago: dict[str, int]) -> None:
    """Three access.denied by each actor, that many minutes ago."""
    with kaudit.open(config) as session:
        for actor, minutes in minutes_ago.items():
            for i in range(3):
                at = time.time_ns() - (minutes * 60 - i) * 10**9
                session.emit("access.denied", actor=actor, resource="topic:t", time_ns=at)


def _engine_config(tmp_path: Path, extra: str = "") -> Config:
    return load_config_text(f"""
data_dir: {tmp_path}
audit:
  alerts:
    - name: access-denied-spike
      condition: "event_type == 'access.denied'"
      threshold: 3
      window: 5m
      group_by: actor.id
{extra}""")


def test_the_engine_counts_and_says_when_groups_overflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(rules, "MAX_GROUPS_PER_RULE", 1)
    config = _engine_config(tmp_path)
    _denied_at(config, {"User:a": 1, "User:b": 1})
    engine = AlertEngine(config)
    engine.drain()
    assert [a.group for a in engine.store.unrecorded()] == ['["User:a"]', rules.OVERFLOW_GROUP]
    assert engine.counters.events_over_group_limit == 3
    assert "3 events counted in overflow groups (access-denied-spike)" in caplog.text
    engine.close()


def _append(config: Config, *events: dict[str, Any]) -> None:
    """Lines put in the log by someone other than its writer."""
    (segment,) = config.log_dir.glob("*.jsonl")
    with segment.open("ab") as f:
        f.write(b"".join(orjson.dumps(event) + b"\n" for event in events))


def _denied(session: Any) -> None:
    session.emit("access.denied", actor="User:bob", resource="topic:t", result="denied",
                 durable=True)  # fmt: skip


def test_a_line_without_a_sequence_number_is_a_chain_break_and_not_judged(
    tmp_path: Path,
) -> None:
    config = _engine_config(tmp_path, "  builtin_alerts:\n    log_integrity: {enabled: true}\n")
    with kaudit.open(config) as session:
        _denied(session)
        _denied(session)
    forged = {"event_type": "access.denied", "timestamp": _stamp(time.time()),
              "actor": {"id": "User:bob"}}  # fmt: skip
    _append(config, {**forged, "event_id": "evt_bare"},
            {**forged, "event_id": "evt_text", "integrity": {"sequence_number": "2"}})  # fmt: skip
    engine = AlertEngine(config)
    engine.drain()
    assert engine.counters.events_judged == 2  # the two real ones: no threshold of 3 met
    assert engine.counters.lines_unnumbered == 2
    (alert,) = engine.store.unrecorded()
    assert alert.rule == "builtin.log_integrity"
    assert alert.data["details"]["problem"] == (
        "a line without an integer integrity.sequence_number follows event 1"
    )
    engine.close()


def test_a_forged_huge_sequence_number_does_not_make_a_restart_skip_the_log(
    tmp_path: Path,
) -> None:
    config = _engine_config(tmp_path)
    with kaudit.open(config) as session:
        _denied(session)
        _denied(session)
        engine = AlertEngine(config)
        assert engine.drain() == 2
        engine.close()
        forged = {"event_type": "topic.created", "timestamp": _stamp(time.time()),
                  "event_id": "evt_forged", "integrity": {"sequence_number": 10**12}}  # fmt: skip
        _append(config, forged)
        engine = AlertEngine(config)
        assert engine.drain() == 1
        engine.close()
        _denied(session)  # the writer goes on with its own numbers
    engine = AlertEngine(config)
    assert engine.drain() == 1
    assert engine.counters.events_judged == 1
    assert engine.counters.alerts_fired == 1  # the window of three is met across restarts
    engine.close()


def test_forged_consecutive_numbers_do_not_make_a_restart_skip_real_events(
    tmp_path: Path,
) -> None:
    """Two forged lines numbered H and H+1 look like the log going on: the engine still
    resumes where it read to in the log, so the real events after them are judged after a
    restart; the jump in numbers fires log_integrity."""
    config = _engine_config(tmp_path, "  builtin_alerts:\n    log_integrity: {enabled: true}\n")
    high = 10**12
    with kaudit.open(config) as session:
        _denied(session)
        forged = {"event_type": "topic.created", "timestamp": _stamp(time.time()),
                  "actor": {"id": "User:x"}}  # fmt: skip
        _append(config, *({**forged, "event_id": f"evt_forged_{seq}",
                           "integrity": {"sequence_number": seq}}
                          for seq in (high, high + 1)))  # fmt: skip
        engine = AlertEngine(config)
        assert engine.drain() == 3
        [broken] = engine.store.unrecorded()
        assert broken.rule == "builtin.log_integrity"
        assert broken.data["details"]["problem"] == f"sequence number {high} follows 0"
        engine.close()
        _denied(session)  # the writer goes on with its own numbers: 1, 2
        _denied(session)
    engine = AlertEngine(config)
    assert engine.drain() == 2
    assert engine.counters.events_judged == 2
    fired = [a for a in engine.store.unrecorded() if a.rule == "access-denied-spike"]
    assert [a.status for a in fired] == ["fired"]  # the third denial, across the restart
    engine.close()


def test_a_state_saved_before_positions_resumes_at_the_cursor_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A state store of an earlier kaudit has only the sequence number reached: the
    engine resumes at the cursor (not past that number) and says why."""
    config = _engine_config(tmp_path)
    with kaudit.open(config) as session:
        _denied(session)
        engine = AlertEngine(config)
        assert engine.drain() == 1
        engine.close()
        with sqlite3.connect(state_path(config)) as db:  # as an earlier kaudit left it
            db.execute("DELETE FROM meta WHERE key = 'position'")
            db.execute("UPDATE meta SET value = '1000000000000' WHERE key = 'last_sequence'")
        _denied(session)
        _denied(session)
    engine = AlertEngine(config)
    assert "holds no position in the log; resuming at the cursor" in caplog.text
    assert engine.drain() == 2
    assert engine.counters.alerts_fired == 1
    engine.close()


def test_a_replay_is_not_swept_by_an_event_dated_far_ahead(tmp_path: Path) -> None:
    now = time.time()
    events = [*_burst(now - 100)[:5], _event("backup.failed", now + 10 * 365 * 86400, 99)]
    events += _burst(now - 80, first_id=10)[:5]
    config = load_config_text(BRUTE_FORCE)
    alerts = list(replay(config, [orjson.dumps(event) for event in events]))
    # The brute-force window fires once and is not resolved by the far-future event
    # (replay sweeps by each event's time): its 5-minute window is still full.
    assert [(a.rule, a.status) for a in alerts] == [
        ("builtin.auth_failures", "fired"),
        ("backup-failed", "fired"),
    ]
