"""Nothing is lost when a destination or kaudit itself goes down under a steady stream.

For each destination, `kaudit run -c FILE` runs in its own process while this test writes
a steady stream of events to the audit log. During the stream the destination's server
is stopped for a while and started again, and later `kaudit run` is killed with SIGKILL
and started again. After catch-up, every event in the log has arrived at least once and
the copies are bounded by what those two interruptions can cause: the batch in flight
when the destination stopped and the batch sent but not yet acknowledged (cursor not
saved) when kaudit was killed, at most `batch_size` events each (for syslog over TCP
and TLS, which have no acknowledgements, also the batches of the last IN_DOUBT_SECS).

The servers are real: moto's S3 and CloudWatch Logs API server (stopped with SIGSTOP, so
requests hang until the client's timeout, and its data is kept), rsyslogd over TCP and
TLS (stopped with SIGTERM and started again), and an HTTP receiver for webhook and Slack
(its listening socket closed and opened again). UDP syslog is not in this list: a
datagram sent while the server is down is gone by design of the protocol.
"""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from kaudit_destination_servers import HttpReceiver, MotoServer, Rsyslog

import kaudit
from kaudit.config import load_config
from kaudit.exporters.syslog import IN_DOUBT_SECS
from kaudit.log.segments import LogReader

TOTAL_EVENTS = 600
EVENTS_PER_TICK = 10
TICK_S = 0.1  # about 100 events/s: six seconds of stream
BATCH_SIZE = 40
KAUDIT = str(Path(sys.executable).parent / "kaudit")


@dataclass
class Destination:
    """A destination under test: its config, how to stop and start its server, and the
    event ids the server has received (with repeats)."""

    settings: dict[str, Any]
    stop: Callable[[], None]
    start: Callable[[], None]
    received: Callable[[], list[str]]
    in_doubt_events: int = 0
    """Events sent lately that count as unacknowledged beyond the batch (syslog over
    TCP/TLS, which has no acknowledgements: the last IN_DOUBT_SECS of batches)."""


