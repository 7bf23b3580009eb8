"""Verification benchmark: events/s verified, and what integrity costs the recorder.

Builds a local log of N ~700-byte events through `kaudit.open` with the HMAC chain and
Merkle checkpoints (every 10,000 events) on, in a temporary directory, then times
`verify_log` on it (a) with the public key only and (b) with the public key and the
HMAC key. The same run measures the recorder's durable throughput (fail_closed, from
the first emit() until flush() returns, fsync batch, as bench/recorder.py does) with
integrity off, with the HMAC chain and checkpoints (`recorder_ratio_with_integrity`),
and with checkpoints alone, interleaved so all see the same machine state. The HMAC
is computed by the writer; the Merkle tree by the checkpoint follower process, at the
lowest CPU priority, which may lag while the writer is flat out: `close_seconds_*` is
how long close() takes after the last flush (with integrity: until that follower has
caught up and written the final checkpoint). As wall-clock rates on a shared machine
are noisy, the CPU the recorder's process spends per event (`recorder_cpu_us_*`) and
the follower process's (`follower_cpu_us_per_event`) are reported too.

The log was just written, so verification reads it from the page cache: the figures are
the verifier's CPU cost, not the disk's.

The last line printed is one JSON object.

    .venv/bin/python bench/verify.py [--events N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kaudit
from common import emit_until_durable, remove_on_sigterm
from kaudit.config import Config
from kaudit.integrity.keys import KeyRing, generate, load_verifiers
from kaudit.integrity.verify import verify_log
from kaudit.log.segments import LogReader

HMAC_ENV = "KAUDIT_BENCH_HMAC"
HMAC_KEY = "b" * 64
DETAILS = {"partitions": 6}


def _config(data_dir: Path, key_file: Path | None, *, chain: bool = True) -> Config:
    integrity: dict[str, Any] = {}
    if key_file is not None:
        integrity = {
            "signing": {"enabled": chain, "key_env_var": HMAC_ENV},
            "chain": {"enabled": chain},
            "checkpoints": {"enabled": True, "key_file": str(key_file), "every_events": 10_000},
        }
    return Config.model_validate(
        {
            "data_dir": str(data_dir),
            "audit": {
                "failure_policy": "fail_closed",
                "queue_max_events": 100_000,
                "log": {"type": "local", "fsync": "batch", "segment_max_mb": 64},
                "integrity": integrity,
            },
        }
    )


@dataclass
class Recorded:
    rate: float  # events/s from the first emit() until flush() returns
    close_s: float  # then close(): with checkpoints, the follower catching up
    cpu_us: float  # CPU of this process (callers and writer) per event, emit to flush
    child_cpu_us: float  # CPU of the checkpoint follower process per event, start included


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # of exited, waited-for children
    return usage.ru_utime + usage.ru_stime


def record(data_dir: Path, events: int, key_file: Path | None, *, chain: bool = True) -> Recorded:
    """One durable run (see the module docstring) and what it cost in time and CPU."""
    children = _children_cpu()
    session = kaudit.open(_config(data_dir, key_file, chain=chain))
    try:
        cpu = time.process_time()
        elapsed = emit_until_durable(session, events, details=DETAILS)
        cpu = time.process_time() - cpu
    finally:
        closing = time.perf_counter()
        session.close()
    closed = time.perf_counter() - closing
    child = _children_cpu() - children
    return Recorded(events / elapsed, closed, cpu / events * 1e6, child / events * 1e6)


def timed_verify(log_dir: Path, ring: KeyRing, hmac_key: bytes | None) -> tuple[float, int]:
    started = time.perf_counter()
    report = verify_log(log_dir, verifiers=ring, hmac_key=hmac_key)
    elapsed = time.perf_counter() - started
    assert report.ok, [f.message for f in report.findings]
    return report.events / elapsed, report.checkpoints_checked


def main() -> None:
    remove_on_sigterm()  # its temporary data is removed on SIGTERM too
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ[HMAC_ENV] = HMAC_KEY
    n = args.events
    with tempfile.TemporaryDirectory(dir=os.getcwd()) as tmp:
        root = Path(tmp)
        key_file = generate(root / "keys" / "bench", "kaudit-bench/prod").private
        ring = load_verifiers([root / "keys" / "bench.pub"])
        runs_off: list[Recorded] = []
        runs_on: list[Recorded] = []
        runs_cp: list[Recorded] = []
        for run in range(args.repeat):
            runs_off.append(record(root / f"off{run}", n, None))
            runs_on.append(record(root / f"on{run}", n, key_file))
            runs_cp.append(record(root / f"cp{run}", n, key_file, chain=False))
            off_r, on_r, cp_r = runs_off[-1], runs_on[-1], runs_cp[-1]
            print(
                f"recorder run {run + 1}: integrity off {off_r.rate:,.0f} events/s "
                f"({off_r.cpu_us:.2f} µs CPU/event), HMAC chain + checkpoints "
                f"{on_r.rate:,.0f} events/s ({on_r.cpu_us:.2f} µs + follower "
                f"{on_r.child_cpu_us:.2f} µs), checkpoints only {cp_r.rate:,.0f} events/s; "
                f"close {off_r.close_s:.2f} s off, {on_r.close_s:.2f} s on (final checkpoint)",
                flush=True,
            )
        log_dir = root / "on0" / "log"
        lines, _ = LogReader(log_dir).read(None, 1000)
        size = sum(len(x) for x in lines) // len(lines)
        pub: list[float] = []
        both: list[float] = []
        checkpoints = 0
        for run in range(args.repeat):
            rate, checkpoints = timed_verify(log_dir, ring, None)
            pub.append(rate)
            rate, _ = timed_verify(log_dir, ring, HMAC_KEY.encode())
            both.append(rate)
            print(
                f"verify run {run + 1}: public key {pub[-1]:,.0f} events/s, "
                f"public key + HMAC {both[-1]:,.0f} events/s ({checkpoints} checkpoints)",
                flush=True,
            )

    def median(runs: list[Recorded], what: str) -> float:
        return statistics.median(getattr(r, what) for r in runs)

    off, on, cp = median(runs_off, "rate"), median(runs_on, "rate"), median(runs_cp, "rate")
    print(
        json.dumps(
            {
                "benchmark": "verify",
                "events": n,
                "event_bytes": size,
                "checkpoint_every_events": 10_000,
                "verify_events_per_s": round(statistics.median(pub)),
                "verify_with_hmac_events_per_s": round(statistics.median(both)),
                "recorder_events_per_s_integrity_off": round(off),
                "recorder_events_per_s_integrity_on": round(on),
                "recorder_ratio_with_integrity": round(on / off, 3),
                "recorder_events_per_s_checkpoints_only": round(cp),
                "recorder_ratio_checkpoints_only": round(cp / off, 3),
                "close_seconds_integrity_off": round(median(runs_off, "close_s"), 3),
                "close_seconds_integrity_on": round(median(runs_on, "close_s"), 3),
                "recorder_cpu_us_per_event_integrity_off": round(median(runs_off, "cpu_us"), 2),
                "recorder_cpu_us_per_event_integrity_on": round(median(runs_on, "cpu_us"), 2),
                "follower_cpu_us_per_event": round(median(runs_on, "child_cpu_us"), 2),
                "runs": args.repeat,
            }
        )
    )


if __name__ == "__main__":
    main()
