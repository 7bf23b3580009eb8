"""Soak: many client connections through one gateway for a long time, exporters running.

One local broker; one `kaudit run` process serving the gateway (recording to a local
log) and a file destination's exporter. `--connections` client connections stay open
for `--seconds`, together sending `--rate` DescribeCluster requests a second (each one
recorded on its own as `kafka.request`), each connection with a client id of its own.
The kaudit process's RSS is sampled every `--sample` seconds.

Checked at the end, after the kaudit process stopped on SIGTERM:
- RSS over the last 5 minutes (of the run) grows by at most 5 %: the mean of the last
  30 s against the mean of the 30 s five minutes before the end;
- no connection errors (a refused, reset or closed connection, a request unanswered);
- every answered request is recorded: each (client id, correlation id) answered is in
  the log, and the file destination holds every event of the log.

Writes an RSS plot (PNG, matplotlib: `pip install matplotlib`, a benchmark-only
dependency) and prints one JSON object as its last line. Not part of `make test`.

    .venv/bin/python bench/soak.py [--connections 1000] [--rate 2000] [--seconds 600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from kio.schema.describe_cluster.v0.request import DescribeClusterRequest
from kio.schema.request_header.v2.header import RequestHeader
from kio.static.primitive import i16, i32

from common import local_broker
from kaudit.dev.ports import free_port_block
from kaudit.gateway.codec import API_KEYS, encode_request
from kaudit.log.segments import LogReader

DESCRIBE_CLUSTER = API_KEYS["DescribeCluster"]
KAUDIT = Path(sys.executable).with_name("kaudit")
_CORRELATION_AT = 8  # length (4), api key (2), api version (2), then the correlation id


class KauditRun:
    """`kaudit run` with the gateway and a file destination, in its own process."""

    def __init__(self, upstream: str, work: Path) -> None:
        self.port = free_port_block(4)
        self.data = work / "data"
        self.exported = work / "exported.jsonl"
        self.config = work / "kaudit.yaml"
        self.config.write_text(
            json.dumps(
                {
                    "data_dir": str(self.data),
                    "audit": {
                        "destinations": [
                            {
                                "type": "file",
                                "path": str(self.exported),
                                # One file, so that every event exported can be counted.
                                "rotation": {"max_size_mb": 100_000},
                            }
                        ]
                    },
                    "gateway": {
                        "upstream": upstream,
                        "listen": f"127.0.0.1:{self.port}",
                        "max_connections_per_address": 100_000,
                        "max_connections": 100_000,
                    },
                }
            )
        )
        self.stderr = work / "kaudit.stderr"
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen([str(KAUDIT), "run", "-c", str(self.config)], stderr=err)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    why = self.stderr.read_text()
                    raise SystemExit(f"kaudit run did not start: {why}") from None
                time.sleep(0.2)

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def lines_in_log(self) -> int:
        reader = LogReader(self.data / "log")
        total, position = 0, reader.start()
        while True:
            lines, position = reader.read(position, 50_000)
            if not lines:
                return total
            total += len(lines)

    def wait_exported(self, seconds: float) -> bool:
        """Wait until the destination holds as many lines as the log (True), or give up."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.exported.exists():
                with self.exported.open("rb") as f:
                    if sum(1 for _ in f) >= self.lines_in_log():
                        return True
            time.sleep(1)
        return False

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class Load:
    """The clients: connections that each send DescribeCluster at an even pace."""

    def __init__(self, port: int, connections: int, rate: float, seconds: float) -> None:
        self.port, self.connections, self.seconds = port, connections, seconds
        self.interval = connections / rate  # each connection's time between requests
        self.answered: set[tuple[str, int]] = set()
        self.sent = 0
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self.duration = 0.0

    @staticmethod
    def _request(client_id: str) -> bytearray:
        header = RequestHeader(
            request_api_key=i16(DESCRIBE_CLUSTER),
            request_api_version=i16(0),
            correlation_id=i32(0),
            client_id=client_id,
        )
        body = DescribeClusterRequest(include_cluster_authorized_operations=False)
        return bytearray(encode_request(header, body))

    async def _open(self, n: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.open_connection("127.0.0.1", self.port)
        except OSError as exc:
            self.errors.append(f"soak-{n}: connect: {exc}")
            return None

    async def _connection(
        self,
        n: int,
        streams: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        start_at: float,
        end_at: float,
    ) -> None:
        client_id = f"soak-{n}"
        frame = self._request(client_id)
        reader, writer = streams
        loop = asyncio.get_running_loop()
        correlation = 0
        # Spread the connections' requests evenly over each interval.
        next_at = start_at + self.interval * n / self.connections
        try:
            while next_at < end_at:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                next_at += self.interval
                correlation += 1
                struct.pack_into(">i", frame, _CORRELATION_AT, correlation)
                began = loop.time()
                writer.write(frame)
                self.sent += 1
                size = struct.unpack(">i", await reader.readexactly(4))[0]
                response = await reader.readexactly(size)
                got = struct.unpack_from(">i", response, 0)[0]
                if got != correlation:
                    self.errors.append(f"{client_id}: answer {got} to request {correlation}")
                    return
                self.latencies.append(loop.time() - began)
                self.answered.add((client_id, correlation))
        except (OSError, asyncio.IncompleteReadError) as exc:
            self.errors.append(f"{client_id}: request {correlation}: {exc!r}")
        finally:
            writer.close()

    async def run(self) -> None:
        """Open every connection, then send for `seconds` (the load's own duration, as
        the machine allowed, is `self.duration`)."""
        loop = asyncio.get_running_loop()
        opened = await asyncio.gather(*(self._open(n) for n in range(self.connections)))
        start_at = loop.time() + 1.0
        end_at = start_at + self.seconds
        await asyncio.gather(
            *(
                self._connection(n, streams, start_at, end_at)
                for n, streams in enumerate(opened)
                if streams is not None
            )
        )
        self.duration = loop.time() - start_at


def recorded_requests(log_dir: Path) -> tuple[set[tuple[str, int]], int]:
    """(client id, correlation id) of every DescribeCluster recorded, and the log's events."""
    reader = LogReader(log_dir)
    out: set[tuple[str, int]] = set()
    total = 0
    position = reader.start()
    while True:
        lines, position = reader.read(position, 50_000)
        if not lines:
            return out, total
        total += len(lines)
        for line in lines:
            if b'"DescribeCluster"' not in line:
                continue
            event = orjson.loads(line)
            api = (event["context"].get("api") or {}).get("name")
            if event["event_type"] == "kafka.request" and api == "DescribeCluster":
                out.add((event["actor"]["client_id"], int(event["context"]["correlation_id"])))


def event_ids(log_dir: Path) -> set[bytes]:
    reader = LogReader(log_dir)
    out: set[bytes] = set()
    position = reader.start()
    while True:
        lines, position = reader.read(position, 50_000)
        if not lines:
            return out
        out.update(_event_id(line) for line in lines)


def event_ids_in(path: Path) -> set[bytes]:
    return {_event_id(line) for line in path.read_bytes().splitlines()} if path.exists() else set()


def _event_id(line: bytes) -> bytes:
    start = line.index(b'"event_id":"') + 12
    return line[start : line.index(b'"', start)]


def growth(samples: list[tuple[float, int]], seconds: float) -> float:
    """RSS growth over the last 5 minutes of the run: the mean of its last 30 s against
    the mean of the 30 s that began 5 minutes before its end."""
    end = samples[-1][0]
    window = min(300.0, seconds)
    first = [r for t, r in samples if end - window <= t < end - window + 30]
    last = [r for t, r in samples if t >= end - 30]
    return statistics.mean(last) / statistics.mean(first) - 1


def plot(samples: list[tuple[float, int]], path: Path, title: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(figsize=(8, 3.5), dpi=90)
    axes.plot([t / 60 for t, _ in samples], [r / 2**20 for _, r in samples], linewidth=1.2)
    axes.set_xlabel("minutes")
    axes.set_ylabel("RSS (MiB)")
    axes.set_ylim(bottom=0)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2000.0, help="requests/s in total")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--sample", type=float, default=2.0, help="seconds between RSS samples")
    parser.add_argument("--plot", type=Path, default=Path("bench/results/soak-rss.png"))
    parser.add_argument("--kafka-dir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kaudit-soak-"))
    try:
        with local_broker(args.kafka_dir) as info:
            result = soak(info.bootstrap_servers, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


def soak(upstream: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    kaudit = KauditRun(upstream, work)
    samples: list[tuple[float, int]] = []
    began = time.monotonic()
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(args.sample):
            samples.append((time.monotonic() - began, kaudit.rss_bytes()))

    sampler = threading.Thread(target=sample, daemon=True)
    load = Load(kaudit.port, args.connections, args.rate, args.seconds)
    cpu_before = os.times()
    try:
        sampler.start()
        import uvloop

        uvloop.run(load.run())
    finally:
        sampling.set()
        sampler.join()
        cpu = os.times()
        caught_up = kaudit.wait_exported(60)
        code = kaudit.stop()
    # What was recorded while stopping is delivered by the next run, from the cursor.
    subprocess.run([str(KAUDIT), "run", "--once", "-c", str(kaudit.config)], check=True,
                   capture_output=True)  # fmt: skip
    recorded, in_log = recorded_requests(kaudit.data / "log")
    log_ids = event_ids(kaudit.data / "log")
    exported_ids = event_ids_in(kaudit.exported)
    exported = len(exported_ids & log_ids)
    unrecorded = load.answered - recorded
    rss_growth = growth(samples, args.seconds)
    elapsed = samples[-1][0] if samples else 0.0
    title = (
        f"kaudit run RSS: {args.connections} connections, {args.rate:g} req/s, "
        f"{args.seconds / 60:g} min (growth over last 5 min {rss_growth:+.1%})"
    )
    png = plot(samples, args.plot, title)
    lat = sorted(load.latencies)
    load1, load5, load15 = os.getloadavg()
    return {
        "benchmark": "soak",
        "connections": args.connections,
        "rate_target": args.rate,
        "seconds": args.seconds,
        "requests_sent": load.sent,
        "requests_answered": len(load.answered),
        "load_seconds": round(load.duration, 1),
        "rate_answered": round(len(load.answered) / max(load.duration, 1e-9), 1),
        "connection_errors": len(load.errors),
        "first_errors": load.errors[:5],
        "answered_not_recorded": len(unrecorded),
        "events_in_log": in_log,
        "events_exported": exported,
        "exported_all": exported == len(log_ids),
        "exporter_caught_up_while_running": caught_up,
        "rss_mib_start": round(samples[0][1] / 2**20, 1) if samples else None,
        "rss_mib_end": round(samples[-1][1] / 2**20, 1) if samples else None,
        "rss_mib_max": round(max(r for _, r in samples) / 2**20, 1) if samples else None,
        "rss_growth_last_5min": round(rss_growth, 4),
        "latency_ms_p50": round(lat[len(lat) // 2] * 1000, 2) if lat else None,
        "latency_ms_p99": round(lat[int(len(lat) * 0.99)] * 1000, 2) if lat else None,
        "client_cpu_s": round(cpu.user + cpu.system - cpu_before.user - cpu_before.system, 1),
        "kaudit_exit": code,
        "elapsed_s": round(elapsed, 1),
        "load_average_1_5_15": [round(load1, 2), round(load5, 2), round(load15, 2)],
        "cpus": os.cpu_count(),
        "plot": png,
        "passed": (
            not load.errors
            and not unrecorded
            and exported == len(log_ids)
            and rss_growth <= 0.05
            and code == 0
        ),
    }


if __name__ == "__main__":
    main()
