"""Exporter benchmark: events/s each destination delivers from a local audit log.

Starts the same local servers the tests use (moto's S3 and CloudWatch Logs server,
rsyslogd on loopback with UDP, TCP and TLS inputs, an HTTP receiver for webhook and
Slack), writes N events to a fresh local log per run, then times one exporter runner
draining the whole log into the destination with its default batching (file as the
baseline). Each figure is the median of --repeat runs. The last line printed is one JSON
object: {"s3_events_per_s": ..., "cloudwatch_events_per_s": ..., ...}.

    .venv/bin/python bench/exporters.py [--events N] [--repeat R] [--only s3,webhook]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "exporters"))

from kaudit_destination_servers import HttpReceiver, MotoServer, Rsyslog

import kaudit
from common import emit_until_durable, remove_on_sigterm
from kaudit.config import Config
from kaudit.exporters import runners_for

# Slack posts one message per event: fewer events keep its runs short.
SLACK_SHARE = 10


def _config(data_dir: Path, destination: dict[str, Any]) -> Config:
    return Config.model_validate(
        {
            "data_dir": str(data_dir),
            "cluster": {"id": "bench"},
            "audit": {"log": {"fsync": "never"}, "destinations": [destination]},
        }
    )


def _one_run(work: Path, destination: dict[str, Any], events: int) -> float:
    config = _config(work, destination)
    with kaudit.open(config) as session:
        emit_until_durable(session, events, resources=50)
    (runner,) = runners_for(config)
    try:
        started = time.perf_counter()
        consumed = 0
        while n := runner.run_once():
            consumed += n
        elapsed = time.perf_counter() - started
        # Settling (syslog over TCP/TLS keeps the cursor back for a second after the last
        # batch) is a fixed wait, not throughput: it is done outside the timing.
        runner.settle(runner.settle_timeout_s)
    finally:
        runner.close()
    assert consumed == events and runner.metrics.sent == events, runner.metrics
    return events / elapsed


def main() -> None:
    remove_on_sigterm()  # its temporary data is removed on SIGTERM too
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated destination names")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kaudit-bench-exporters-") as tmp:
        root = Path(tmp)
        moto = MotoServer(root / "moto.log")
        rsyslog = Rsyslog(root / "rsyslog")
        rsyslog.start()
        receiver = HttpReceiver()
        receiver.start()
        try:
            s3 = moto.client("s3")
            s3.create_bucket(Bucket="bench")
            aws = moto.access()
            destinations: dict[str, Callable[[int], dict[str, Any]]] = {
                "file": lambda n: {"type": "file", "path": str(root / f"file-{n}" / "audit.log")},
                "s3": lambda n: {"type": "s3", "bucket": "bench", "prefix": f"r{n}/", **aws},
                "cloudwatch": lambda n: {
                    "type": "cloudwatch",
                    "log_group": "/bench",
                    "log_stream": f"r{n}",
                    **aws,
                },
                "syslog_udp": lambda n: rsyslog.destination("udp"),
                "syslog_tcp": lambda n: rsyslog.destination("tcp"),
                "syslog_tls": lambda n: rsyslog.destination("tls"),
                "webhook": lambda n: {
                    "type": "webhook",
                    "url": receiver.url,
                    "secret": "bench-secret-0123456789",
                },
                "slack": lambda n: {"type": "slack", "webhook": receiver.url, "verbosity": "ALL"},
            }
            only = [name for name in args.only.split(",") if name]
            result: dict[str, float] = {}
            for name, make in destinations.items():
                if only and name not in only:
                    continue
                events = args.events // SLACK_SHARE if name == "slack" else args.events
                rates = [
                    _one_run(root / f"{name}-{n}", make(n), events) for n in range(args.repeat)
                ]
                result[f"{name}_events_per_s"] = round(statistics.median(rates), 1)
                print(
                    f"{name}: {', '.join(f'{r:,.0f}' for r in rates)} events/s "
                    f"({events} events per run)",
                    file=sys.stderr,
                )
        finally:
            receiver.stop()
            rsyslog.stop()
            moto.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
