"""What kaudit's broker auditor plugin costs a producer: two local brokers in one run, one
with Kafka's StandardAuthorizer ("plain"), one with the plugin (which delegates to it). Both
run with the same JVM flags and heap (kaudit.dev.process.BROKER_JVM_FLAGS, no GC logging on
either) and get the same client settings (alice over SASL, acks=1, linger.ms=0, one record
a request) and the same warm-up. With --aa the second broker is plain too: an A/A run,
whose figures are what two brokers that differ in nothing show on this machine, i.e. the
noise floor of every figure below (the JSON keeps its keys: "plugin" is then the second
plain broker, and `compared` says so).

- throughput: paired rounds too. Each broker gets a producer of its own, in a process of
  its own, for alice (an ACL-governed user, whose writes the plugin counts); once both are
  warmed up they start together and send one-record requests as fast as they are taken
  for `--burst-seconds`. A round's rate is the requests acknowledged within that time.
  Both brokers run flat out in the same seconds and share the machine's two cores, so the
  machine's noise falls on both and a broker that needs more CPU a request gets fewer
  requests done (one at a time, a busy spell during one broker's round decided the ratio).
  `ratio` is the median over `--rounds` rounds of plugin rate / plain rate (target >= 0.97).
- latency: paired rounds. One producer per broker, made and warmed up (connected,
  authenticated, metadata known) before any timing, so no round's tail holds a connection
  set-up. Then, in one loop, at each tick of `--rate` per second one request goes to each
  broker (which goes first alternates tick by tick), each timed from produce() to its
  delivery report. Both brokers get `--rate` requests per second in the same seconds: a
  stall of the shared machine (this process or a broker descheduled, another helper's
  burst) lands on the requests of both alike, instead of on whichever broker a sequential
  round happened to be measuring. `added_p99_ms` is the median over `--rounds` rounds of
  (plugin p99 - plain p99), each round `--seconds` long (target <= 0.2 ms at 2,000
  requests/s); `added_p99_rounds_ms` lists the rounds' differences.
- CPU: each broker JVM's CPU time (user + system, from /proc) over the latency rounds, per
  1,000 requests; `cpu_ratio` is plugin over plain: the work the plugin adds to the
  broker, which the machine's noise moves far less than wall-clock times.
- the request path alone: bench/AuthorizeCost.java times one authorize() call in a loop,
  StandardAuthorizer against the plugin, in one JVM: with C2 as a production broker runs
  (`authorize_added_ns_*`) and with the local brokers' own flags, C1 only
  (`authorize_added_ns_*_c1`).

The last line printed is one JSON object with the figures, the per-round figures behind
them and the load average. The brokers and their directories are removed at the end.

    .venv/bin/python bench/broker_auditor.py [--burst-seconds 3] [--rate 2000] [--rounds 9] [--aa]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from kaudit.dev.broker_auditor import broker_auditor_plugin
from kaudit.dev.dist import TOOL_JVM_FLAGS, ensure_kafka, require_java
from kaudit.dev.kafka import KafkaInfo, LocalKafka, run_kafka_tool
from kaudit.dev.process import BROKER_JVM_FLAGS

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


def producer_config(info: KafkaInfo) -> dict[str, str | int | bool]:
    return {
        **info.client_config("alice"),
        "linger.ms": 0,
        "batch.num.messages": 1,
        "acks": 1,
        # Many requests in flight: the broker, not the round trip, sets the pace.
        "max.in.flight.requests.per.connection": 1000,
        "enable.idempotence": False,
        "message.timeout.ms": 30000,
    }


def producer(info: KafkaInfo) -> Producer:
    return Producer(producer_config(info))


def flat_out(
    config: dict[str, str | int | bool], seconds: float, start: Barrier, out: Queue[float]
) -> None:
    """In a process of its own: a warmed-up producer, then, from the moment every worker
    is ready, requests as fast as they are taken for `seconds`; puts the requests per
    second acknowledged within that time (-1 if any failed)."""
    client = Producer(config)
    failed: list[object] = []
    acknowledged = [0]
    deadline = [float("inf")]

    def report(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(err)
        elif time.perf_counter() <= deadline[0]:
            acknowledged[0] += 1

    for _ in range(100):
        client.produce(TOPIC, PAYLOAD, on_delivery=report)
    client.flush(60)
    start.wait()
    acknowledged[0] = 0
    deadline[0] = time.perf_counter() + seconds
    while time.perf_counter() < deadline[0]:
        try:
            client.produce(TOPIC, PAYLOAD, on_delivery=report)
        except BufferError:
            client.poll(0.001)
        client.poll(0)
    client.flush(60)
    out.put(-1.0 if failed else acknowledged[0] / seconds)


def paired_rates(infos: dict[str, KafkaInfo], seconds: float) -> dict[str, float]:
    """Requests per second of each broker, all produced to flat out in the same seconds,
    each by a producer in a process of its own."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(infos))
    queues = {name: context.Queue() for name in infos}
    workers = {
        name: context.Process(
            target=flat_out, args=(producer_config(info), seconds, start, queues[name])
        )
        for name, info in infos.items()
    }
    for worker in workers.values():
        worker.start()
    rates = {name: queues[name].get(timeout=120 + seconds) for name in infos}
    for worker in workers.values():
        worker.join(30)
    failed = [name for name, rate in rates.items() if rate < 0]
    if failed:
        raise SystemExit(f"{', '.join(failed)}: produce requests failed")
    return rates


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


