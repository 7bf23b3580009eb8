"""Alert engine benchmark: events/s judged by a set of 50 rules, and the time from an
event being written to its notification arriving.

1. Throughput: N events (default 1,000,000) in a realistic mix of 21 types from 200
   principals are written to a fresh local log; then the engine judges the whole log
   with 50 rules (the seed's 3, 5 built-ins, 36 rules on event types with field tests,
   windows and groups, 4 indexed on other fields such as action.result, 2 evaluated on
   every event), saving state per batch as it does in `kaudit run`. The baseline in the
   same run is reading the same log with no rules (the reading floor). Each figure is the
   median of --repeat runs, each from a fresh state.
2. Latency: the engine runs as in `kaudit run` (its judging and delivery threads, every
   alert recorded in the log) over a fresh log while a background writer adds other
   events at --background events/s; --samples times, a `backup.failed` is emitted and
   the time until the webhook receiver has its notification is measured.

The last line printed is one JSON object.

    .venv/bin/python bench/alerts.py [--events N] [--repeat R] [--samples S]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "exporters"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "alerts"))

from alert_servers import AlertReceiver

import kaudit
from kaudit.alerts import AlertEngine
from kaudit.config import Config
from kaudit.log.segments import LogReader

MIX = {
    "records.produced": 25, "records.consumed": 25, "kafka.request": 10, "auth.login": 8,
    "access.denied": 5, "topic.created": 4, "acl.described": 3, "auth.failed": 3,
    "topic.config_changed": 3, "acl.created": 2, "topic.deleted": 2, "config.changed": 2,
    "backup.completed": 2, "group.offsets_reset": 1, "acl.deleted": 1, "records.deleted": 1,
    "auth.credentials_changed": 1, "group.deleted": 1, "backup.failed": 0.5,
    "restore.started": 0.5, "audit.degraded": 0.1,
}  # fmt: skip
RESULTS = {"access.denied": "denied", "auth.failed": "failure"}


def rules(url: str) -> list[dict[str, Any]]:
    """50 rules: 3 of the seed, 36 on event types, 4 on other fields, 2 on everything
    (plus the 5 built-ins enabled in the configuration)."""
    notify = [{"type": "webhook", "url": f"{url}/hook"}]
    out: list[dict[str, Any]] = [
        {"name": "backup-failure", "condition": "event_type == 'backup.failed'",
         "severity": "high", "notify": notify},
        {"name": "access-denied-spike", "condition": "event_type == 'access.denied'",
         "threshold": 10, "window": "5m", "severity": "medium", "notify": notify},
        {"name": "unauthorized-restore", "severity": "high", "notify": notify,
         "condition": "event_type == 'restore.started' and context.environment == 'production'"},
    ]  # fmt: skip
    types = [t for t in MIX if t not in ("backup.failed", "restore.started")]
    for i in range(36):
        event_type = types[i % len(types)]
        rule: dict[str, Any] = {"name": f"r{i}", "notify": notify, "cooldown": "10m"}
        kind = i % 4
        if kind == 0:
            rule["condition"] = f"event_type == '{event_type}' and resource.id == 't{i}'"
        elif kind == 1:
            rule |= {"condition": f"event_type == '{event_type}' and actor.id =~ 'User:svc-.*'",
                     "threshold": 500, "window": "1m", "group_by": "actor.id"}  # fmt: skip
        elif kind == 2:
            rule |= {
                "condition": f"event_type in ['{event_type}', 'topic.deleted'] and "
                "context.environment == 'production'",
                "threshold": 2000,
                "window": "5m",
            }
        else:
            rule["condition"] = (
                f"event_type == '{event_type}' and not (actor.client_id in ['app-1', 'app-2'])"
            )
            rule |= {"threshold": 1000, "window": "1m", "group_by": ["actor.client_id"]}
        out.append(rule)
    out += [
        {"name": "denied-prod", "condition": "action.result == 'denied' and "
         "context.environment == 'production'", "threshold": 1000, "window": "1m",
         "group_by": "actor.id", "notify": notify},
        {"name": "failures", "condition": "action.result == 'failure'", "threshold": 2000,
         "window": "1m", "notify": notify},
        {"name": "staging-activity", "condition": "context.environment == 'staging'",
         "notify": notify},
        {"name": "admin-ops", "condition": "actor.roles == ['admin'] and action.result == 'success'"
         " and resource.type in ['acl', 'cluster']", "cooldown": "1h", "notify": notify},
        {"name": "svc-errors", "condition": "actor.id =~ 'User:svc-9.*' and "
         "action.result != 'success'", "threshold": 5000, "window": "1m", "notify": notify},
        {"name": "big-topics", "condition": "details.partitions > 100", "notify": notify},
    ]  # fmt: skip
    assert len(out) == 45, len(out)
    return out


BUILTINS = {
    "auth_failures": {"enabled": True, "threshold": 50, "window": "1m"},
    "access_denied_burst": {"enabled": True, "threshold": 200, "window": "1m"},
    "off_hours_changes": {"enabled": True, "hours": "00:00-24:00", "days": ["mon"]},
    "audit_degraded": {"enabled": True},
    "gateway_bypass": {"enabled": True},
}


def config(data: Path, url: str) -> Config:
    return Config.model_validate({
        "data_dir": str(data),
        "cluster": {"id": "bench", "environment": "production"},
        "audit": {"log": {"fsync": "never"}, "alerts": rules(url),
                  "builtin_alerts": BUILTINS},
    })  # fmt: skip


def write_events(session: kaudit.AuditSession, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    types = rng.choices(list(MIX), weights=list(MIX.values()), k=n)
    emit = session.emit
    for i, event_type in enumerate(types):
        principal = f"User:svc-{i % 200}" if i % 3 else f"User:person-{i % 50}"
        emit(
            event_type,
            actor={"type": "user", "id": principal, "ip_address": f"10.0.{i % 7}.{i % 50}",
                   "client_id": f"app-{i % 12}", "roles": ["ops"]},
            resource={"type": "topic", "id": f"t{i % 100}"},
            result=RESULTS.get(event_type, "success"),
            details={"partitions": 6, "records": i % 1000},
        )  # fmt: skip
        if i % 50_000 == 0:
            session.flush(timeout=600)  # the queue holds 100,000: never let it fill
    session.flush(timeout=600)


def throughput(work: Path, cfg: Config, events: int) -> tuple[float, float, int]:
    """(seconds to judge the whole log, CPU seconds of the judging thread, alerts
    raised), from a fresh engine state."""
    shutil.rmtree(work / "alerts", ignore_errors=True)
    shutil.rmtree(work / "cursors", ignore_errors=True)
    engine = AlertEngine(cfg)
    try:
        started, cpu = time.perf_counter(), time.thread_time()
        read = engine.drain()
        elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu
        assert read == events, (read, events)
        return elapsed, cpu, engine.counters.alerts_fired
    finally:
        engine.close()


def read_only(log_dir: Path) -> float:
    reader = LogReader(log_dir)
    started = time.perf_counter()
    position = None
    while True:
        lines, position = reader.read(position, 5000)
        if not lines:
            break
    return time.perf_counter() - started


def latency(work: Path, url: str, receiver: AlertReceiver, samples: int, rate: int) -> list[float]:
    """Seconds from emit() to the notification arriving, per sample."""
    cfg = config(work, url)
    stop = threading.Event()
    with kaudit.open(cfg) as session:

        def record(event_type: str, fields: Any) -> None:
            session.emit(event_type, durable=True, **fields)

        engine = AlertEngine(cfg, record=record)
        runner = threading.Thread(target=engine.run, args=(stop,))
        runner.start()

        def background() -> None:
            i = 0
            while not stop.is_set():
                started = time.perf_counter()
                for _ in range(rate // 10):
                    i += 1
                    session.emit("records.produced", actor=f"User:svc-{i % 200}",
                                 resource=f"topic:t{i % 100}")  # fmt: skip
                stop.wait(max(0.0, 0.1 - (time.perf_counter() - started)))

        noise = threading.Thread(target=background)
        noise.start()
        out = []
        try:
            for n in range(samples):
                before = len(receiver.requests)
                started = time.perf_counter()
                session.emit("backup.failed", actor="User:alice", resource=f"backup:b{n}")
                receiver.wait_for(before + 1, timeout_s=30)
                out.append(time.perf_counter() - started)
                time.sleep(0.05)  # apart, so each sample starts from a quiet engine loop
        finally:
            stop.set()
            noise.join()
            runner.join()
            engine.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--background", type=int, default=5000, help="events/s meanwhile")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # one line per alert raised is not what is measured

    receiver = AlertReceiver()
    receiver.start()
    work = Path(tempfile.mkdtemp(prefix="kaudit-bench-alerts-"))
    try:
        cfg = config(work / "throughput", receiver.url)
        started = time.perf_counter()
        with kaudit.open(cfg) as session:
            write_events(session, args.events)
        print(f"wrote {args.events} events in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)  # fmt: skip
        reads = [read_only(cfg.log_dir) for _ in range(args.repeat)]
        runs = [throughput(cfg.data_path, cfg, args.events) for _ in range(args.repeat)]
        judged = [args.events / s for s, _, _ in runs]
        per_cpu = [args.events / c for _, c, _ in runs]
        print(f"judging runs (events/s): {[round(x) for x in judged]}, per CPU second: "
              f"{[round(x) for x in per_cpu]}; alerts raised per run: {runs[0][2]}",
              file=sys.stderr)  # fmt: skip
        waits = latency(work / "latency", receiver.url, receiver, args.samples, args.background)
        waits.sort()
        result = {
            "events": args.events,
            "rules": 50,
            "events_per_s_judged": round(statistics.median(judged)),
            "events_per_cpu_s_judged": round(statistics.median(per_cpu)),
            "baseline_read_events_per_s": round(args.events / statistics.median(reads)),
            "alerts_raised": runs[0][2],
            "load_average_1m": round(os.getloadavg()[0], 1),
            "cpus": os.cpu_count(),
            "latency_median_s": round(statistics.median(waits), 3),
            "latency_p95_s": round(waits[max(0, round(0.95 * len(waits)) - 1)], 3),
            "latency_max_s": round(waits[-1], 3),
            "latency_samples": len(waits),
            "background_events_per_s": args.background,
        }
    finally:
        receiver.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
