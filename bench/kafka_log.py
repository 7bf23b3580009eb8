"""Kafka audit log benchmark: events/s appended with acks=all, and read back.

Starts a local Apache Kafka (or uses the one running in --kafka-dir), then per run:
emit N events through the recorder into a fresh log topic (6 partitions, idempotent
producer, acks=all) and wait until every one is acknowledged; then read the whole topic
back with duplicates removed by event_id. In the same run, as a baseline of what this
machine and broker take: a bare confluent-kafka producer (same settings) sending N
ready-made event lines of the same size, one record each. The median of the runs and
their spread, and the load average (the machine is shared), are reported; the last
line printed is one JSON object.

    .venv/bin/python bench/kafka_log.py [--events N] [--repeat R] [--kafka-dir DIR]
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


def bare_producer(info: KafkaInfo, events: int) -> float:
    """Records/s of a bare idempotent acks=all producer sending `events` event-sized
    records, keyed by 100 resources, to a fresh 6-partition topic (the baseline)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"bench-bare-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": info.bootstrap_servers})
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(30)
    producer = Producer(
        {
            "bootstrap.servers": info.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    value = b"x" * 720  # the size of one encoded bench event
    keys = [f"topic:t{i}".encode() for i in range(100)]
    started = time.perf_counter()
    for i in range(events):
        while True:
            try:
                producer.produce(topic, value, keys[i % 100])
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    return events / (time.perf_counter() - started)


def main() -> None:
    remove_on_sigterm()  # its broker and data are removed on SIGTERM too
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kafka-dir", type=Path, default=None)
    args = parser.parse_args()
    with local_broker(args.kafka_dir) as info:
        writes, reads, bares, loads = [], [], [], []
        for run in range(args.repeat):
            loads.append(os.getloadavg()[0])
            write_rate, read_rate, n = one_run(info, args.events)
            bare = bare_producer(info, args.events)
            writes.append(write_rate)
            reads.append(read_rate)
            bares.append(bare)
            print(
                f"run {run + 1}: {write_rate:,.0f} events/s appended (acks=all), "
                f"{read_rate:,.0f} events/s read back, {n} events; bare producer "
                f"{bare:,.0f} records/s; load average {loads[-1]:.1f} on {os.cpu_count()} CPUs"
            )
    print(
        json.dumps(
            {
                "benchmark": "kafka_log",
                "events": args.events,
                "acks": "all",
                "partitions": 6,
                "events_per_s": round(statistics.median(writes)),
                "events_per_s_runs": [round(w) for w in writes],
                "events_per_s_min_max": [round(min(writes)), round(max(writes))],
                "read_events_per_s": round(statistics.median(reads)),
                "bare_producer_records_per_s": round(statistics.median(bares)),
                "bare_producer_runs": [round(b) for b in bares],
                "load_average_1min": [round(x, 1) for x in loads],
                "cpus": os.cpu_count(),
                "runs": args.repeat,
                "kafka_version": info.kafka_version if hasattr(info, "kafka_version") else None,
            }
        )
    )


if __name__ == "__main__":
    main()
