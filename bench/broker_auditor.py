"""What kaudit's broker auditor plugin costs a producer: one local broker with the plugin,
whose counting is switched on and off at runtime in short alternating slices; each figure
compares the slices with counting on against those with it off, in the same run.

Why this method. Two brokers side by side (one plain, one with the plugin) on this shared
2-core machine could not resolve the target: in paired 3-s rounds the p99 of either broker
ranged 3.7-274 ms, an A/A run (two plain brokers) showed added p99 of +7.7 ms, while the
plugin adds ~55-60 ns to authorize(). The noise came from two JVMs and their clients
competing for two cores, each stall landing on one side. Here there is one JVM, one
producer and one connection, so a stall lands on whichever slice is running; slices are
short and many, in pairs whose order is drawn at random, so the machine's noise falls on
both sides alike and is averaged over hundreds of pairs instead of nine rounds.

- The switch: `kaudit.audit.include.data.access`, the plugin's dynamic broker config
  (Kafka passes its changes to the authorizer, a Reconfigurable; operators use it to
  turn produce/fetch counting off under load). Off, a produce request costs
  StandardAuthorizer's answer plus one check (`authorize_off_added_ns*`, measured by
  bench/AuthorizeCost.java with the broker's own C1-only flags and with C2): that is
  what this comparison leaves out of "the plugin against no plugin", some nanoseconds.
  Everything else the loaded plugin does is the same in both slices: its sender thread
  wakes every 100 ms either way; the one aggregate record a 10-s window gives (the bench
  producer's count) is sent at the window's end, in whichever slice that is. A slice is
  measured only once the broker has applied its state: the bench sets (off) or deletes
  (on) the config with AlterConfigs and polls DescribeConfigs, which the broker answers
  from the configs it applies after reconfiguring the authorizer. Requests sent while a
  switch is pending still go out at the same pace, but belong to no slice.
- latency: one warmed-up producer (alice over SASL, an ACL-governed user whose writes the
  plugin counts; acks=1, linger.ms=0, one record a request) sends `--rate` requests a
  second without pause for the whole run; each is timed by librdkafka from produce() to
  the broker's acknowledgement (Message.latency(): when this process gets to run the
  delivery report does not count; between ticks it sleeps rather than spins, leaving the
  cores to the broker) and belongs to the slice it was sent in (`--slice-ms` long; a
  request still in flight when the next switch applies is authorized under the next
  slice's state; at a few ms a request against a switch of ~40 ms, that is only tail
  requests, and it dilutes the difference rather than biasing it, both directions alike).
  `added_p99_ms` is, as in the paired rounds before, the median over pairs of (p99 of the
  counting slice - p99 of the other), with a 95 % bootstrap interval (`added_p99_ci_ms`)
  from resampling whole pairs (samples within a slice are not independent; the pairs are).
  The p99 of all counting samples minus that of all others (`added_p99_pooled_ms`, with
  its interval) is the check that the plugin brings no rare stall that a median over pairs
  would pass over; the machine's own stalls make it the noisier figure.
- throughput: a second producer like it (its own connection) flat out, at most 1,000
  records waiting, in slices of `--burst-slice-ms`; a slice's rate is the acknowledgements
  that arrive within it. The broker handles a connection's requests one at a time, so what
  is acknowledged in a slice was authorized in it. `ratio` is the median over pairs of
  (counting rate / other rate), with a bootstrap interval; `ratio_pooled` all counting
  requests per second over all others. `broker_cpu_busy` is the broker's CPU seconds per
  second during these slices: near 1.0 (its one core) the broker, not the client, set the
  pace.
- CPU: the broker JVM's CPU time (user + system, /proc) in each kind of latency slice,
  per 1,000 requests; `cpu_ratio` is on over off.
- noise: with two or more CPUs allowed, the broker's threads are pinned to one core and
  this process (and its librdkafka threads) to another, so the client never takes the
  broker's core (`--no-pin` leaves both to the scheduler); other processes on the machine
  still run on both cores (`load_average`). The broker and its clients are warmed up (JIT,
  connections, metadata, a few switches) before anything is timed.
- `--aa`: an A/A run. The two kinds of slice both count (the switch sets the config to
  true, or deletes it), with the same switching; the figures are then the method's
  noise floor, and `compared` says so.

The last line printed is one JSON object with the figures and the load average. The
broker and its directory are removed at the end.

    .venv/bin/python bench/broker_auditor.py [--rate 2000] [--slice-ms 250] [--pairs 160]
        [--burst-slice-ms 300] [--burst-pairs 100] [--aa]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
from confluent_kafka import Message, Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from kaudit.dev.broker_auditor import broker_auditor_plugin
from kaudit.dev.dist import TOOL_JVM_FLAGS, ensure_kafka, require_java
from kaudit.dev.kafka import KafkaInfo, LocalKafka, run_kafka_tool
from kaudit.dev.process import BROKER_JVM_FLAGS
from paired_slices import (
    Slice,
    bootstrap,
    median_interval,
    p99,
    paired_differences,
    pairs_of,
    pooled_ratio,
    rate_ratios,
    tail_difference,
)

TOPIC = "bench-broker-auditor"
PAYLOAD = b"x" * 100
SWITCH = "kaudit.audit.include.data.access"
NODE_ID = "1"  # the local broker's node.id
DESCRIBE_EVERY_S = 0.005


@contextmanager
def broker() -> Iterator[KafkaInfo]:
    directory = Path(tempfile.mkdtemp(prefix="kaudit-bench-broker-auditor-"))
    kafka = LocalKafka(directory, broker_auditor=broker_auditor_plugin())
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
    while not delivered(Producer(producer_config(info)), 10):
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


def delivered(client: Producer, records: int) -> bool:
    """Produces `records` flat out; whether all were acknowledged."""
    failed: list[object] = []

    def report(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(err)

    for _ in range(records):
        while True:
            try:
                client.produce(TOPIC, PAYLOAD, on_delivery=report)
                break
            except BufferError:
                client.poll(0.001)
        client.poll(0)
    client.flush(60)
    return not failed


def pin(broker_pid: int) -> tuple[int, int] | None:
    """The broker's threads on one allowed CPU, this process on another; None (nothing
    pinned) with fewer than two."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    client_cpu, broker_cpu = cpus[0], cpus[1]
    os.sched_setaffinity(0, {client_cpu})
    # Each thread of the JVM; threads it starts later inherit their creator's CPU.
    for tid in os.listdir(f"/proc/{broker_pid}/task"):
        with suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(tid), {broker_cpu})
    return client_cpu, broker_cpu


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CountingSwitch:
    """Sets the plugin's counting on the running broker without blocking the caller:
    `request` sends the AlterConfigs, `applied` (polled) says once DescribeConfigs shows
    the broker has it. On is the config deleted; off is it set to false (to true in an
    A/A run, so both kinds of slice count and switch alike)."""

    def __init__(self, info: KafkaInfo, aa: bool) -> None:
        self.admin = AdminClient(info.client_config())
        self.resource = ConfigResource(ResourceType.BROKER, NODE_ID)
        self.off_value = "true" if aa else "false"
        self.target = True
        self.altering: Future[None] | None = None
        self.describing: Future[dict[str, object]] | None = None
        self.described_at = 0.0

    def request(self, count: bool) -> None:
        operation = AlterConfigOpType.DELETE if count else AlterConfigOpType.SET
        entry = ConfigEntry(SWITCH, self.off_value, incremental_operation=operation)
        change = ConfigResource(ResourceType.BROKER, NODE_ID, incremental_configs=[entry])
        self.target = count
        self.altering = self.admin.incremental_alter_configs([change])[change]
        self.describing = None

    def applied(self) -> bool:
        if self.altering is not None:
            if not self.altering.done():
                return False
            self.altering.result()  # raises if the broker refused it
            self.altering = None
        if self.describing is None:
            now = time.perf_counter()
            if now - self.described_at >= DESCRIBE_EVERY_S:
                self.described_at = now
                self.describing = self.admin.describe_configs([self.resource])[self.resource]
            return False
        if not self.describing.done():
            return False
        present = SWITCH in self.describing.result()
        self.describing = None
        return present is not self.target

    def settle(self, count: bool) -> None:
        self.request(count)
        while not self.applied():
            time.sleep(0.001)


