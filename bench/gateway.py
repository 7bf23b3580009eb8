"""The gateway's cost: the same producer and consumer, direct and through the gateway.

One local broker (SASL_PLAINTEXT, SCRAM-SHA-512 as `admin`), one `kaudit gateway`
process in front of it (as deployed: its own process, uvloop, recording to a local log).
Per run, alternating direct and gateway:
- throughput: a confluent-kafka producer sends `--messages` 1 KiB records (acks=all,
  linger 5 ms), then a consumer reads them back (all partitions assigned from the
  start; the rate from the first record to the last, and the wait for the first record
  on its own); msgs/s and MB/s each way;
- the same records consumed again through a fail_closed gateway, where each fetch
  response waits until its counts are journaled (gateway.journal), and as many produced
  through it;
- the gateway's CPU time (utime + stime of its process, from /proc) per MiB produced and
  per MiB consumed through it (fail_open);
- latency: a producer sends one record per request (linger 0, acks=all) at a fixed
  `--rate` for `--seconds`; delivery latency p50/p99, direct and through the gateway
  under fail_open and under fail_closed (each response held until its record is durable),
  and the fail_open gateway's CPU per request in that run;
- the time to rewrite a 30,000-partition Metadata response (in this process).

The last line is one JSON object; figures are medians over `--repeat` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import local_broker, remove_on_sigterm
from kaudit.dev.kafka import KafkaInfo
from kaudit.dev.ports import free_port_block

RECORD = b"r" * 1024


class GatewayProcess:
    """`kaudit gateway` in its own process, recording to a local log."""

    def __init__(self, info: KafkaInfo, work: Path, policy: str) -> None:
        self.port = free_port_block(4)
        self.work = work / f"gw-{policy}-{uuid.uuid4().hex[:6]}"
        self.work.mkdir(parents=True)
        config = self.work / "kaudit.yaml"
        config.write_text(
            f"data_dir: {self.work / 'data'}\n"
            "audit:\n"
            f"  failure_policy: {policy}\n"
            "gateway:\n"
            f"  upstream: {info.sasl_bootstrap_servers}\n"
            f"  listen: 127.0.0.1:{self.port}\n"
            "  records_window_seconds: 10\n"
        )
        kaudit = Path(sys.executable).with_name("kaudit")
        self.proc = subprocess.Popen(
            [str(kaudit), "gateway", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.work / "gateway.err", "w"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"gateway did not start: {(self.work / 'gateway.err').read_text()}"
                    ) from None
                time.sleep(0.1)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """CPU time the gateway process has used so far (user + system)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        # After the command name: state is field 3, utime 14 and stime 15 (1-based).
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def client_config(info: KafkaInfo, bootstrap: str) -> dict[str, Any]:
    return {**info.client_config("admin"), "bootstrap.servers": bootstrap}


def produce(config: dict[str, Any], topic: str, messages: int) -> float:
    """Produce msgs/s for `messages` 1 KiB records."""
    producer = Producer({**config, "acks": "all", "linger.ms": 5, "compression.type": "none"})
    started = time.perf_counter()
    for _ in range(messages):
        while True:
            try:
                producer.produce(topic, RECORD)
                break
            except BufferError:
                producer.poll(0.001)
    if producer.flush(120) != 0:
        raise SystemExit("producer did not deliver everything")
    return messages / (time.perf_counter() - started)


