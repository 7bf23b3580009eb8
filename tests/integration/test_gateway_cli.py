"""`kaudit gateway` and `kaudit run` with a `gateway:` section, as real processes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from gateway_fixtures import one

from kaudit.dev.kafka import KafkaInfo
from kaudit.dev.ports import free_port_block
from kaudit.log.segments import LogReader
from support.wire import wait_for_port

pytestmark = pytest.mark.kafka
KAUDIT = str(Path(sys.executable).with_name("kaudit"))


def kaudit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`kaudit ARGS` run to its end in `cwd`, its output as text."""
    return subprocess.run([KAUDIT, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_kaudit_run_serves_the_configured_gateway_until_sigterm(
    kafka: KafkaInfo, admin_sasl_config: dict[str, str], tmp_path: Path, unique_topic: str
) -> None:
    port = free_port_block(4)
    config = tmp_path / "kaudit.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "gateway:\n"
        f"  upstream: {kafka.sasl_bootstrap_servers}\n"
        f"  listen: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen([KAUDIT, "run", "-c", str(config)], stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc)
        admin = AdminClient({**admin_sasl_config, "bootstrap.servers": f"127.0.0.1:{port}"})
        admin.create_topics([NewTopic(unique_topic, 2, 1)])[unique_topic].result(timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert f"listening on 127.0.0.1:{port}" in err.decode()
    reader = LogReader(tmp_path / "data" / "log")
    lines, _ = reader.read(reader.start())
    events = [orjson.loads(line) for line in lines]
    created = one(events, event_type="topic.created", resource__id=unique_topic)
    assert created["details"]["partitions"] == 2
    assert created["context"]["source"] == "gateway"


def test_gateway_command_line_errors_name_what_is_wrong(tmp_path: Path) -> None:
    missing = kaudit("gateway", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no upstream: pass --upstream HOST:PORT" in missing.stderr
    bad = kaudit("gateway", "--upstream", "kafka", "--listen", "127.0.0.1:99999", cwd=tmp_path)
    assert bad.returncode == 2
    assert "gateway.upstream[0]: must be host:port" in bad.stderr
    assert "gateway.listen: must be host:port" in bad.stderr


def test_a_taken_port_is_a_clear_error(kafka: KafkaInfo, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = kaudit(
            "gateway",
            "--upstream",
            kafka.sasl_bootstrap_servers,
            "--listen",
            f"127.0.0.1:{port}",
            cwd=tmp_path,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


@pytest.mark.timeout(60)  # a stop forgotten: the gateway would serve until the timeout
def test_a_stop_asked_for_while_the_gateway_was_being_built_is_not_lost(
    kafka: KafkaInfo, tmp_path: Path
) -> None:
    """`kaudit run` takes SIGINT/SIGTERM into an event from its start; one that came
    before the gateway's own handlers were in place (while it asked the brokers for
    their ports, say) stops the gateway instead of being forgotten. Run on the main
    thread, as `kaudit run` runs it (signal handlers need it)."""
    import threading

    from kaudit.config import Config
    from kaudit.gateway import run_gateway

    port = free_port_block(4)
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "gateway": {"upstream": kafka.sasl_bootstrap_servers, "listen": f"127.0.0.1:{port}"},
        }
    )
    stopped = threading.Event()
    stopped.set()
    served: list[object] = []
    run_gateway(config, stopped=stopped, ready=served.append)
    assert served == []  # it returned without ever serving
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