def slice_order(pairs: int, rng: random.Random) -> list[bool]:
    """Counting on/off for each slice: pairs of one each, in an order drawn per pair."""
    order: list[bool] = []
    for _ in range(pairs):
        first = rng.random() < 0.5
        order += [first, not first]
    return order


def run_slices(
    client: Producer,
    switch: CountingSwitch,
    broker_pid: int,
    order: Sequence[bool],
    slice_s: float,
    rate: int | None,
) -> list[Slice]:
    """Produces without pause, at `rate` requests a second (flat out if None), through
    slices in `order`, each measured from the moment the broker applied its state."""
    done: list[Slice] = []
    current: list[Slice | None] = [None]
    failed: list[object] = []
    interval = 1.0 / rate if rate else 0.0

    def acknowledged(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(err)
        elif current[0] is not None:
            current[0].acknowledged += 1

    def timed(out: list[float] | None) -> Callable[[object, Message], None]:
        def report(err: object, msg: Message) -> None:
            if err is not None:
                failed.append(err)
            elif out is not None:
                # librdkafka's own time from produce() to the acknowledgement: when this
                # process got to run the callback does not count.
                out.append((msg.latency() or 0.0) * 1000)

        return report

    unattributed = timed(None)

    next_index = 0
    switch.request(order[0])
    started = time.perf_counter()
    tick = 0
    while next_index < len(order) or current[0] is not None:
        if rate:
            due = started + tick * interval
            # Sleep to the tick rather than spin: the cores are the broker's and others'.
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        now = time.perf_counter()
        running = current[0]
        if running is None and next_index < len(order) and switch.applied():
            running = current[0] = Slice(order[next_index], now, cpu_s=cpu_seconds(broker_pid))
            running.report = timed(running.latencies_ms)
            next_index += 1
        elif running is not None and now >= running.started + slice_s:
            running.ended = now
            running.cpu_s = cpu_seconds(broker_pid) - running.cpu_s
            done.append(running)
            running = current[0] = None
            if next_index < len(order):
                switch.request(order[next_index])
            else:
                break
        if rate:
            report = running.report if running is not None else unattributed
            client.produce(TOPIC, PAYLOAD, on_delivery=report)
            tick += 1
        else:
            try:
                client.produce(TOPIC, PAYLOAD, on_delivery=acknowledged)
            except BufferError:
                client.poll(0.0005)
        client.poll(0)
    client.flush(60)
    if failed:
        raise SystemExit(f"produce requests failed: {failed[0]}")
    return done


def authorize_cost(calls: int, rounds: int, flags: Sequence[str]) -> dict[str, float]:
    """Median nanoseconds per authorize() call: StandardAuthorizer, the plugin, the
    plugin with counting off, in one JVM started with `flags`."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2_000)
    parser.add_argument("--slice-ms", type=float, default=250.0)
    parser.add_argument("--pairs", type=int, default=160, help="pairs of latency slices")
    parser.add_argument("--burst-slice-ms", type=float, default=300.0)
    parser.add_argument("--burst-pairs", type=int, default=100, help="pairs of flat-out slices")
    parser.add_argument("--resamples", type=int, default=1_000)
    parser.add_argument("--calls", type=int, default=1_000_000, help="authorize() calls a round")
    parser.add_argument("--rounds", type=int, default=9, help="authorize() rounds")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--no-pin", action="store_true", help="leave the broker and this process unpinned"
    )
    parser.add_argument(
        "--aa", action="store_true", help="A/A run: both kinds of slice count (noise floor)"
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)

    load_before = os.getloadavg()[0]
    c2_flags = [f for f in TOOL_JVM_FLAGS if f != "-XX:TieredStopAtLevel=1"]
    costs = authorize_cost(args.calls, args.rounds, c2_flags)
    costs_c1 = authorize_cost(args.calls, args.rounds, BROKER_JVM_FLAGS)
    print(f"authorize(): C2 {costs}, C1 {costs_c1}", flush=True)

    with broker() as info:
        pid = info.pid or 0
        pinned = None if args.no_pin else pin(pid)
        client = Producer(producer_config(info))  # paced: room for a stall's backlog
        # Flat out, at most 1,000 records waiting: no backlog worth seconds.
        flat_out = Producer({**producer_config(info), "queue.buffering.max.messages": 1000})
        switch = CountingSwitch(info, args.aa)
        # Warm-up: JIT of both paths, the connection, the switch, the pacing loop.
        for count in (True, False, True, False):
            switch.settle(count)
            delivered(client, 2_000)
            delivered(flat_out, 5_000)
        run_slices(client, switch, pid, slice_order(4, rng), args.slice_ms / 1000, args.rate)
        bursts = run_slices(
            flat_out, switch, pid, slice_order(args.burst_pairs, rng), args.burst_slice_ms / 1000,
            None,
        )  # fmt: skip
        print(f"throughput: {len(bursts)} slices", flush=True)
        slices = run_slices(
            client, switch, pid, slice_order(args.pairs, rng), args.slice_ms / 1000, args.rate
        )
        switch.settle(True)
        del client, flat_out, switch  # the clients end before their broker stops

    burst_pairs = pairs_of(bursts)
    latency_pairs = pairs_of(slices)
    samples = {
        side: np.concatenate([np.asarray(pair[i].latencies_ms) for pair in latency_pairs])
        for i, side in enumerate(("on", "off"))
    }
    requests = {side: len(values) for side, values in samples.items()}
    cpu_ms = {
        side: sum(pair[i].cpu_s for pair in latency_pairs) * 1e6 / requests[side]
        for i, side in enumerate(("on", "off"))
    }
    burst_seconds = sum(s.ended - s.started for s in bursts)
    rates = {
        side: sum(pair[i].acknowledged for pair in burst_pairs)
        / sum(pair[i].ended - pair[i].started for pair in burst_pairs)
        for i, side in enumerate(("on", "off"))
    }
    p99_pairs = paired_differences(latency_pairs, 0.99)
    p50_pairs = paired_differences(latency_pairs, 0.5)
    ratios = rate_ratios(burst_pairs)

    def rounded(values: Sequence[float], digits: int) -> list[float]:
        return [round(v, digits) for v in values]

    figures: dict[str, object] = {
        "benchmark": "broker_auditor",
        "ratio": round(statistics.median(ratios), 3),
        "added_p99_ms": round(statistics.median(p99_pairs), 3),
        "added_p99_ci_ms": rounded(median_interval(p99_pairs, args.resamples, rng), 3),
        "added_p50_ms": round(statistics.median(p50_pairs), 4),
        "added_p50_ci_ms": rounded(median_interval(p50_pairs, args.resamples, rng), 4),
        "ratio_ci": rounded(median_interval(ratios, args.resamples, rng), 3),
        "added_p99_pooled_ms": round(tail_difference(latency_pairs, 0.99), 3),
        "added_p99_pooled_ci_ms": rounded(
            bootstrap(latency_pairs, lambda p: tail_difference(p, 0.99), args.resamples, rng), 3
        ),
        "ratio_pooled": round(pooled_ratio(burst_pairs), 3),
        "ratio_pooled_ci": rounded(bootstrap(burst_pairs, pooled_ratio, args.resamples, rng), 3),
        "compared": (
            "counting on vs on (A/A), one broker"
            if args.aa
            else "plugin counting on vs off, one broker"
        ),
        **{f"{side}_p99_ms": round(p99(values), 3) for side, values in samples.items()},
        **{
            f"{side}_p50_ms": round(float(np.median(values)), 3) for side, values in samples.items()
        },
        **{f"{side}_requests_per_s": round(rate) for side, rate in rates.items()},
        "latency_requests": requests,
        "broker_cpu_busy": round(sum(s.cpu_s for s in bursts) / burst_seconds, 2),
        "cpu_ratio": round(cpu_ms["on"] / cpu_ms["off"], 3),
        **{f"{side}_cpu_ms_per_1k_requests": round(v, 2) for side, v in cpu_ms.items()},
        "authorize_added_ns_produce": round(
            costs["produce_plugin_ns"] - costs["produce_plain_ns"], 1
        ),
        "authorize_off_added_ns_produce": round(
            costs["produce_off_ns"] - costs["produce_plain_ns"], 1
        ),
        "authorize_added_ns_produce_c1": round(
            costs_c1["produce_plugin_ns"] - costs_c1["produce_plain_ns"], 1
        ),
        "authorize_off_added_ns_produce_c1": round(
            costs_c1["produce_off_ns"] - costs_c1["produce_plain_ns"], 1
        ),
        **{f"authorize_{name}": value for name, value in costs.items()},
        **{f"authorize_{name}_c1": value for name, value in costs_c1.items()},
        "paced_rate": args.rate,
        "slice_ms": args.slice_ms,
        "pairs": len(latency_pairs),
        "burst_slice_ms": args.burst_slice_ms,
        "burst_pairs": len(burst_pairs),
        "pinned_client_broker_cpus": list(pinned) if pinned else None,
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "note": "one broker, counting switched per slice; shared 2-core machine",
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
