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
caught up and written the final checkpoint).

The log was just written, so verification reads it from the page cache: the figures are
the verifier's CPU cost, not the disk's.

The last line printed is one JSON object.

    .venv/bin/python bench/verify.py [--events N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import kaudit
from common import emit_until_durable
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


def record(
    data_dir: Path, events: int, key_file: Path | None, *, chain: bool = True
) -> tuple[float, float]:
    """events/s from the first emit() until flush() returns (everything durable), and
    the seconds close() then takes: with checkpoints, until the follower process has
    caught up and written the final checkpoint."""
    session = kaudit.open(_config(data_dir, key_file, chain=chain))
    try:
        elapsed = emit_until_durable(session, events, details=DETAILS)
    finally:
        closing = time.perf_counter()
        session.close()
    return events / elapsed, time.perf_counter() - closing


def timed_verify(log_dir: Path, ring: KeyRing, hmac_key: bytes | None) -> tuple[float, int]:
    started = time.perf_counter()
    report = verify_log(log_dir, verifiers=ring, hmac_key=hmac_key)
    elapsed = time.perf_counter() - started
    assert report.ok, [f.message for f in report.findings]
    return report.events / elapsed, report.checkpoints_checked


def main() -> None:
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
        rates_off: list[float] = []
        rates_on: list[float] = []
        rates_cp: list[float] = []
        closes_off: list[float] = []
        closes_on: list[float] = []
        for run in range(args.repeat):
            rate, close_s = record(root / f"off{run}", n, None)
            rates_off.append(rate)
            closes_off.append(close_s)
            rate, close_s = record(root / f"on{run}", n, key_file)
            rates_on.append(rate)
            closes_on.append(close_s)
            rates_cp.append(record(root / f"cp{run}", n, key_file, chain=False)[0])
            print(
                f"recorder run {run + 1}: integrity off {rates_off[-1]:,.0f} events/s, "
                f"HMAC chain + checkpoints {rates_on[-1]:,.0f} events/s, "
                f"checkpoints only {rates_cp[-1]:,.0f} events/s; close {closes_off[-1]:.2f} s "
                f"off, {closes_on[-1]:.2f} s on (final checkpoint)",
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
    off, on = statistics.median(rates_off), statistics.median(rates_on)
    cp = statistics.median(rates_cp)
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
                "close_seconds_integrity_off": round(statistics.median(closes_off), 3),
                "close_seconds_integrity_on": round(statistics.median(closes_on), 3),
                "runs": args.repeat,
            }
        )
    )


if __name__ == "__main__":
    main()
