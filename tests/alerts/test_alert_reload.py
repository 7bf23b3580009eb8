"""A reload that changes the alert rules (kaudit.alerts.running): the engine is replaced
by one with the new rules, which resumes from the saved state and cursor; rules that do
not compile refuse the reload and the running engine goes on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import kaudit
from kaudit.alerts import AlertEngine
from kaudit.alerts.running import RunningAlerts
from kaudit.config import Config, load_config_text
from kaudit.errors import ConfigError


def _config(data: Path, event_type: str, name: str) -> Config:
    return load_config_text(f"""
data_dir: {data}
audit:
  alerts:
    - name: {name}
      condition: "event_type == '{event_type}'"
      severity: high
""")


def _wait_for(fired: list[dict[str, Any]], count: int) -> None:
    deadline = time.monotonic() + 60
    while len(fired) < count:
        assert time.monotonic() < deadline, fired
        time.sleep(0.05)


def test_new_rules_judge_what_comes_next_and_nothing_is_judged_twice(tmp_path: Path) -> None:
    old = _config(tmp_path, "topic.deleted", "deletes")
    new = _config(tmp_path, "acl.created", "acl-changes")
    fired: list[dict[str, Any]] = []

    def build(config: Config) -> AlertEngine:
        return AlertEngine(config, record=lambda _type, fields: fired.append(dict(fields)),
                           poll_s=0.05)  # fmt: skip

    with kaudit.open(old) as session:
        session.emit("topic.deleted", actor="User:bob", resource="topic:orders")
    running = RunningAlerts(old, build)
    try:
        _wait_for(fired, 1)
        assert running.prepare_reload(old, old) is None  # nothing changed: nothing to do
        change = running.prepare_reload(old, new)
        assert change is not None
        change.commit()
        assert [rule.name for rule in running.engine.rules] == ["acl-changes"]
        with kaudit.open(old) as session:
            session.emit("topic.deleted", actor="User:bob", resource="topic:payments")
            session.emit("acl.created", actor="User:bob", resource="topic:orders")
        _wait_for(fired, 2)
    finally:
        running.close()
    rules = [f["details"]["rule"] for f in fired]
    # The first topic.deleted fired once, before the reload; the one after it meets only
    # the new rule, which does not match it; the ACL change fires the new rule.
    assert rules == ["deletes", "acl-changes"]


def test_rules_that_do_not_compile_refuse_the_reload_and_the_engine_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _config(tmp_path, "topic.deleted", "deletes")
    new = _config(tmp_path, "acl.created", "acl-changes")
    running = RunningAlerts(old, lambda config: AlertEngine(config, poll_s=0.05))
    engine = running.engine

    def refuse(*_: Any) -> None:
        raise ConfigError([], "rules that do not compile")

    monkeypatch.setattr("kaudit.alerts.running.compile_rules", refuse)
    try:
        with pytest.raises(ConfigError):
            running.prepare_reload(old, new)
        assert running.engine is engine
        assert [rule.name for rule in running.engine.rules] == ["deletes"]
    finally:
        running.close()