def consume(config: dict[str, Any], topic: str, messages: int) -> tuple[float, float]:
    """(consume msgs/s, ms until the first record was consumed) of `messages` records."""
    # Partitions assigned from the start (no group to join). The rate is timed from the
    # first record to the last; the wait for the first record (connections, SASL, the
    # first fetch) is reported on its own. librdkafka pauses fetching for
    # fetch.queue.backoff.ms (1 s by default) whenever its local queue is full; a direct
    # consumer outpaces this loop and hits that pause at random, which made direct
    # figures swing from 160k to 930k msgs/s. 10 ms keeps both consumers fetching as
    # fast as the loop drains them.
    consumer = Consumer(
        {
            **config,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52428800,
            "fetch.queue.backoff.ms": 10,
        }
    )
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    total = after_first = 0
    first: float | None = None
    assigned = time.perf_counter()
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    deadline = time.monotonic() + 120
    while total < messages and time.monotonic() < deadline:
        got = sum(1 for m in consumer.consume(10000, 1.0) if m.error() is None)
        if got and first is None:
            first = time.perf_counter()
        elif first is not None:
            after_first += got
        total += got
    stopped = time.perf_counter()
    consumer.close()
    if total < messages or first is None:
        raise SystemExit(f"consumed {total} of {messages}")
    return after_first / (stopped - first), (first - assigned) * 1000


def throughput(
    config: dict[str, Any], topic: str, messages: int, gateway: GatewayProcess | None = None
) -> tuple[float, float, float, float, float]:
    """(produce msgs/s, consume msgs/s, ms until the first record was consumed, gateway
    CPU seconds producing, consuming) for `messages` 1 KiB records."""
    cpu = gateway.cpu_seconds if gateway is not None else (lambda: 0.0)
    before = cpu()
    produce_rate = produce(config, topic, messages)
    produced = cpu()
    consume_rate, first_ms = consume(config, topic, messages)
    consumed = cpu()
    return produce_rate, consume_rate, first_ms, produced - before, consumed - produced


