"""Parquet benchmark: how fast the Parquet export writes, and how fast `kaudit search`
scans an export.

Records N synthetic events (`kaudit generate`'s traffic over a few hours) into a local
log once. Write: R times, the log's lines go through the Parquet exporter in batches
(columns parsed, spool parts written and fsynced, one file rolled and published), timed
per second of wall clock and per CPU second; the JSON Lines file exporter on the same
lines is the baseline of the same run. Scan: the exported file is copied with new event
ids, sequence numbers and days until the export holds S events (copies of one file:
files of engine size, and the same mix of events), then searches with one filter run
Q times over it (`ExportSearch`, what `kaudit search <folder>` runs). The data is
removed at the end. The last line printed is one JSON object.

    .venv/bin/python bench/parquet.py [--events N] [--repeat R] [--scan-events S] [--queries Q]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import kaudit
from kaudit.config import Config
from kaudit.config.model import FileDestination
from kaudit.exporters.file import FileExporter
from kaudit.exporters.parquet import ROW_GROUP_ROWS, ParquetExporter, parquet_name
from kaudit.exporters.parquet_format import TIME_TYPE, WRITE_OPTIONS
from kaudit.generate import generate
from kaudit.log.segments import LogReader
from kaudit.store.export_search import ExportSearch
from kaudit.store.query import Filter

BATCH = 10_000
SPREAD_SECONDS = 4 * 3600


def record(data_dir: Path, events: int) -> Config:
    config = Config.model_validate(
        {
            "data_dir": str(data_dir),
            "cluster": {"id": "prod-eu-1", "environment": "production"},
            "audit": {"failure_policy": "fail_closed", "log": {"fsync": "never"}},
        }
    )
    with kaudit.open(config) as session:
        generate(session, events, seed=11, spread_seconds=SPREAD_SECONDS)
        session.flush(timeout=600)  # a busy machine writes slowly; nothing is timed here
    return config


def timed_send(
    send: Callable[[list[bytes]], None], lines: list[bytes], finish: Callable[[], None]
) -> tuple[float, float]:
    """(events per wall second, events per CPU second) of sending `lines` in batches,
    then `finish`."""
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(lines), BATCH):
        send(lines[i : i + BATCH])
    finish()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return len(lines) / elapsed, len(lines) / cpu


def write_parquet(config: Config, lines: list[bytes], folder: Path) -> tuple[float, float]:
    destination = FileDestination(
        path=str(folder), encoding="parquet", parquet={"max_age_secs": 3600}
    )
    exporter = ParquetExporter(destination, config)
    try:
        return timed_send(exporter.send, lines, exporter.roll)
    finally:
        exporter.close()


def write_jsonl(lines: list[bytes], path: Path) -> tuple[float, float]:
    exporter = FileExporter(FileDestination(path=str(path), rotation={"max_size_mb": 1 << 16}))
    try:
        return timed_send(exporter.send, lines, lambda: None)
    finally:
        exporter.close()


def grow(folder: Path, target: int) -> int:
    """Copies of the exported files, as other events of other days, until the folder
    holds `target` events; how many it holds."""
    originals = sorted(folder.glob("dt=*/*.parquet"))
    tables = [pq.read_table(f) for f in originals]
    per_copy = sum(t.num_rows for t in tables)
    total, copy = per_copy, 1
    while total < target:
        for table in tables:
            shift = pa.scalar(timedelta(days=copy), pa.duration("us"))
            times = pc.add(table.column("time"), shift).cast(TIME_TYPE)
            table = table.set_column(0, "time", times)
            ids = pc.binary_join_element_wise(table.column("event_id"), f"c{copy}", "-")
            table = table.set_column(table.schema.get_field_index("event_id"), "event_id", ids)
            seqs = pc.add(table.column("sequence_number"), copy * per_copy)
            table = table.set_column(
                table.schema.get_field_index("sequence_number"), "sequence_number", seqs
            )
            day = pc.strftime(times[0], format="%Y-%m-%d").as_py()
            low, high = seqs[0].as_py(), seqs[-1].as_py()
            path = folder / parquet_name(day, "bench", low, high, f"{copy:016x}")
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS, **WRITE_OPTIONS)
        total += per_copy
        copy += 1
    return total


def timed_ms(fn: Callable[[], object], times: int) -> tuple[list[float], list[float]]:
    """Milliseconds of wall clock and of this process's CPU (all threads), per run."""
    wall, cpu = [], []
    for _ in range(times):
        started, cpu_started = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scan-events", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=5, help="times each search runs")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(dir=os.getcwd(), prefix="bench-parquet-"))
    try:
        config = record(base / "data", args.events)
        lines = [line.rstrip(b"\n") for _, line in LogReader(config.log_dir).iter_lines()]
        print(f"recorded {len(lines):,} events")
        runs, jsonl_runs = [], []
        folder = base / "export-0"
        for run in range(args.repeat):
            folder = base / f"export-{run}"
            runs.append(write_parquet(config, lines, folder))
            jsonl_runs.append(write_jsonl(lines, base / f"jsonl-{run}" / "audit.log"))
            shutil.rmtree(base / f"jsonl-{run}")
            size = sum(f.stat().st_size for f in folder.glob("dt=*/*.parquet")) >> 20
            print(
                f"run {run + 1}: Parquet {runs[-1][0]:,.0f} events/s "
                f"({runs[-1][1]:,.0f} per CPU second, {size} MiB); "
                f"JSON Lines {jsonl_runs[-1][0]:,.0f} events/s"
            )
            if run < args.repeat - 1:
                shutil.rmtree(folder)
        shutil.rmtree(base / "data")
        scanned = grow(folder, args.scan_events)
        print(f"export grown to {scanned:,} events")
        search = ExportSearch.open(str(folder), Config())
        searches = {
            "one actor (glob), newest 100": lambda: search.search(Filter(actor="car*"), 100),
            "denied, newest 100": lambda: search.search(Filter(result="denied"), 100),
            "count by type, acl.*": lambda: search.count_by(Filter(type="acl.*"), ("type",)),
        }
        scan_ms: dict[str, float] = {}
        scan_cpu_ms: dict[str, float] = {}
        for name, fn in searches.items():
            samples, cpu_samples = timed_ms(fn, args.queries)
            scan_ms[name] = statistics.median(samples)
            scan_cpu_ms[name] = statistics.median(cpu_samples)
            print(
                f"  {name}: median {scan_ms[name]:.0f} ms ({scan_cpu_ms[name]:.0f} ms CPU), "
                f"max {max(samples):.0f} ms"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(
        json.dumps(
            {
                "benchmark": "parquet",
                "events": len(lines),
                "write_events_per_s": round(statistics.median(r[0] for r in runs)),
                "write_events_per_cpu_s": round(statistics.median(r[1] for r in runs)),
                "write_runs": [round(r[0]) for r in runs],
                "jsonl_events_per_s": round(statistics.median(r[0] for r in jsonl_runs)),
                "scan_events": scanned,
                "scan_one_filter_median_ms": round(max(list(scan_ms.values())[:2])),
                "scan_one_filter_median_cpu_ms": round(max(list(scan_cpu_ms.values())[:2])),
                "scan_median_ms": {k: round(v) for k, v in scan_ms.items()},
                "scan_median_cpu_ms": {k: round(v) for k, v in scan_cpu_ms.items()},
                "load_average_1m": round(os.getloadavg()[0], 1),
                "runs": args.repeat,
            }
        )
    )


if __name__ == "__main__":
    main()
