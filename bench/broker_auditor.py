"""What kaudit's broker auditor plugin costs a producer: two local brokers in one run, one
with Kafka's StandardAuthorizer, one with the plugin (which delegates to it), measured in
alternating rounds so the machine's noise falls on both alike.

- throughput: `--records` records produced by alice (an ACL-governed user, whose writes the
  plugin counts) as one request each (linger.ms=0, one record per batch), acks=1;
  `ratio` is the median over rounds of the plugin broker's rate over the plain one's
  (target >= 0.97);
- latency: requests paced at `--rate` per second for `--seconds`, each timed from
  produce() to its delivery report; `added_p99_ms` is the median over rounds of the
  plugin's p99 minus the plain p99 (target <= 0.2 ms at 2,000 requests/s).

- the request path alone: bench/AuthorizeCost.java times one authorize() call in a loop,
  StandardAuthorizer against the plugin, in one JVM (`authorize_added_ns_*`): what the
  plugin adds to each request, free of the network and of the machine's other load,
  which on a shared two-core machine moves the end-to-end p99 by far more.

The last line printed is one JSON object with the figures and the medians behind them.
The brokers and their directories are removed at the end.

    .venv/bin/python bench/broker_auditor.py [--records 10000] [--rate 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from kaudit.dev.broker_auditor import broker_auditor_plugin
from kaudit.dev.dist import TOOL_JVM_FLAGS, ensure_kafka, require_java
from kaudit.dev.kafka import KafkaInfo, LocalKafka, run_kafka_tool

TOPIC = "bench-broker-auditor"
PAYLOAD = b"x" * 100


@contextmanager
def broker(audited: bool) -> Iterator[KafkaInfo]:
    directory = Path(tempfile.mkdtemp(prefix="kaudit-bench-broker-auditor-"))
    plugin = broker_auditor_plugin() if audited else None
    kafka = LocalKafka(directory, broker_auditor=plugin)
    try:
        info = kafka.start()
        prepare(info)
        yield info
    finally:
        kafka.stop()
        shutil.rmtree(directory, ignore_errors=True)


def prepare(info: KafkaInfo) -> None:
    admin = AdminClient(info.client_config())
    admin.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result(timeout=30)
    run_kafka_tool(
        "org.apache.kafka.tools.AclCommand",
        ["--bootstrap-server", info.bootstrap_servers, "--add", "--allow-principal",
         "User:alice", "--operation", "Write", "--operation", "Describe", "--topic", TOPIC],
        dist=info.dist,
    )  # fmt: skip
    # The ACL reaches the authorizer a moment later: wait until alice may write.
    deadline = time.monotonic() + 30
    while produce_rate(info, 10) is None:
        if time.monotonic() > deadline:
            raise SystemExit("alice could not write to the bench topic within 30 s")
        time.sleep(0.2)


def producer(info: KafkaInfo) -> Producer:
    return Producer(
        {
            **info.client_config("alice"),
            "linger.ms": 0,
            "batch.num.messages": 1,
            "acks": 1,
            # Many requests in flight: the broker, not the round trip, sets the pace.
            "max.in.flight.requests.per.connection": 1000,
            "enable.idempotence": False,
            "message.timeout.ms": 30000,
        }
    )


def produce_rate(info: KafkaInfo, records: int) -> float | None:
    """Records per second produced as one request each; None if any failed."""
    client = producer(info)
    failed: list[object] = []

    def report(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(err)

    started = time.perf_counter()
    for _ in range(records):
        while True:
            try:
                client.produce(TOPIC, PAYLOAD, on_delivery=report)
                break
            except BufferError:
                client.poll(0.001)
        client.poll(0)
    client.flush(60)
    elapsed = time.perf_counter() - started
    return None if failed else records / elapsed


def paced_latencies(info: KafkaInfo, rate: int, seconds: float) -> list[float]:
    """Milliseconds from produce() to the delivery report, requests paced at `rate`/s."""
    client = producer(info)
    latencies: list[float] = []
    interval = 1.0 / rate
    total = int(rate * seconds)
    started = time.perf_counter()
    for i in range(total):
        due = started + i * interval
        while time.perf_counter() < due:
            client.poll(0)
        sent = time.perf_counter()
        client.produce(
            TOPIC,
            PAYLOAD,
            on_delivery=lambda err, _m, t=sent: latencies.append(
                (time.perf_counter() - t) * 1000 if err is None else float("inf")
            ),
        )
        client.poll(0)
    client.flush(60)
    return latencies


def authorize_cost(calls: int, rounds: int) -> dict[str, float]:
    """Median nanoseconds per authorize() call, with and without the plugin, in one JVM."""
    dist = ensure_kafka()
    jar = broker_auditor_plugin().jar
    flags = [f for f in TOOL_JVM_FLAGS if f != "-XX:TieredStopAtLevel=1"]  # C2: steady state
    done = subprocess.run(
        [require_java(), *flags, f"-Dlog4j2.configurationFile={dist.tools_log4j_config}",
         "-cp", f"{dist.classpath}:{jar}", str(Path(__file__).with_name("AuthorizeCost.java")),
         str(calls), str(rounds)],
        capture_output=True, text=True, timeout=900, check=True,
    )  # fmt: skip
    costs: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return costs


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1_000_000, help="authorize() calls a round")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    costs = authorize_cost(args.calls, args.rounds)
    print(f"authorize(): {costs}", flush=True)

    rates: dict[str, list[float]] = {"plain": [], "plugin": []}
    tails: dict[str, list[float]] = {"plain": [], "plugin": []}
    with ExitStack() as stack:
        brokers = {"plain": stack.enter_context(broker(False)),
                   "plugin": stack.enter_context(broker(True))}  # fmt: skip
        for info in brokers.values():  # warm both JVMs up before measuring
            produce_rate(info, args.records // 4)
        for round_ in range(args.rounds):
            order = ["plain", "plugin"] if round_ % 2 == 0 else ["plugin", "plain"]
            for name in order:
                rate = produce_rate(brokers[name], args.records)
                if rate is None:
                    raise SystemExit(f"{name}: produce requests failed")
                rates[name].append(rate)
                tails[name].append(p99(paced_latencies(brokers[name], args.rate, args.seconds)))
                print(
                    f"round {round_ + 1} {name}: {rate:,.0f} req/s, "
                    f"p99 {tails[name][-1]:.3f} ms at {args.rate} req/s",
                    flush=True,
                )
    plain_rate, plugin_rate = (statistics.median(rates[n]) for n in ("plain", "plugin"))
    plain_p99, plugin_p99 = (statistics.median(tails[n]) for n in ("plain", "plugin"))
    # Each round measures both brokers back to back: the median of the rounds' own ratios
    # and differences is less moved by the machine's load drifting between rounds.
    ratio = statistics.median(b / a for a, b in zip(rates["plain"], rates["plugin"], strict=True))
    added = statistics.median(b - a for a, b in zip(tails["plain"], tails["plugin"], strict=True))
    print(
        json.dumps(
            {
                "benchmark": "broker_auditor",
                "ratio": round(ratio, 3),
                "added_p99_ms": round(added, 3),
                "plain_requests_per_s": round(plain_rate),
                "plugin_requests_per_s": round(plugin_rate),
                "plain_p99_ms": round(plain_p99, 3),
                "plugin_p99_ms": round(plugin_p99, 3),
                "authorize_added_ns_produce": round(
                    costs["produce_plugin_ns"] - costs["produce_plain_ns"], 1
                ),
                "authorize_added_ns_create": round(
                    costs["create_plugin_ns"] - costs["create_plain_ns"], 1
                ),
                **{f"authorize_{name}": value for name, value in costs.items()},
                "paced_rate": args.rate,
                "rounds": args.rounds,
                "records_per_round": args.records,
                "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
                "note": "medians of alternating rounds on a shared 2-core machine",
            }
        )
    )


if __name__ == "__main__":
    main()