class KauditRun:
    """`kaudit run -c FILE` in its own process, started again after a kill."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [KAUDIT, "run", "-c", str(self.config_path)], stdout=log, stderr=log
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_with_faults(tmp_path: Path, destination: Destination) -> None:
    config_path = tmp_path / "kaudit.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "audit": {"log": {"fsync": "never"}, "destination": destination.settings},
            }
        )
    )
    config = load_config(config_path, env={})
    emitted = 0
    # The log is created by the writer before kaudit run opens it.
    writer = kaudit.open(config)

    def stream() -> None:
        nonlocal emitted
        for i in range(TOTAL_EVENTS):
            writer.emit(
                "topic.created", actor="User:alice", resource=f"topic:t{i}", details={"i": i}
            )
            if i % EVENTS_PER_TICK == EVENTS_PER_TICK - 1:
                writer.flush()
                emitted = i + 1
                time.sleep(TICK_S)
        writer.flush()
        emitted = TOTAL_EVENTS

    def wait_emitted(count: int) -> None:
        while emitted < count:
            time.sleep(0.02)

    runner = KauditRun(config_path, tmp_path / "kaudit-run.log")
    runner.start()
    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        wait_emitted(TOTAL_EVENTS // 6)
        # Interrupt a destination that is being delivered to, not one still starting.
        started = time.monotonic() + 30
        while not destination.received() and time.monotonic() < started:
            time.sleep(0.05)
        destination.stop()
        # Long enough for the clients' own retries and timeouts to run out.
        time.sleep(4.0)
        destination.start()
        wait_emitted(TOTAL_EVENTS * 5 // 6)
        runner.kill()
        time.sleep(0.3)
        runner.start()
        streamer.join()
        writer.close()
        logged = [
            orjson.loads(line)["event_id"] for _, line in LogReader(config.log_dir).iter_lines()
        ]
        assert len(logged) == TOTAL_EVENTS
        deadline = time.monotonic() + 90
        while not set(logged) <= set(destination.received()) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        runner.stop()
        streamer.join()
        destination.start()
    said = (tmp_path / "kaudit-run.log").read_text()
    # The outage was seen by the exporter (not hidden by a pause too short to matter).
    assert "failed, retrying" in said, said
    received = destination.received()
    missing = set(logged) - set(received)
    assert not missing, f"{len(missing)} events never arrived; kaudit run said:\n" + said[-3000:]
    assert set(received) == set(logged)
    # Duplicates only from the batch unacknowledged at each interruption: the events
    # received more than once lie in at most two runs of `batch_size` log positions
    # (a batch retried after a timeout can arrive more than twice: the server may still
    # process a request whose answer the client stopped waiting for).
    position = {event_id: n for n, event_id in enumerate(logged)}
    repeated = sorted(position[i] for i, n in Counter(received).items() if n > 1)
    unacknowledged = BATCH_SIZE + destination.in_doubt_events
    assert len(repeated) <= 2 * unacknowledged, f"{len(repeated)} events arrived more than once"
    assert runs_within(repeated, unacknowledged) <= 2, repeated


def runs_within(positions: list[int], width: int) -> int:
    """How many windows of `width` consecutive positions it takes to cover `positions`."""
    windows, start = 0, None
    for p in positions:
        if start is None or p >= start + width:
            windows, start = windows + 1, p
    return windows


def _batching(**extra: Any) -> dict[str, Any]:
    return {"batch_size": BATCH_SIZE, "batch_interval_secs": 0.1, **extra}


def test_s3_loses_nothing(tmp_path: Path, moto: MotoServer) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="audit-logs")

    def received() -> list[str]:
        ids = []
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket="audit-logs")
        for page in pages:
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket="audit-logs", Key=item["Key"])["Body"].read()
                ids += [
                    orjson.loads(line)["event_id"] for line in gzip.decompress(body).splitlines()
                ]
        return ids

    settings = {"type": "s3", "bucket": "audit-logs", "prefix": "faults/", "timeout_secs": 0.3}
    run_with_faults(
        tmp_path,
        Destination(
            {**settings, **moto.access(), **_batching()}, moto.pause, moto.resume, received
        ),
    )


def test_cloudwatch_loses_nothing(tmp_path: Path, moto: MotoServer) -> None:
    logs = moto.client("logs")

    def received() -> list[str]:
        ids: list[str] = []
        token = None
        try:
            while True:
                kwargs: dict[str, Any] = {
                    "logGroupName": "/kaudit/faults",
                    "logStreamName": "node-1",
                    "startFromHead": True,
                }
                if token:
                    kwargs["nextToken"] = token
                answer = logs.get_log_events(**kwargs)
                ids += [orjson.loads(e["message"])["event_id"] for e in answer["events"]]
                if not answer["events"] or answer["nextForwardToken"] == token:
                    return ids
                token = answer["nextForwardToken"]
        except logs.exceptions.ResourceNotFoundException:
            return ids

    settings = {
        "type": "cloudwatch",
        "log_group": "/kaudit/faults",
        "log_stream": "node-1",
        "timeout_secs": 0.5,
    }
    run_with_faults(
        tmp_path,
        Destination(
            {**settings, **moto.access(), **_batching()}, moto.pause, moto.resume, received
        ),
    )


@pytest.mark.parametrize("protocol", ["tcp", "tls"])
def test_syslog_loses_nothing(tmp_path: Path, rsyslog: Rsyslog, protocol: str) -> None:
    def received() -> list[str]:
        return [line.event()["event_id"] for line in rsyslog.lines()]

    settings = rsyslog.destination(protocol, timeout_secs=2, **_batching())
    in_doubt = int(EVENTS_PER_TICK / TICK_S * IN_DOUBT_SECS)
    run_with_faults(
        tmp_path, Destination(settings, rsyslog.stop, rsyslog.start, received, in_doubt)
    )


def _restartable(receiver: HttpReceiver) -> tuple[Callable[[], None], Callable[[], None]]:
    def start() -> None:
        if receiver._server is None:
            receiver.start()

    return receiver.stop, start


def test_webhook_loses_nothing(tmp_path: Path, receiver: HttpReceiver) -> None:
    def received() -> list[str]:
        return [event["event_id"] for body in receiver.bodies() for event in body]

    settings = {"type": "webhook", "url": receiver.url, "timeout": 2, "retry_attempts": 1}
    stop, start = _restartable(receiver)
    run_with_faults(tmp_path, Destination({**settings, **_batching()}, stop, start, received))


def test_slack_loses_nothing(tmp_path: Path, receiver: HttpReceiver) -> None:
    def received() -> list[str]:
        ids = []
        for body in receiver.bodies():
            match = re.search(r"event (\S+)", body["blocks"][-1]["elements"][0]["text"])
            assert match is not None
            ids.append(match.group(1))
        return ids

    settings = {"type": "slack", "webhook": receiver.url, "timeout": 2}
    stop, start = _restartable(receiver)
    run_with_faults(tmp_path, Destination({**settings, **_batching()}, stop, start, received))


def test_kaudit_run_stops_cleanly_on_sigterm(tmp_path: Path, receiver: HttpReceiver) -> None:
    config_path = tmp_path / "kaudit.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "audit": {"destination": {"type": "webhook", "url": receiver.url}},
            }
        )
    )
    with kaudit.open(load_config(config_path, env={})) as session:
        session.emit("topic.created", actor="User:a", resource="topic:t")
    run = KauditRun(config_path, tmp_path / "run.log")
    run.start()
    deadline = time.monotonic() + 30
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.proc is not None
    os.kill(run.proc.pid, signal.SIGTERM)
    assert run.proc.wait(20) == 0
    assert "kaudit run: stopped; sent " in (log := (tmp_path / "run.log").read_text())
    assert log.rstrip().endswith(": 1 event")  # one line, singular
