"""Stopping cleanly, for the commands that serve until stopped: SIGINT (Ctrl-C) or
SIGTERM (systemd) sent to the process group of `kaudit gateway` or `kaudit run` drains
(stops accepting, lets what is in flight be answered and recorded within
`gateway.stop_timeout_seconds`), writes the log's final checkpoint, prints one line and
exits 0; `kaudit verify` then finds every event covered by a checkpoint."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from kaudit.dev.kafka import KafkaInfo
from kaudit.dev.ports import free_port_block
from support.kafka import wait_for
from support.stopping import assert_closed_cleanly, signed_config, start_group, stop_group, verify
from support.wire import wait_for_port

pytestmark = pytest.mark.kafka


def _gateway_yaml(kafka: KafkaInfo, port: int) -> str:
    return (
        "gateway:\n"
        f"  upstream: {kafka.sasl_bootstrap_servers}\n"
        f"  listen: 127.0.0.1:{port}\n"
        "  stop_timeout_seconds: 3\n"
    )


def _create_topic(admin_sasl_config: dict[str, str], port: int, topic: str) -> None:
    admin = AdminClient({**admin_sasl_config, "bootstrap.servers": f"127.0.0.1:{port}"})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_gateway_stops_with_its_final_checkpoint(
    kafka: KafkaInfo,
    admin_sasl_config: dict[str, str],
    tmp_path: Path,
    unique_topic: str,
    sig: signal.Signals,
) -> None:
    port = free_port_block(4)
    config = signed_config(tmp_path, _gateway_yaml(kafka, port))
    proc = start_group(["gateway", "-c", str(config)], tmp_path)
    wait_for_port(port, proc)
    _create_topic(admin_sasl_config, port, unique_topic)
    started = time.monotonic()
    code, err, _ = stop_group(proc, sig)
    assert code == 0, err
    assert time.monotonic() - started < 3 + 30  # the drain's bound, and a loaded machine
    assert "Traceback" not in err, err
    assert err.splitlines()[-1] == "kaudit gateway: stopped"
    assert f"config {config}" in err.splitlines()[0]  # which config, data dir and log
    assert_closed_cleanly(verify(tmp_path))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_kaudit_run_stops_with_its_final_checkpoint_and_exports(
    kafka: KafkaInfo,
    admin_sasl_config: dict[str, str],
    tmp_path: Path,
    unique_topic: str,
    sig: signal.Signals,
) -> None:
    port = free_port_block(4)
    export = tmp_path / "export.jsonl"
    destination = f"  destinations: [{{type: file, name: copy, path: {export}}}]\n"
    config = signed_config(tmp_path, destination + _gateway_yaml(kafka, port))
    proc = start_group(["run", "-c", str(config)], tmp_path)
    wait_for_port(port, proc)
    _create_topic(admin_sasl_config, port, unique_topic)

    def exported() -> bool:
        return export.exists() and unique_topic.encode() in export.read_bytes()

    wait_for(exported, "the topic's event exported", 60)
    code, err, _ = stop_group(proc, sig)
    assert code == 0, err
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("kaudit run: stopped; sent copy: "), err
    report = verify(tmp_path)
    assert_closed_cleanly(report)
    events = [orjson.loads(line) for line in export.read_bytes().splitlines()]
    assert any(e["resource"]["id"] == unique_topic for e in events)