def timer(out: list[float], sent: float) -> Callable[[object, object], None]:
    """A delivery report that adds the milliseconds since `sent` to `out` (inf if failed)."""

    def report(err: object, _msg: object) -> None:
        out.append((time.perf_counter() - sent) * 1000 if err is None else float("inf"))

    return report


def paired_latencies(
    clients: dict[str, Producer], rate: int, seconds: float
) -> dict[str, list[float]]:
    """Milliseconds from produce() to the delivery report, per broker: at each tick of
    `rate` per second one request to each broker, in an order that rotates every tick."""
    names = list(clients)
    latencies: dict[str, list[float]] = {name: [] for name in names}
    interval = 1.0 / rate
    total = int(rate * seconds)
    started = time.perf_counter()
    for i in range(total):
        due = started + i * interval
        while time.perf_counter() < due:
            for client in clients.values():
                client.poll(0)
        first = i % len(names)
        for name in names[first:] + names[:first]:
            sent = time.perf_counter()
            clients[name].produce(TOPIC, PAYLOAD, on_delivery=timer(latencies[name], sent))
        for client in clients.values():
            client.poll(0)
    for client in clients.values():
        client.flush(60)
    return latencies


def warm_producer(info: KafkaInfo) -> Producer:
    """A producer that has already sent: connected, authenticated, metadata known."""
    client = producer(info)
    failed: list[object] = []

    def report(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(err)

    for _ in range(100):
        client.produce(TOPIC, PAYLOAD, on_delivery=report)
    client.flush(60)
    if failed:
        raise SystemExit(f"{info.bootstrap_servers}: produce requests failed: {failed[0]}")
    return client


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def authorize_cost(calls: int, rounds: int, flags: Sequence[str]) -> dict[str, float]:
    """Median nanoseconds per authorize() call, with and without the plugin, in one JVM
    started with `flags`."""
    dist = ensure_kafka()
    jar = broker_auditor_plugin().jar
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


def paired_median(values: dict[str, list[float]], name: str, op: str) -> float:
    """The median over rounds of `name`'s figure against plain's in the same round."""
    pairs = zip(values["plain"], values[name], strict=True)
    return statistics.median(b / a if op == "/" else b - a for a, b in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst-seconds", type=float, default=3.0)
    parser.add_argument("--rate", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=1_000_000, help="authorize() calls a round")
    parser.add_argument(
        "--aa",
        action="store_true",
        help="A/A run: the second broker is plain too, so every figure shows noise alone",
    )
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    c2_flags = [f for f in TOOL_JVM_FLAGS if f != "-XX:TieredStopAtLevel=1"]
    costs = authorize_cost(args.calls, args.rounds, c2_flags)
    costs_c1 = authorize_cost(args.calls, args.rounds, BROKER_JVM_FLAGS)
    print(f"authorize(): C2 {costs}, C1 {costs_c1}", flush=True)

    names = ["plain", "plugin"]
    rates: dict[str, list[float]] = {name: [] for name in names}
    tails: dict[str, list[float]] = {name: [] for name in names}
    medians: dict[str, list[float]] = {name: [] for name in names}
    cpu_ms: dict[str, float] = {}
    with ExitStack() as stack:
        brokers = {
            name: stack.enter_context(broker(name == "plugin" and not args.aa)) for name in names
        }
        for info in brokers.values():  # warm every JVM up alike before measuring
            produce_rate(info, 2_000)
        for round_ in range(args.rounds):
            for name, rate in paired_rates(brokers, args.burst_seconds).items():
                rates[name].append(rate)
            print(
                f"throughput round {round_ + 1}: "
                + ", ".join(f"{n} {rates[n][-1]:,.0f} req/s" for n in names),
                flush=True,
            )
        clients = {name: warm_producer(info) for name, info in brokers.items()}
        paired_latencies(clients, args.rate, 1.0)  # both JVMs' paths hot at this rate
        cpu_before = {name: cpu_seconds(info.pid or 0) for name, info in brokers.items()}
        for round_ in range(args.rounds):
            latencies = paired_latencies(clients, args.rate, args.seconds)
            for name in names:
                tails[name].append(p99(latencies[name]))
                medians[name].append(statistics.median(latencies[name]))
            print(
                f"latency round {round_ + 1} at {args.rate} req/s each: "
                + ", ".join(f"{n} p99 {tails[n][-1]:.3f} ms" for n in names),
                flush=True,
            )
        requests = args.rounds * int(args.rate * args.seconds)
        for name, info in brokers.items():
            cpu_ms[name] = (cpu_seconds(info.pid or 0) - cpu_before[name]) * 1000 / requests * 1000
        clients.clear()  # the producers end before their brokers stop
    figures: dict[str, object] = {
        "benchmark": "broker_auditor",
        "ratio": round(paired_median(rates, "plugin", "/"), 3),
        "added_p99_ms": round(paired_median(tails, "plugin", "-"), 3),
        "added_p50_ms": round(paired_median(medians, "plugin", "-"), 3),
    }
    figures |= {
        "compared": "plain vs plain (A/A)" if args.aa else "plain vs plugin",
        "added_p99_rounds_ms": [
            round(b - a, 3) for a, b in zip(tails["plain"], tails["plugin"], strict=True)
        ],
        "cpu_ratio": round(cpu_ms["plugin"] / cpu_ms["plain"], 3),
        **{f"{n}_cpu_ms_per_1k_requests": round(cpu_ms[n], 2) for n in names},
        **{f"{n}_requests_per_s": round(statistics.median(rates[n])) for n in names},
        **{f"{n}_p99_ms": round(statistics.median(tails[n]), 3) for n in names},
        **{f"{n}_p99_rounds_ms": [round(v, 3) for v in tails[n]] for n in names},
        "authorize_added_ns_produce": round(
            costs["produce_plugin_ns"] - costs["produce_plain_ns"], 1
        ),
        "authorize_added_ns_create": round(costs["create_plugin_ns"] - costs["create_plain_ns"], 1),
        **{f"authorize_{name}": value for name, value in costs.items()},
        "authorize_added_ns_produce_c1": round(
            costs_c1["produce_plugin_ns"] - costs_c1["produce_plain_ns"], 1
        ),
        "authorize_added_ns_create_c1": round(
            costs_c1["create_plugin_ns"] - costs_c1["create_plain_ns"], 1
        ),
        "paced_rate": args.rate,
        "rounds": args.rounds,
        "seconds_per_round": args.seconds,
        "burst_seconds": args.burst_seconds,
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "note": "medians of paired rounds on a shared 2-core machine",
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