def metadata_rewrite_ms() -> float:
    """Median ms to rewrite the broker addresses of a 30,000-partition Metadata v12
    response (300 topics of 100 partitions, 3 replicas)."""
    from kio.index import load_response_schema
    from kio.schema.errors import ErrorCode
    from kio.static.primitive import i32, i32Timedelta

    from kaudit.gateway.codec import METADATA, encode_response
    from kaudit.gateway.metadata import patch_metadata
    from kaudit.gateway.rewrite import BrokerMap

    schema = load_response_schema(METADATA, 12)
    entities = __import__(schema.__module__, fromlist=["MetadataResponseBroker"])
    brokers = tuple(
        entities.MetadataResponseBroker(
            node_id=i32(n), host=f"broker-{n}.kafka.internal", port=i32(9092), rack=None
        )
        for n in range(3)
    )
    topics = tuple(
        entities.MetadataResponseTopic(
            error_code=ErrorCode(0),
            name=f"topic-{t:04d}",
            topic_id=uuid.uuid4(),
            is_internal=False,
            partitions=tuple(
                entities.MetadataResponsePartition(
                    error_code=ErrorCode(0),
                    partition_index=i32(p),
                    leader_id=i32(p % 3),
                    leader_epoch=i32(1),
                    replica_nodes=tuple(i32((p + r) % 3) for r in range(3)),
                    isr_nodes=tuple(i32((p + r) % 3) for r in range(3)),
                    offline_replicas=(),
                )
                for p in range(100)
            ),
            topic_authorized_operations=i32(-(2**31)),
        )
        for t in range(300)
    )
    body = schema(
        throttle_time=i32Timedelta.parse(timedelta(0)),
        brokers=brokers,
        cluster_id="bench",
        controller_id=i32(0),
        topics=topics,
    )
    frame = encode_response(METADATA, 12, schema.__header_schema__(correlation_id=i32(1)), body)
    gateway_brokers = BrokerMap("gateway.example", 20000, lambda *_: None)
    timings = []
    for _ in range(7):
        started = time.perf_counter()
        patch_metadata(frame, 12, gateway_brokers)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def latency(
    config: dict[str, Any],
    topic: str,
    rate: int,
    seconds: float,
    gateway: GatewayProcess | None = None,
) -> tuple[float, float, float]:
    """(p50, p99) ms of acks=all delivery, one record per request at `rate` per second,
    and the gateway's CPU µs per request meanwhile (0 without a gateway). Requests are
    counted by the producer (librdkafka's statistics: requests sent to brokers), since
    on a loaded machine it may put several records in one request."""
    stats: list[dict[str, Any]] = []
    producer = Producer(
        {
            **config,
            "acks": "all",
            "linger.ms": 0,
            "compression.type": "none",
            "statistics.interval.ms": 200,
            "stats_cb": lambda raw: stats.append(json.loads(raw)),
        }
    )
    producer.produce(topic, RECORD)  # connect and learn metadata first
    producer.flush(30)

    def requests_sent() -> int:
        seen = len(stats)
        deadline = time.monotonic() + 5
        while len(stats) == seen and time.monotonic() < deadline:
            producer.poll(0.05)  # a fresh statistics report
        return sum(int(b.get("tx", 0)) for b in stats[-1]["brokers"].values())

    requests_before = requests_sent()
    samples: list[float] = []

    def delivered(err: Any, msg: Any, sent: float) -> None:
        if err is None:
            samples.append(time.perf_counter() - sent)

    interval = 1.0 / rate
    total = int(rate * seconds)
    cpu_before = gateway.cpu_seconds() if gateway is not None else 0.0
    start = time.perf_counter()
    for i in range(total):
        due = start + i * interval
        # Wait in poll() until the send is due: delivery reports are served the moment
        # they arrive, and the client does not spin (which would take a core from the
        # broker and the gateway on a small machine).
        while (now := time.perf_counter()) < due:
            producer.poll(max(0.0, due - now - 0.0001))
        producer.produce(topic, RECORD, on_delivery=lambda e, m, t=now: delivered(e, m, t))
        producer.poll(0)
    producer.flush(30)
    cpu_used = gateway.cpu_seconds() - cpu_before if gateway is not None else 0.0
    requests = max(1, requests_sent() - requests_before)
    cpu_us = cpu_used * 1e6 / requests
    if len(samples) < total * 0.99:
        raise SystemExit(f"only {len(samples)} of {total} deliveries succeeded")
    samples.sort()
    return (
        samples[len(samples) // 2] * 1000,
        samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000,
        cpu_us,
    )


def main() -> None:
    remove_on_sigterm()  # its broker and work directory are removed on SIGTERM too
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kafka-dir", type=Path, default=None)
    args = parser.parse_args()
    with (
        local_broker(args.kafka_dir) as info,
        tempfile.TemporaryDirectory(prefix="kaudit-bench-gateway-") as work,
    ):
        result = measure(info, Path(work), args)
    print(json.dumps(result))


def measure(info: KafkaInfo, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    gateways = {p: GatewayProcess(info, work, p) for p in ("fail_open", "fail_closed")}
    direct_config = client_config(info, info.sasl_bootstrap_servers)
    admin = AdminClient(direct_config)
    figures: dict[str, list[float]] = {}

    def note(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    try:
        for run in range(args.repeat):
            topics = [f"bench-{run}-{uuid.uuid4().hex[:6]}-{i}" for i in range(5)]
            for future in admin.create_topics([NewTopic(t, 6, 1) for t in topics]).values():
                future.result(timeout=30)
            direct_p, direct_c, direct_first, _, _ = throughput(
                direct_config, topics[0], args.messages
            )
            gw_config = client_config(info, gateways["fail_open"].bootstrap)
            gw_p, gw_c, gw_first, cpu_p, cpu_c = throughput(
                gw_config, topics[1], args.messages, gateways["fail_open"]
            )
            closed_config = client_config(info, gateways["fail_closed"].bootstrap)
            closed_c, _ = consume(closed_config, topics[1], args.messages)
            closed_p = produce(closed_config, topics[4], args.messages)
            note("fail_closed_produce", closed_p)
            note("direct_first_record_ms", direct_first)
            note("gateway_first_record_ms", gw_first)
            note("direct_produce", direct_p)
            note("gateway_produce", gw_p)
            note("direct_consume", direct_c)
            note("gateway_consume", gw_c)
            note("fail_closed_consume", closed_c)
            mib_moved = args.messages * len(RECORD) / (1024 * 1024)
            note("cpu_s_per_mb_produce", cpu_p / mib_moved)
            note("cpu_s_per_mb_consume", cpu_c / mib_moved)
            d50, d99, _ = latency(direct_config, topics[2], args.rate, args.seconds)
            o50, o99, cpu_us = latency(
                gw_config, topics[2], args.rate, args.seconds, gateways["fail_open"]
            )
            note("cpu_us_per_request", cpu_us)
            c50, c99, _ = latency(closed_config, topics[3], args.rate, args.seconds)
            for name, value in (("direct_p50", d50), ("direct_p99", d99), ("open_p50", o50),
                                ("open_p99", o99), ("closed_p50", c50),
                                ("closed_p99", c99)):  # fmt: skip
                note(name, value)
            print(
                f"run {run + 1}: produce {direct_p:,.0f} direct / {gw_p:,.0f} gateway msgs/s; "
                f"consume {direct_c:,.0f} / {gw_c:,.0f} / {closed_c:,.0f} fail_closed (first "
                f"record {direct_first:.0f} / {gw_first:.0f} ms); gateway CPU s/MiB produce "
                f"{cpu_p / mib_moved:.6f} consume {cpu_c / mib_moved:.6f}; p50/p99 ms direct "
                f"{d50:.2f}/{d99:.2f}, fail_open {o50:.2f}/{o99:.2f}, fail_closed "
                f"{c50:.2f}/{c99:.2f}; gateway CPU {cpu_us:.0f} µs/request",
                flush=True,
            )
            # Gigabytes of old topics left on a reused broker make its disk writeback
            # (and so every later run) slower.
            for future in admin.delete_topics(topics).values():
                future.result(timeout=30)
    finally:
        for gw in gateways.values():
            gw.stop()

    def median(name: str) -> float:
        return statistics.median(figures[name])

    mib = 1024 / (1024 * 1024)
    result = {
        "benchmark": "gateway",
        "record_bytes": len(RECORD),
        "messages": args.messages,
        "runs": args.repeat,
        "direct_msgs_per_s": round(median("direct_produce")),
        "gateway_msgs_per_s": round(median("gateway_produce")),
        "ratio": round(median("gateway_produce") / median("direct_produce"), 3),
        "direct_mb_per_s": round(median("direct_produce") * mib, 1),
        "gateway_mb_per_s": round(median("gateway_produce") * mib, 1),
        "direct_consume_msgs_per_s": round(median("direct_consume")),
        "gateway_consume_msgs_per_s": round(median("gateway_consume")),
        "consume_ratio": round(median("gateway_consume") / median("direct_consume"), 3),
        "direct_first_record_ms": round(median("direct_first_record_ms"), 1),
        "gateway_first_record_ms": round(median("gateway_first_record_ms"), 1),
        "rate_per_s": args.rate,
        "direct_p50_ms": round(median("direct_p50"), 3),
        "direct_p99_ms": round(median("direct_p99"), 3),
        "added_p50_ms": round(median("open_p50") - median("direct_p50"), 3),
        "added_p99_ms": round(median("open_p99") - median("direct_p99"), 3),
        "fail_closed_added_p50_ms": round(median("closed_p50") - median("direct_p50"), 3),
        "fail_closed_added_p99_ms": round(median("closed_p99") - median("direct_p99"), 3),
        "fail_closed_produce_ratio": round(
            median("fail_closed_produce") / median("direct_produce"), 3
        ),
        "fail_closed_consume_msgs_per_s": round(median("fail_closed_consume")),
        "fail_closed_consume_ratio": round(
            median("fail_closed_consume") / median("direct_consume"), 3
        ),
        "gateway_cpu_s_per_mb_produce": round(median("cpu_s_per_mb_produce"), 6),
        "gateway_cpu_s_per_mb_consume": round(median("cpu_s_per_mb_consume"), 6),
        "gateway_cpu_us_per_request": round(median("cpu_us_per_request"), 1),
        "metadata_30k_partitions_rewrite_ms": round(metadata_rewrite_ms(), 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    return result


if __name__ == "__main__":
    main()
