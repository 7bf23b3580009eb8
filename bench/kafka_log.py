"""Kafka audit log benchmark: events/s appended with acks=all, and read back.

Starts a local Apache Kafka (or uses the one running in --kafka-dir), then per run:
emit N events through the recorder into a fresh log topic (6 partitions, idempotent
producer, acks=all) and wait until every one is acknowledged; then read the whole topic
back with duplicates removed by event_id. The last line printed is one JSON object.

    .venv/bin/python bench/kafka_log.py [--events N] [--repeat R] [--kafka-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import kaudit
from common import emit_until_durable, local_broker, remove_on_sigterm
from kaudit.config import Config
from kaudit.config.model import KafkaLog
from kaudit.dev.kafka import KafkaInfo
from kaudit.log.kafka import KafkaLogReader


def _config(data_dir: str, servers: str, topic: str) -> Config:
    return Config.model_validate(
        {
            "data_dir": data_dir,
            "cluster": {"id": "bench"},
            "audit": {
                "failure_policy": "fail_closed",
                "queue_max_events": 100_000,
                "block_timeout_ms": 60_000,
                "log": {
                    "type": "kafka",
                    "bootstrap_servers": [servers],
                    "topic": topic,
                    "partitions": 6,
                    "replication_factor": 1,
                },
            },
        }
    )


def one_run(info: KafkaInfo, events: int) -> tuple[float, float, int]:
    topic = f"bench-audit-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as d:
        config = _config(d, info.bootstrap_servers, topic)
        with kaudit.open(config) as session:
            append_s = emit_until_durable(session, events, resources=100)
        log = config.audit.log
        assert isinstance(log, KafkaLog)
        reader = KafkaLogReader(log, group=None)
        started = time.perf_counter()
        read = sum(1 for _ in reader.lines())
        read_s = time.perf_counter() - started
        reader.close()
    if read != events:
        raise SystemExit(f"read back {read} events, wrote {events}")
    return events / append_s, read / read_s, read


def main() -> None:
    remove_on_sigterm()  # its broker and data are removed on SIGTERM too
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kafka-dir", type=Path, default=None)
    args = parser.parse_args()
    with local_broker(args.kafka_dir) as info:
        writes, reads = [], []
        for run in range(args.repeat):
            write_rate, read_rate, n = one_run(info, args.events)
            writes.append(write_rate)
            reads.append(read_rate)
            print(
                f"run {run + 1}: {write_rate:,.0f} events/s appended (acks=all), "
                f"{read_rate:,.0f} events/s read back, {n} events"
            )
    print(
        json.dumps(
            {
                "benchmark": "kafka_log",
                "events": args.events,
                "acks": "all",
                "partitions": 6,
                "events_per_s": round(statistics.median(writes)),
                "read_events_per_s": round(statistics.median(reads)),
                "runs": args.repeat,
                "kafka_version": info.kafka_version if hasattr(info, "kafka_version") else None,
            }
        )
    )


if __name__ == "__main__":
    main()
