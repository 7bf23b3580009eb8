"""Several instances on one Kafka audit log: three `kaudit gateway` processes, each its
own signed writer stream, and two `kaudit run` exporter processes sharing one
destination through its consumer group. Under load, one of each is killed with -9:
every request a client got an answer to is recorded (fail_closed), every event of the
log reaches the destination (at least once), and `kaudit verify kafka://…` checks
every stream. Real processes, signals and broker."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from kio.schema.describe_cluster.v0.request import DescribeClusterRequest
from kio.schema.request_header.v2.header import RequestHeader
from kio.static.primitive import i16, i32

from kaudit.config.model import KafkaLog
from kaudit.dev.kafka import KafkaInfo
from kaudit.dev.ports import free_port_block
from kaudit.gateway.codec import API_KEYS, encode_request
from kaudit.integrity.keys import generate
from kaudit.log.kafka import KafkaLogReader
from support.kafka import kafka_log, security, wait_for

pytestmark = pytest.mark.kafka
KAUDIT = str(Path(sys.executable).with_name("kaudit"))
HMAC_ENV = "KAUDIT_TEST_INSTANCES_HMAC"


class Process:
    """A kaudit command as a child process, its stderr in a file."""

    def __init__(self, tmp: Path, name: str, document: dict[str, Any], *args: str) -> None:
        self.dir = tmp / name
        self.dir.mkdir()
        self.config = self.dir / "kaudit.yaml"
        self.config.write_text(yaml.safe_dump(document))
        self.stderr = self.dir / "stderr"
        env = {**__import__("os").environ, HMAC_ENV: "instances-hmac-key-0123456789abcdef"}
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                [KAUDIT, *args, "-c", str(self.config)], stderr=err, env=env
            )

    def alive(self) -> bool:
        assert self.proc.poll() is None, self.stderr.read_text()
        return True

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise


class Client(threading.Thread):
    """One connection sending DescribeCluster (recorded one by one) until stopped or the
    gateway goes away; remembers which requests were answered."""

    def __init__(self, port: int, name: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.name, self.stop = port, name, stop
        self.answered: list[int] = []
        self.error: OSError | None = None

    def run(self) -> None:
        header = RequestHeader(
            request_api_key=i16(API_KEYS["DescribeCluster"]),
            request_api_version=i16(0),
            correlation_id=i32(0),
            client_id=self.name,
        )
        frame = bytearray(
            encode_request(
                header, DescribeClusterRequest(include_cluster_authorized_operations=False)
            )
        )
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
                for correlation in range(1, 1_000_000):
                    if self.stop.is_set():
                        return
                    struct.pack_into(">i", frame, 8, correlation)
                    sock.sendall(frame)
                    size = struct.unpack(">i", _exactly(sock, 4))[0]
                    answer = struct.unpack(">i", _exactly(sock, size)[:4])[0]
                    assert answer == correlation
                    self.answered.append(correlation)
        except OSError as exc:
            self.error = exc  # its gateway was killed: what it answered before counts


def _exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionResetError("closed")
        data += chunk
    return data


def test_three_gateways_and_two_exporters_lose_nothing_when_one_of_each_is_killed(
    kafka: KafkaInfo, unique_topic: str, tmp_path: Path
) -> None:
    keys = generate(tmp_path / "keys" / "audit", "kaudit-instances-test")
    log = kafka_log(
        kafka.sasl_bootstrap_servers, unique_topic, security(kafka.client_config("admin"))
    )
    outputs = [tmp_path / "out-1.jsonl", tmp_path / "out-2.jsonl"]

    def document(data: str, **more: Any) -> dict[str, Any]:
        return {
            "data_dir": str(tmp_path / data),
            "cluster": {"id": "it"},
            "audit": {
                "failure_policy": "fail_closed",
                "log": log,
                "integrity": {
                    "signing": {"enabled": True, "key_env_var": HMAC_ENV},
                    "chain": {"enabled": True},
                    "checkpoints": {"enabled": True, "key_file": str(keys.private)},
                },
                **more,
            },
        }

    exporters: list[Process] = []
    gateways: list[tuple[Process, int]] = []
    stop = threading.Event()
    clients: list[Client] = []

    def exported() -> set[str]:
        return {
            orjson.loads(line)["event_id"]
            for out in outputs
            if out.exists()
            for line in out.read_bytes().splitlines()
        }

    try:
        for n in range(3):
            port = free_port_block(3)
            gw = document(f"gw-{n}")
            gw["gateway"] = {"upstream": kafka.bootstrap_servers, "listen": f"127.0.0.1:{port}"}
            gateways.append((Process(tmp_path, f"gateway-{n}", gw, "gateway"), port))
        for proc, port in gateways:
            wait_for(lambda p=proc, q=port: p.alive() and _listening(q), "a gateway", 60)
        # One destination ("shared": one consumer group), written by each to its file.
        for n, out in enumerate(outputs):
            shared = {"type": "file", "name": "shared", "path": str(out)}
            exporters.append(
                Process(tmp_path, f"exporter-{n}", document(f"ex-{n}", destination=shared), "run")
            )
        for n, (_, port) in enumerate(gateways):
            clients.extend(Client(port, f"client-{n}-{c}", stop) for c in range(3))
        for client in clients:
            client.start()
        wait_for(lambda: all(len(c.answered) >= 20 for c in clients), "answers", 60)
        gateways[0][0].kill()
        exporters[0].kill()
        wait_for(lambda: all(len(c.answered) >= 60 for c in clients[3:]), "more answers", 60)
        stop.set()
        for client in clients:
            client.join(30)
        for proc, _ in gateways:
            proc.stop()

        reader = KafkaLogReader(KafkaLog.model_validate(log), group=None)
        events = [orjson.loads(line) for line in reader.lines()]
        reader.close()
        recorded = {
            (e["actor"]["client_id"], int(e["context"]["correlation_id"]))
            for e in events
            if e["event_type"] == "kafka.request"
        }
        answered = {(c.name, n) for c in clients for n in c.answered}
        assert answered - recorded == set()
        assert len({e["integrity"]["sequence_number"] for e in events}) < len(events)  # 3 streams
        ids = {e["event_id"] for e in events}
        # The survivor took over the killed exporter's partitions.
        wait_for(lambda: exporters[1].alive() and ids <= exported(), "every event exported", 90)
    finally:
        stop.set()
        for client in clients:
            client.join(30)
        for proc in [*(p for p, _ in gateways), *exporters]:
            proc.stop()

    url = f"kafka://admin:admin-secret@{kafka.sasl_bootstrap_servers}/{unique_topic}"
    verified = subprocess.run(
        [KAUDIT, "verify", url, "--public-key", str(keys.public), "--json"],
        capture_output=True,
        timeout=120,
    )
    body = orjson.loads(verified.stdout)
    assert len(body["streams"]) == 3, body
    assert verified.returncode == 0 and body["ok"], body


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
