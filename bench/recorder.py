"""Recorder benchmark: events/s from emit() until durable in the local log (fsync batch),
and the cost of one emit() call as seen by the caller.

One writer, ~500-byte canonical events, fail_closed so that no event is dropped: when
the writer falls behind the caller waits, which is what a sustained rate has to include.
The last line printed is one JSON object.

    .venv/bin/python bench/recorder.py [--events N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import kaudit
from common import DETAILS, emit_until_durable, remove_on_sigterm
from kaudit.config import Config
from kaudit.log.segments import LogReader


def _config(data_dir: str, policy: str, queue: int) -> Config:
    return Config.model_validate(
        {
            "data_dir": data_dir,
            "cluster": {"id": "prod-us-west-2", "environment": "production"},
            "audit": {
                "failure_policy": policy,
                "queue_max_events": queue,
                "log": {"type": "local", "fsync": "batch", "segment_max_mb": 64},
            },
        }
    )


def throughput(events: int) -> tuple[float, int]:
    """events/s from the first emit() until flush() returns (everything durable)."""
    with tempfile.TemporaryDirectory(dir=os.getcwd()) as d:
        with kaudit.open(_config(d, "fail_closed", 100_000)) as session:
            elapsed = emit_until_durable(session, events)
        lines, _ = LogReader(os.path.join(d, "log")).read(None, 1000)
        size = sum(len(x) for x in lines) // len(lines)
        written = sum(1 for _ in LogReader(os.path.join(d, "log")).iter_lines())
        assert written == events, (written, events)
    return events / elapsed, size


def emit_latency(events: int) -> tuple[float, float]:
    """p50 and p99 of one emit() call (µs), the writer running behind it."""
    samples = []
    with (
        tempfile.TemporaryDirectory(dir=os.getcwd()) as d,
        kaudit.open(_config(d, "fail_open", events + 1)) as session,
    ):
        emit = session.emit
        clock = time.perf_counter_ns
        for i in range(events):
            t0 = clock()
            emit(
                "topic.created",
                actor="User:alice",
                resource="topic:orders",
                details=DETAILS,
                correlation_id=f"req_{i}",
            )
            samples.append(clock() - t0)
            if i % 1000 == 999:
                time.sleep(0.002)  # a realistic caller: bursts, not a closed loop
        session.flush()
    samples.sort()
    return samples[len(samples) // 2] / 1000, samples[int(len(samples) * 0.99)] / 1000


def main() -> None:
    remove_on_sigterm()  # its temporary data is removed on SIGTERM too
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rates, p50s, p99s = [], [], []
    size = 0
    for run in range(args.repeat):
        rate, size = throughput(args.events)
        p50, p99 = emit_latency(min(args.events, 200_000))
        rates.append(rate)
        p50s.append(p50)
        p99s.append(p99)
        print(
            f"run {run + 1}: {rate:,.0f} events/s durable, emit p50 {p50:.2f} µs "
            f"p99 {p99:.2f} µs, {size} B/event"
        )
    print(
        json.dumps(
            {
                "benchmark": "recorder",
                "events": args.events,
                "event_bytes": size,
                "fsync": "batch",
                "events_per_s": round(statistics.median(rates)),
                "emit_p50_us": round(statistics.median(p50s), 2),
                "emit_p99_us": round(statistics.median(p99s), 2),
                "runs": args.repeat,
            }
        )
    )


if __name__ == "__main__":
    main()
