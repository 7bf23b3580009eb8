"""`kaudit run` with a gateway, a destination and a `metrics:` section, as a real process
in front of the real broker: /metrics counts the requests by API and result, the bytes
each way and the time the gateway adds, what the recorder wrote and the exporter sent;
/readyz says the log, the broker and the exporters are fine."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from kaudit.dev.kafka import KafkaInfo
from kaudit.dev.ports import free_port_block
from support.wire import wait_for_port

pytestmark = pytest.mark.kafka
KAUDIT = str(Path(sys.executable).with_name("kaudit"))


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def send_unknown_api(port: int, api_key: int) -> None:
    """One request for an API Kafka does not have, before any login; whatever the
    gateway answers (it cannot answer in the API's shape), the connection ends."""
    client_id = b"probe"
    header = struct.pack(">hhih", api_key, 0, api_key, len(client_id)) + client_id
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(struct.pack(">i", len(header)) + header)
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(65536):
            pass


def test_kaudit_run_serves_the_gateway_and_exporter_metrics_and_readiness(
    kafka: KafkaInfo, admin_sasl_config: dict[str, str], tmp_path: Path, unique_topic: str
) -> None:
    port = free_port_block(4)
    metrics_port = free_port_block(1)
    config = tmp_path / "kaudit.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "audit:\n"
        "  destinations:\n"
        f"    - {{name: archive, type: file, path: {tmp_path / 'out.jsonl'}}}\n"
        "gateway:\n"
        f"  upstream: {kafka.sasl_bootstrap_servers}\n"
        f"  listen: 127.0.0.1:{port}\n"
        "metrics:\n"
        f"  listen: 127.0.0.1:{metrics_port}\n"
    )
    proc = subprocess.Popen([KAUDIT, "run", "-c", str(config)], stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc)
        client = {**admin_sasl_config, "bootstrap.servers": f"127.0.0.1:{port}"}
        admin = AdminClient(client)
        admin.create_topics([NewTopic(unique_topic, 1, 1)])[unique_topic].result(timeout=30)
        producer = Producer(client)
        for i in range(20):
            producer.produce(unique_topic, b"x" * 100, key=str(i).encode())
        assert producer.flush(30) == 0
        for api_key in range(30_000, 30_040):  # APIs Kafka does not have
            send_unknown_api(port, api_key)
        deadline = time.monotonic() + 60
        while True:
            got = scrape(metrics_port)
            sent = got.get(("kaudit_exporter_sent_total", (("destination", "archive"),)), 0)
            unknown = got.get(
                ("kaudit_gateway_requests_total", (("api", "unknown"), ("result", "refused"))), 0
            )
            if sent >= 1 and unknown >= 40:
                break
            assert time.monotonic() < deadline, "the exporter never sent the topic.created"
            time.sleep(0.2)
        answered = (("api", "CreateTopics"), ("result", "answered"))
        assert got[("kaudit_gateway_requests_total", answered)] == 1
        assert (
            got[("kaudit_gateway_requests_total", (("api", "Produce"), ("result", "answered")))]
            >= 1
        )
        assert got[("kaudit_gateway_bytes_total", (("direction", "client_to_broker"),))] > 2000
        assert got[("kaudit_gateway_bytes_total", (("direction", "broker_to_client"),))] > 0
        request_reads = ("kaudit_gateway_added_latency_seconds_count", (("direction", "request"),))
        assert got[request_reads] >= 1  # one read in 8 is timed
        assert got[("kaudit_gateway_connections_accepted_total", ())] >= 2
        assert got[("kaudit_events_written_total", ())] >= 1
        assert not any(labels for name, labels in got if "client_id" in dict(labels))
        apis = {dict(labels).get("api") for _, labels in got} - {None}
        assert not [api for api in apis if api.removeprefix("Api").isdigit()], apis
        ready = httpx.get(f"http://127.0.0.1:{metrics_port}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert set(ready.json()["checks"]) == {"audit_log", "broker", "exporters"}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert f"kaudit metrics: http://127.0.0.1:{metrics_port}/metrics" in err.decode()
