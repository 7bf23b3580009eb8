"""The operations port (kaudit.ops): /metrics in Prometheus's format from the parts'
own counters, /healthz, /readyz with the reason for each check, and an exporter that
stops delivering making the process not ready. Real recorder, real log, real HTTP
server, a real TCP port that refuses; no broker needed here (tests/integration covers
`kaudit run` with the gateway)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import kaudit
from kaudit.config import Config
from kaudit.dev.ports import free_port_block
from kaudit.exporters import runners_for
from kaudit.integrity.keys import generate
from kaudit.integrity.store import checkpoint_files
from kaudit.monitoring import Monitoring, checkpoint_written_at
from kaudit.ops.health import Health, broker_reachable
from kaudit.ops.metrics import Latency, alert_fired, notification_failed


def samples(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample /metrics serves, by name and labels."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(tmp_path: Path, **extra: Any) -> Config:
    return Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "audit": {"log": {"fsync": "never"}},
            "metrics": {"listen": f"127.0.0.1:{free_port_block(1)}", **extra.pop("metrics", {})},
            **extra,
        }
    )


def test_metrics_count_what_the_recorder_wrote_and_readyz_says_the_log_is_ok(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, audit={"log": {"fsync": "never"}, "exclude_events": ["acl.*"]})
    with Monitoring(cfg) as mon, kaudit.open(cfg) as session:
        mon.watch_recorder(session.recorder)
        for i in range(5):
            session.emit("topic.created", actor="User:alice", resource=f"topic:t{i}")
        session.emit("acl.created", actor="User:alice", resource="topic:t0")
        session.flush(10)
        assert mon.url is not None
        got = samples(mon.url)
        assert got[("kaudit_events_written_total", ())] == 5
        assert got[("kaudit_events_filtered_total", ())] == 1
        assert got[("kaudit_events_received_total", ())] == 6
        assert got[("kaudit_events_dropped_total", ())] == 0
        assert got[("kaudit_queue_capacity", ())] == cfg.audit.queue_max_events
        assert got[("kaudit_log_healthy", ())] == 1
        assert got[("kaudit_log_write_seconds_count", ())] >= 1
        assert got[("kaudit_build_info", (("version", kaudit.__version__),))] == 1
        assert ("process_resident_memory_bytes", ()) in got
        ready = httpx.get(f"{mon.url}/readyz", timeout=10)
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"audit_log": {"ok": True}}}
        live = httpx.get(f"{mon.url}/healthz", timeout=10).json()
        assert live["status"] == "alive" and live["version"] == kaudit.__version__
        assert httpx.get(f"{mon.url}/nope", timeout=10).status_code == 404
    # Closed: the recorder's collector left the registry with it.
    with Monitoring(config(tmp_path / "again")) as mon:
        assert mon.url is not None
        assert ("kaudit_events_written_total", ()) not in samples(mon.url)


def test_an_exporter_failing_past_the_limit_makes_the_process_not_ready(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    cfg = config(
        tmp_path,
        audit={
            "log": {"fsync": "never"},
            "destinations": [{"name": "siem", "type": "webhook", "url": url, "retry_attempts": 0}],
        },
        metrics={"exporter_stuck_seconds": 0.3, "lag_refresh_seconds": 0.1},
    )
    with kaudit.open(cfg) as session:
        session.emit("topic.created", actor="User:alice", resource="topic:orders")
    (runner,) = runners_for(cfg)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,))
    try:
        with Monitoring(cfg) as mon:
            mon.watch_exporters([runner])
            thread.start()
            assert mon.url is not None
            deadline = time.monotonic() + 30
            while (ready := httpx.get(f"{mon.url}/readyz", timeout=10)).status_code == 200:
                assert time.monotonic() < deadline, ready.text
                time.sleep(0.05)
            assert ready.status_code == 503
            body = ready.json()
            assert body["status"] == "not ready"
            assert "siem" in body["checks"]["exporters"]["reason"]
            got = samples(mon.url)
            assert got[("kaudit_exporter_failed_total", (("destination", "siem"),))] >= 1
            assert got[("kaudit_exporter_sent_total", (("destination", "siem"),))] == 0
            assert got[("kaudit_exporter_lag_events", (("destination", "siem"),))] == 1
            assert got[("kaudit_exporter_failing_seconds", (("destination", "siem"),))] > 0.3
            assert "/hook" not in httpx.get(f"{mon.url}/metrics", timeout=10).text
    finally:
        stop.set()
        thread.join(30)
        runner.close()


def test_readiness_names_the_broker_that_refuses() -> None:
    port = closed_port()
    health = Health()
    health.add("broker", broker_reachable([f"127.0.0.1:{port}"], 1.0))
    ready, body = health.ready()
    assert not ready
    assert f"127.0.0.1:{port}" in body["checks"]["broker"]["reason"]
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        remove = health.add("broker", broker_reachable([address], 1.0))
        assert health.ready() == (True, {"status": "ready", "checks": {"broker": {"ok": True}}})
        remove()
        assert health.ready() == (True, {"status": "ready", "checks": {}})


def test_latency_buckets_are_cumulative_with_inf_last() -> None:
    latency = Latency((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.005, 1.0):
        latency.observe(seconds)
    assert latency.buckets() == [("0.001", 2), ("0.01", 3), ("+Inf", 4)]
    assert latency.total == pytest.approx(1.0065)


def test_alert_counters_count_by_rule_and_notifier(tmp_path: Path) -> None:
    with Monitoring(config(tmp_path)) as mon:
        assert mon.url is not None
        before = samples(mon.url)
        alert_fired("mass-topic-deletion")
        alert_fired("mass-topic-deletion")
        notification_failed("slack")
        after = samples(mon.url)
    rule = ("kaudit_alerts_fired_total", (("rule", "mass-topic-deletion"),))
    notifier = ("kaudit_alert_notifications_failed_total", (("notifier", "slack"),))
    assert after[rule] - before.get(rule, 0) == 2
    assert after[notifier] - before.get(notifier, 0) == 1


def test_a_taken_metrics_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(kaudit.errors.KauditError, match=r"metrics\.listen: cannot listen"):
            Monitoring(config(tmp_path, metrics={"listen": f"127.0.0.1:{port}"}))


def test_the_checkpoint_age_is_that_of_the_last_signed_checkpoint(tmp_path: Path) -> None:
    keys = generate(tmp_path / "audit", "kaudit/test")
    cfg = config(
        tmp_path,
        audit={
            "log": {"fsync": "never"},
            "integrity": {"checkpoints": {"enabled": True, "key_file": str(keys.private)}},
        },
    )
    assert checkpoint_written_at(cfg)() is None  # no log yet
    with Monitoring(cfg) as mon, kaudit.open(cfg) as session:
        mon.watch_recorder(session.recorder)
        session.emit("topic.created", actor="User:alice", resource="topic:orders")
        session.flush(10)
        assert mon.url is not None
        deadline = time.monotonic() + 30
        while ("kaudit_checkpoint_age_seconds", ()) not in (got := samples(mon.url)):
            assert time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.1)
        assert 0 <= got[("kaudit_checkpoint_age_seconds", ())] < 30
    written = checkpoint_written_at(cfg)()
    newest = max(p.stat().st_mtime for p in checkpoint_files(cfg.log_dir))
    assert written == newest
