"""`kaudit alerts test` replays a log without sending; `kaudit alerts status` shows each
rule's state; `kaudit run` runs the engine when rules are configured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
from alert_servers import AlertReceiver
from click.testing import CliRunner

import kaudit
from kaudit.cli.app import main
from kaudit.config import load_config
from kaudit.log.segments import LogReader

RULES = """
data_dir: {data}
cluster: {{id: prod-us-west-2, environment: production}}
enterprise:
  audit:
    destination:
      type: file
      path: {data}/export.jsonl
    alerts:
      - name: unauthorized-restore
        condition: "event_type == 'restore.started' and context.environment == 'production'"
        severity: high
        notify:
          - type: webhook
            url: {url}/hook
      - name: access-denied-spike
        condition: "event_type == 'access.denied'"
        threshold: 3
        window: 5m
        severity: medium
        notify:
          - type: webhook
            url: {url}/hook
"""

HOUR_NS = 3600 * 10**9


def _setup(tmp_path: Path, url: str = "http://127.0.0.1:9") -> Path:
    path = tmp_path / "kaudit.yaml"
    path.write_text(RULES.format(data=tmp_path / "data", url=url))
    config = load_config(path)
    start = time.time_ns() - 3 * HOUR_NS
    with kaudit.open(config) as session:
        session.emit("restore.started", actor="User:alice", resource="backup:b1", time_ns=start)
        for minute in (0, 2, 4, 30):
            at = start + HOUR_NS + minute * 60 * 10**9
            session.emit(
                "access.denied", actor="User:bob", resource="topic:t", result="denied", time_ns=at
            )
    return path


def test_alerts_test_prints_what_would_have_fired_and_when(tmp_path: Path) -> None:
    path = _setup(tmp_path)
    result = CliRunner().invoke(main, ["alerts", "test", "-c", str(path)])
    assert result.exit_code == 0, result.output
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [(r["rule"], r["status"], r["count"]) for r in rows] == [
        ("unauthorized-restore", "fired", 1),
        ("access-denied-spike", "fired", 3),
        ("access-denied-spike", "resolved", 0),
    ]
    assert rows[1]["notify"] == ["webhook"]
    assert rows[2]["at"] > rows[1]["at"]
    assert "2 alerts would have fired, 1 resolved" in result.stderr
    # Nothing was sent and nothing about the running engine changed.
    assert not (tmp_path / "data" / "alerts").exists()


def test_alerts_test_since_and_another_log(tmp_path: Path) -> None:
    path = _setup(tmp_path)
    log_dir = str(tmp_path / "data" / "log")
    result = CliRunner().invoke(
        main, ["alerts", "test", "-c", str(path), "--log", log_dir, "--since", "150m"]
    )
    assert result.exit_code == 0, result.output
    rules = [orjson.loads(line)["rule"] for line in result.stdout.splitlines()]
    assert rules == ["access-denied-spike", "access-denied-spike"]


def test_kaudit_run_judges_notifies_and_records(tmp_path: Path, receiver: AlertReceiver) -> None:
    path = _setup(tmp_path, receiver.url)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kaudit.cli", "run", "-c", str(path)], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        requests = receiver.wait_for(3, timeout_s=60)
        kinds = sorted(r.json()["kind"] for r in requests)
        assert kinds == ["alert.fired", "alert.fired", "alert.resolved"]
        log_dir = tmp_path / "data" / "log"
        deadline = time.monotonic() + 30
        while True:
            lines, _ = LogReader(log_dir).read(None, 1000)
            recorded = [orjson.loads(x)["event_type"] for x in lines]
            if recorded.count("alert.fired") == 2 and "alert.resolved" in recorded:
                break
            assert time.monotonic() < deadline, recorded
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, output
    assert "kaudit alerts: 2 rules" in output

    status = CliRunner().invoke(main, ["alerts", "status", "-c", str(path)])
    assert status.exit_code == 0, status.output
    report = orjson.loads(status.stdout)
    rules = {r["rule"]: r for r in report["rules"]}
    assert rules["unauthorized-restore"]["last_alert"]["status"] == "fired"
    assert rules["access-denied-spike"]["last_alert"]["status"] == "resolved"
    assert [n["status"] for n in report["notifications"]] == ["sent"] * 3
    assert report["pending"] == 0


def test_alerts_status_before_any_run_lists_the_rules(tmp_path: Path) -> None:
    path = tmp_path / "kaudit.yaml"
    path.write_text(RULES.format(data=tmp_path / "data", url="http://127.0.0.1:9"))
    result = CliRunner().invoke(main, ["alerts", "status", "-c", str(path)])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert [r["rule"] for r in report["rules"]] == ["unauthorized-restore", "access-denied-spike"]
    assert all(r["last_alert"] is None and not r["firing"] for r in report["rules"])
    assert report["notifications"] == [] and report["pending"] == 0


def test_alerts_test_needs_rules_and_warns_about_slack_channels(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text(f"data_dir: {tmp_path}\n")
    result = CliRunner().invoke(main, ["alerts", "test", "-c", str(empty)])
    assert result.exit_code == 2
    assert "no alert rules (audit.alerts) are enabled" in result.stderr
    seed = Path(__file__).parents[1] / "fixtures" / "seed" / "alerts.yaml"
    config = tmp_path / "seed.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n" + seed.read_text())
    _setup(tmp_path)
    env = {"SLACK_WEBHOOK": "https://hooks.slack.com/services/T/B/x", "PAGERDUTY_KEY": "k"}
    result = CliRunner().invoke(main, ["alerts", "test", "-c", str(config)], env=env)
    assert result.exit_code == 0, result.output
    assert "warning: alert unauthorized-restore: the Slack target names no webhook" in (
        result.stderr
    )
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [(r["rule"], r["notify"]) for r in rows] == [("unauthorized-restore", ["slack"])]
