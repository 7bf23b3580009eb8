"""Does a change make the gateway's hot path slower? The gateway's CPU per request and per
MiB, this checkout against a baseline revision, on the same broker, alternating.

Two `kaudit gateway` processes (fail_open) run side by side in front of one local
broker: one with this checkout's code, one with `--baseline`'s (its `src/`, exported
with `git archive` and put first on PYTHONPATH). Each round measures both, in an order
that alternates between rounds: the CPU per request of a producer sending one record
per request at `--rate` for `--seconds` (bench/gateway.py's `latency`), then the CPU per
MiB produced and consumed of `--messages` 1 KiB records (`throughput`).

The baseline runs in this virtualenv: compare with a revision whose dependencies it
has (a new dependency on either side needs installing first).

The last line is one JSON object: the medians per side, every round's figures, and the
load average (the machine is shared: compare the spread of the rounds, not one round).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

import gateway as g
from common import local_broker

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("cpu_us_per_request", "cpu_s_per_mb_produce", "cpu_s_per_mb_consume")


def export_baseline(revision: str, into: Path) -> Path:
    """The `src/` of `revision`, exported into `into`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", default="main", help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--kafka-dir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kaudit-bench-gateway-ab-"))
    try:
        baseline_src = export_baseline(args.baseline, work)
        # A broker of its own lives under `work` too, and goes with it.
        with local_broker(args.kafka_dir or work / "kafka") as info:
            result = measure(info, work, baseline_src, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


def measure(info: Any, work: Path, baseline_src: Path, args: argparse.Namespace) -> dict[str, Any]:
    gateways = {"this": g.GatewayProcess(info, work, "fail_open")}
    admin = AdminClient(g.client_config(info, info.sasl_bootstrap_servers))
    rounds: dict[str, dict[str, list[float]]] = {
        side: {f: [] for f in FIGURES} for side in ("this", "baseline")
    }
    mib = args.messages * len(g.RECORD) / 2**20
    try:
        os.environ["PYTHONPATH"] = str(baseline_src)
        try:
            gateways["baseline"] = g.GatewayProcess(info, work, "fail_open")
        finally:
            os.environ.pop("PYTHONPATH")
        for n in range(args.rounds):
            for side in ("baseline", "this") if n % 2 == 0 else ("this", "baseline"):
                gw = gateways[side]
                topics = [f"ab-{uuid.uuid4().hex[:8]}-{i}" for i in range(2)]
                for future in admin.create_topics([NewTopic(t, 6, 1) for t in topics]).values():
                    future.result(timeout=30)
                config = g.client_config(info, gw.bootstrap)
                _, _, cpu_us = g.latency(config, topics[0], args.rate, args.seconds, gw)
                _, _, _, cpu_p, cpu_c = g.throughput(config, topics[1], args.messages, gw)
                figures = rounds[side]
                figures["cpu_us_per_request"].append(round(cpu_us, 2))
                figures["cpu_s_per_mb_produce"].append(round(cpu_p / mib, 5))
                figures["cpu_s_per_mb_consume"].append(round(cpu_c / mib, 5))
                print(f"round {n + 1} {side}: {cpu_us:.1f} µs/request", flush=True)
                for future in admin.delete_topics(topics).values():
                    future.result(timeout=30)
    finally:
        for gw in gateways.values():
            gw.stop()
    medians = {
        side: {f: round(statistics.median(v), 5) for f, v in figures.items()}
        for side, figures in rounds.items()
    }
    return {
        "benchmark": "gateway_ab",
        "baseline": args.baseline,
        "rounds": args.rounds,
        "median": medians,
        "runs": rounds,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    main()
