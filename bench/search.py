"""Search benchmark: indexing rate of the `store` destination and query latency.

Records N synthetic events (`kaudit generate`'s traffic, spread over 30 days) into a
local log once, then R times builds a fresh index from it through the exporter runner
(cursor, batches, SQLite commits with synchronous=FULL) and times that; on the last
index, times typical filtered searches (newest 100) and count-bys, each repeated. The
last line printed is one JSON object. Everything it writes (the log, the indexes) is in
a temporary directory under the current one, removed at the end: about 1 GB per million
events while it runs.

    .venv/bin/python bench/search.py [--events N] [--repeat R] [--queries Q]

Above `--generated` events (default 1,000,000), that many are generated and recorded,
and the log is then written again with `events / generated` copies of each (fresh event
and correlation ids and sequence numbers, times spread evenly between it and the next),
in time order as a recorded log is: generating ten million events through the recorder
took over an hour on the shared machine. `--events 10000000 --repeat 1` for ten million.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

import kaudit
from kaudit.config import Config
from kaudit.config.model import StoreDestination
from kaudit.exporters import ExporterRunner
from kaudit.generate import generate
from kaudit.log.cursor import Cursor
from kaudit.log.segments import LogReader, segment_name
from kaudit.store.exporter import StoreExporter
from kaudit.store.query import Filter, IndexSearch

SPREAD_DAYS = 30


def record(data_dir: Path, events: int) -> tuple[Config, float]:
    config = Config.model_validate(
        {
            "data_dir": str(data_dir),
            "cluster": {"id": "prod-eu-1", "environment": "production"},
            "audit": {"failure_policy": "fail_closed", "log": {"fsync": "never"}},
        }
    )
    started = time.perf_counter()
    with kaudit.open(config) as session:
        generate(session, events, seed=7, spread_seconds=SPREAD_DAYS * 86400)
        # The writer may be far behind the generator on a busy machine: wait for it.
        session.flush(timeout=3600)
    return config, time.perf_counter() - started


_SEGMENT_LINES = 200_000


def expand(config: Config, copies: int, gap_ms: int) -> None:
    """Write the log again with `copies` events for each one recorded: copy k of an event
    `k * gap_ms / copies` after it, with its own ids and sequence number."""
    recorded = config.log_dir.with_name("recorded")
    config.log_dir.rename(recorded)
    config.log_dir.mkdir()
    out = None
    sequence = 0
    try:
        for _, line in LogReader(recorded).iter_lines():
            event = orjson.loads(line)
            at = datetime.fromisoformat(event["timestamp"])
            event_id, correlation = event["event_id"], event["context"]["correlation_id"]
            for k in range(copies):
                if sequence % _SEGMENT_LINES == 0:
                    if out is not None:
                        out.close()
                    out = open(config.log_dir / segment_name(sequence), "wb")  # noqa: SIM115
                when = at + timedelta(milliseconds=k * gap_ms // copies)
                event["timestamp"] = when.isoformat(timespec="milliseconds")[:-6] + "Z"
                event["event_id"] = f"{event_id}{k:03d}"
                event["context"]["correlation_id"] = f"{correlation}_{k}"
                event["integrity"]["sequence_number"] = sequence
                out.write(orjson.dumps(event) + b"\n")
                sequence += 1
    finally:
        if out is not None:
            out.close()
    shutil.rmtree(recorded)


def build_index(config: Config, index: Path, events: int) -> tuple[float, float]:
    """events/s from an empty index to every event indexed: per second of wall clock
    and per second of this process's CPU (the machine may be shared)."""
    destination = StoreDestination(path=str(index))
    cursor = Cursor(index.with_suffix(".cursor.json"))
    runner = ExporterRunner(
        StoreExporter(destination, config.data_path), log_dir=config.log_dir, cursor=cursor
    )
    started, cpu = time.perf_counter(), time.process_time()
    try:
        consumed = runner.drain()
    finally:
        runner.close()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert consumed == events, (consumed, events)
    return events / elapsed, events / cpu


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def timed(fn: Callable[[], object], times: int) -> list[float]:
    out = []
    for _ in range(times):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--queries", type=int, default=20, help="times each query runs")
    parser.add_argument(
        "--generated", type=int, default=1_000_000, help="events generated (the rest copied)"
    )
    args = parser.parse_args()
    # Stopped with SIGTERM, it still removes what it wrote (the `with` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(dir=os.getcwd(), prefix="bench-search-") as d:
        base = Path(d)
        generated = min(args.events, args.generated)
        copies = args.events // generated
        if copies * generated != args.events:
            parser.error(f"--events must be a multiple of --generated ({generated:,})")
        config, seconds = record(base / "data", generated)
        print(f"recorded {generated:,} events in {seconds:.1f}s")
        if copies > 1:
            started = time.perf_counter()
            expand(config, copies, SPREAD_DAYS * 86_400_000 // generated)
            print(
                f"wrote {copies} of each: {args.events:,} in {time.perf_counter() - started:.1f}s"
            )
        rates, cpu_rates = [], []
        size = 0
        index = base / "index-0.sqlite"
        for run in range(args.repeat):
            index = base / f"index-{run}.sqlite"
            rate, cpu_rate = build_index(config, index, args.events)
            rates.append(rate)
            cpu_rates.append(cpu_rate)
            size = index.stat().st_size >> 20
            print(
                f"run {run + 1}: indexed at {rate:,.0f} events/s "
                f"({cpu_rate:,.0f} per CPU second, {size} MiB)"
            )
            if run < args.repeat - 1:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{index}{suffix}").unlink(missing_ok=True)
        search = IndexSearch(index)
        now = datetime.now(UTC)
        week, day = now - timedelta(days=7), now - timedelta(days=1)
        queries = {
            "deleted topics, last 7 days": Filter(type="topic.deleted", since=week),
            "denied for one actor": Filter(actor="bob", result="denied"),
            "topic.* on one topic": Filter(type="topic.*", resource="topic:orders"),
            "denied, last 24 hours": Filter(result="denied", since=day),
            "acl.* in the cluster, last 7 days": Filter(
                type="acl.*", cluster="prod-eu-1", since=week
            ),
            "free text, last 7 days": Filter(query="storage unreachable", since=week),
            "free text prefix": Filter(query="production-backup-004*"),
            "newest, no filter": Filter(),
        }
        counts = {
            "count by type, last 7 days": (Filter(since=week), ("type",)),
            "count by actor, denied": (Filter(result="denied"), ("actor",)),
            "count by day, backups": (Filter(type="backup.*"), ("day",)),
        }
        query_ms: list[float] = []
        for name, flt in queries.items():
            samples = timed(lambda flt=flt: search.search(flt, 100), args.queries)
            query_ms += samples
            print(
                f"  {name}: p50 {percentile(samples, 0.5):.1f} ms, "
                f"p95 {percentile(samples, 0.95):.1f} ms"
            )
        count_ms: list[float] = []
        for name, (flt, keys) in counts.items():
            samples = timed(lambda flt=flt, keys=keys: search.count_by(flt, keys), args.queries)
            count_ms += samples
            print(
                f"  {name}: p50 {percentile(samples, 0.5):.1f} ms, "
                f"p95 {percentile(samples, 0.95):.1f} ms"
            )
        search.close()
    print(
        json.dumps(
            {
                "benchmark": "search",
                "events": args.events,
                "index_events_per_s": round(statistics.median(rates)),
                "index_runs": [round(r) for r in rates],
                "index_events_per_cpu_s": round(statistics.median(cpu_rates)),
                "query_p50_ms": round(percentile(query_ms, 0.5), 2),
                "query_p95_ms": round(percentile(query_ms, 0.95), 2),
                "count_by_p50_ms": round(percentile(count_ms, 0.5), 2),
                "count_by_p95_ms": round(percentile(count_ms, 0.95), 2),
                "index_mib": size,
                "queries": len(queries),
                "runs": args.repeat,
            }
        )
    )


if __name__ == "__main__":
    main()
