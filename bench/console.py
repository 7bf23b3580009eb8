"""Console benchmark: what auditing adds to a console mutation beyond its Kafka call.

A console action is RBAC, the Kafka call, then one audit event handed to the recorder
(`ConsoleService.run`). Each sample is one `produce` action (TOPIC_PRODUCE, recorded as
`records.produced`) by a user whose policy allows it, against a local broker: the whole
service call is timed, and so is the Kafka call inside it; the difference is the
console's audit work (the RBAC decision, the event, the recorder's enqueue). The log is
local (fsync batch), its writer running behind. Figures are p50 and p99 over the
samples, in milliseconds; the target is at most 2 ms at p99. The last line printed is one
JSON object.

    .venv/bin/python bench/console.py [--actions N] [--repeat R] [--kafka-dir D]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from common import local_broker
from kaudit.config import Config
from kaudit.console.actions import messages
from kaudit.console.app import build_app
from kaudit.console.audit import RequestInfo
from kaudit.console.identity import ConsoleUser
from kaudit.console.service import Call, ConsoleService
from kaudit.dev.kafka import KafkaInfo
from kaudit.log.segments import LogReader
from kaudit.session import AuditSession


def _config(data_dir: str, info: KafkaInfo) -> Config:
    admin = info.client_config("admin")
    return Config.model_validate(
        {
            "data_dir": data_dir,
            "audit": {"log": {"type": "local", "fsync": "batch"}},
            "console": {
                "clusters": [
                    {
                        "name": "local",
                        "bootstrap_servers": [info.sasl_bootstrap_servers],
                        "security": {
                            "security_protocol": admin["security.protocol"],
                            "sasl_mechanism": admin["sasl.mechanism"],
                            "sasl_username": admin["sasl.username"],
                            "sasl_password": admin["sasl.password"],
                        },
                    }
                ],
                "rbac": {
                    "policies": [
                        # A few policies to walk, as a real file has; the last one allows.
                        *(
                            {
                                "resource": ["cluster", "*", "topic", f"team{i}-*"],
                                "effect": "Allow",
                                "actions": ["TOPIC_EDIT"],
                                "role": f"team{i}",
                            }
                            for i in range(20)
                        ),
                        {
                            "resource": ["cluster", "*", "topic", "secret-*"],
                            "effect": "Deny",
                            "actions": ["TOPIC_PRODUCE"],
                            "role": "*",
                        },
                        {
                            "resource": ["cluster", "*"],
                            "effect": "Allow",
                            "actions": ["TOPIC_INSPECT", "TOPIC_EDIT", "TOPIC_PRODUCE"],
                            "role": "dev",
                        },
                    ]
                },
            },
        }
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(info: KafkaInfo, actions: int) -> dict[str, float]:
    topic = f"bench-console-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(info.client_config())
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    with tempfile.TemporaryDirectory(dir=os.getcwd()) as d:
        config = _config(d, info)
        with AuditSession(config, source="console") as session:
            app = build_app(config, session.recorder)
            service: ConsoleService = app.state.console.service
            user = ConsoleUser("local", "alice", "alice", "Alice", roles=("dev",))
            kafka_ms: list[float] = []
            real_produce = messages.produce_message

            def timed_produce(*a: Any, **k: Any) -> dict[str, Any]:
                started = time.perf_counter()
                try:
                    return real_produce(*a, **k)
                finally:
                    kafka_ms.append((time.perf_counter() - started) * 1000)

            messages.produce_message = timed_produce  # type: ignore[assignment]
            try:
                for warm in range(50):
                    info_ = RequestInfo(f"warm-{warm}", "127.0.0.1", "bench")
                    service.produce(Call(user, info_, "local"), topic, "k", "v" * 200)
                kafka_ms.clear()
                added: list[float] = []
                for i in range(actions):
                    call = Call(user, RequestInfo(f"req-{i}", "127.0.0.1", "bench"), "local")
                    started = time.perf_counter()
                    service.produce(call, topic, f"key-{i}", "v" * 200, [("trace", "abc")])
                    total = (time.perf_counter() - started) * 1000
                    added.append(total - kafka_ms[-1])
            finally:
                messages.produce_message = real_produce
            session.flush()
            service.clusters.close()
        recorded = sum(
            1
            for _, line in LogReader(Path(d) / "log").iter_lines()
            if b'"records.produced"' in line
        )
        assert recorded == actions + 50, (recorded, actions)
    return {
        "audit_p50_ms": _percentile(added, 0.50),
        "audit_p99_ms": _percentile(added, 0.99),
        "kafka_p50_ms": _percentile(kafka_ms, 0.50),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--actions", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kafka-dir", type=Path, default=None)
    args = parser.parse_args()
    runs = []
    with local_broker(args.kafka_dir) as info:
        for run in range(args.repeat):
            figures = measure(info, args.actions)
            runs.append(figures)
            print(
                f"run {run + 1}: audit adds p50 {figures['audit_p50_ms']:.3f} ms, "
                f"p99 {figures['audit_p99_ms']:.3f} ms; the Kafka call p50 "
                f"{figures['kafka_p50_ms']:.2f} ms"
            )
    p99 = statistics.median(r["audit_p99_ms"] for r in runs)
    print(
        json.dumps(
            {
                "benchmark": "console",
                "action": "produce",
                "actions": args.actions,
                "audit_p50_ms": round(statistics.median(r["audit_p50_ms"] for r in runs), 3),
                "audit_p99_ms": round(p99, 3),
                "kafka_p50_ms": round(statistics.median(r["kafka_p50_ms"] for r in runs), 2),
                "target_p99_ms": 2.0,
                "within_target": p99 <= 2.0,
                "runs": args.repeat,
            }
        )
    )


if __name__ == "__main__":
    main()
