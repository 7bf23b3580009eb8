"""The local Kafka harness against the real broker: data plane, SASL, ACLs, CLI, life cycle.

These tests prove the harness gives the rest of the suite what it promises: admin can
produce and consume, SASL users authenticate with each mechanism and are refused with a
wrong password, a user without ACLs is denied until Kafka's own AclCommand grants them,
`kaudit local-kafka status` reports what clients need, and `stop` signals only the
broker it started.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from kaudit.cli.local_kafka import local_kafka
from kaudit.dev.dist import cached_dist, ensure_kafka, is_complete
from kaudit.dev.errors import KafkaStartError
from kaudit.dev.kafka import SASL_MECHANISMS, KafkaInfo, KafkaPorts, LocalKafka
from kaudit.dev.probe import ProbeError, probe_metadata
from support.kafka import grant

STATUS_KEYS = {
    "running",
    "pid",
    "bootstrap_servers",
    "sasl_bootstrap_servers",
    "users",
    "kafka_version",
    "kafka_classpath",
    "log_file",
    "dir",
}
# librdkafka logs every failed SASL attempt at error level; route it to Python logging
# so pytest captures it with the test instead of it going to the terminal.
_RDKAFKA_LOG = logging.getLogger("rdkafka")


def _create_topic(config: dict[str, str], topic: str) -> None:
    # Keep the client referenced until the result is in: a collected client cancels it.
    admin = AdminClient(config)
    futures = admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=20)
    futures[topic].result(timeout=30)


def _create_topic_error(config: dict[str, str], topic: str) -> KafkaError | None:
    try:
        _create_topic(config, topic)
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        return error
    return None


@pytest.mark.kafka
def test_admin_produces_and_consumes(admin_config: dict[str, str], unique_topic: str) -> None:
    _create_topic(admin_config, unique_topic)
    delivered: list[Any] = []
    producer = Producer({**admin_config, "acks": "all"})
    for i in range(3):
        producer.produce(
            unique_topic,
            key=f"k{i}".encode(),
            value=f"v{i}".encode(),
            on_delivery=lambda err, msg: delivered.append(err or msg.offset()),
        )
    assert producer.flush(30) == 0
    assert delivered == [0, 1, 2]

    consumer = Consumer(
        {
            **admin_config,
            "group.id": f"group-{unique_topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([unique_topic])
        received: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + 30
        while len(received) < 3 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            received.append((msg.key(), msg.value()))
    finally:
        consumer.close()
    assert received == [(b"k0", b"v0"), (b"k1", b"v1"), (b"k2", b"v2")]


@pytest.mark.kafka
def test_alice_denied_create_until_acl_added_with_kafka_acl_command(
    alice_config: dict[str, str],
    admin_config: dict[str, str],
    kafka_tool: Callable[..., subprocess.CompletedProcess[str]],
    unique_topic: str,
) -> None:
    denied = _create_topic_error(alice_config, unique_topic)
    assert denied is not None
    assert denied.code() in {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    }, denied

    grant(kafka_tool, "User:alice", "--operation", "Create", "--operation", "Describe",
          "--topic", unique_topic)  # fmt: skip
    listed = kafka_tool("org.apache.kafka.tools.AclCommand", "--list", "--topic", unique_topic)
    assert "principal=User:alice" in listed.stdout
    assert "operation=CREATE" in listed.stdout

    # ACLs reach the broker's authorizer through the metadata log, a moment after
    # AclCommand returns, so the first attempts may still be refused.
    deadline = time.monotonic() + 15
    while (error := _create_topic_error(alice_config, unique_topic)) is not None:
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error
        assert time.monotonic() < deadline, "ACL did not take effect within 15 s"
        time.sleep(0.2)
    topics = AdminClient(admin_config).list_topics(timeout=10).topics
    assert unique_topic in topics


@pytest.mark.kafka
@pytest.mark.parametrize("mechanism", SASL_MECHANISMS)
def test_each_sasl_mechanism_authenticates(
    sasl_config: Callable[..., dict[str, str]], kafka: KafkaInfo, mechanism: str
) -> None:
    # bob has no ACLs: metadata still answers (with no topics he may see), which needs
    # a completed SASL handshake.
    metadata = AdminClient(sasl_config("bob", mechanism)).list_topics(timeout=15)
    assert metadata.cluster_id == kafka.cluster_id
    assert [b.port for b in metadata.brokers.values()] == [kafka.ports.sasl_plaintext]


@pytest.mark.kafka
@pytest.mark.parametrize("mechanism", SASL_MECHANISMS)
def test_wrong_password_is_rejected(
    sasl_config: Callable[..., dict[str, str]], mechanism: str
) -> None:
    errors: list[KafkaError] = []
    config = {
        **sasl_config("alice", mechanism, password="not-alice-secret"),
        "error_cb": errors.append,
        "logger": _RDKAFKA_LOG,
    }
    producer = Producer(config)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any(
        e.code() == KafkaError._AUTHENTICATION for e in errors
    ):
        producer.poll(0.2)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors


@pytest.mark.kafka
def test_java_tools_act_as_sasl_user_with_client_properties(
    kafka: KafkaInfo,
    kafka_tool: Callable[..., subprocess.CompletedProcess[str]],
    client_properties: Callable[..., Path],
    unique_topic: str,
) -> None:
    admin_props = client_properties("admin", "SCRAM-SHA-256")
    assert oct(admin_props.stat().st_mode & 0o777) == "0o600"
    sasl = kafka.sasl_bootstrap_servers
    topic_command = "org.apache.kafka.tools.TopicCommand"
    kafka_tool(
        topic_command,
        "--command-config",
        str(admin_props),
        "--create",
        "--topic",
        unique_topic,
        "--partitions",
        "1",
        "--replication-factor",
        "1",
        bootstrap=sasl,
    )
    listed = kafka_tool(
        topic_command, "--command-config", str(admin_props), "--list", bootstrap=sasl
    )
    assert unique_topic in listed.stdout.split()

    bob_props = client_properties("bob", "PLAIN")
    refused = kafka_tool(
        topic_command,
        "--command-config",
        str(bob_props),
        "--create",
        "--topic",
        f"{unique_topic}-bob",
        bootstrap=sasl,
        check=False,
    )
    assert refused.returncode != 0
    assert "TopicAuthorizationException" in refused.stdout + refused.stderr


@pytest.mark.kafka
def test_status_cli_reports_connection_details(kafka: KafkaInfo) -> None:
    result = CliRunner().invoke(local_kafka, ["status", "--dir", str(kafka.dir)])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status.keys() >= STATUS_KEYS
    assert status["running"] is True
    assert status["ready"] is True
    assert status["pid"] == kafka.pid
    assert status["bootstrap_servers"] == kafka.bootstrap_servers
    assert status["sasl_bootstrap_servers"] == kafka.sasl_bootstrap_servers
    assert status["kafka_version"].startswith("4.")
    assert status["users"]["alice"] == {
        "password": "alice-secret",
        "mechanisms": ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"],
        "super_user": False,
    }
    assert status["users"]["admin"]["super_user"] is True
    assert {"bob"} <= status["users"].keys()
    assert Path(status["log_file"]).is_file()

    # The classpath is usable as documented: java -cp CLASSPATH <Kafka tool>.
    listed = subprocess.run(
        [
            "java",
            "-cp",
            status["kafka_classpath"],
            "org.apache.kafka.tools.TopicCommand",
            "--bootstrap-server",
            status["bootstrap_servers"],
            "--list",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert listed.returncode == 0


@pytest.mark.kafka
def test_start_when_running_says_so_and_prints_status(kafka: KafkaInfo) -> None:
    result = CliRunner().invoke(local_kafka, ["start", "--dir", str(kafka.dir)])
    assert result.exit_code == 0, result.output
    assert "already running" in result.stderr
    assert json.loads(result.stdout)["pid"] == kafka.pid


@pytest.mark.kafka
def test_module_entry_point_and_not_running_exit_code(kafka: KafkaInfo, tmp_path: Path) -> None:
    def status(directory: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kaudit.cli.local_kafka", "status", "--dir", str(directory)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    running = status(kafka.dir)
    assert running.returncode == 0, running.stderr
    assert json.loads(running.stdout)["bootstrap_servers"] == kafka.bootstrap_servers

    absent = status(tmp_path / "nothing-here")
    assert absent.returncode == 3
    assert json.loads(absent.stdout)["running"] is False


@pytest.mark.kafka
def test_stop_leaves_a_process_it_did_not_start_alone(kafka: KafkaInfo, tmp_path: Path) -> None:
    # A state file in another directory that names the real broker's pid: the pid is a
    # live kafka.Kafka JVM, but not one started for this directory.
    other = tmp_path / "other"
    other.mkdir()
    foreign = replace(kafka, dir=other, config_file=other / "server.properties")
    (other / "state.json").write_text(json.dumps(foreign.to_json()), encoding="utf-8")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        assert LocalKafka(other).stop(timeout=1) is False
        status = LocalKafka(other).status()
        assert status is not None
        assert status.running is False
        probe = probe_metadata(kafka.host, kafka.ports.plaintext)
        assert probe.cluster_id == kafka.cluster_id

        # Same with an unrelated process.
        (other / "state.json").write_text(
            json.dumps(replace(foreign, pid=sleeper.pid).to_json()), encoding="utf-8"
        )
        assert LocalKafka(other).stop(timeout=1) is False
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.kafka
def test_second_broker_stops_and_restarts_with_its_storage(
    kafka: KafkaInfo, tmp_path: Path
) -> None:
    """Life cycle through the CLI: start, stop (port closes, pid gone), restart keeps topics."""
    directory = tmp_path / "second"
    runner = CliRunner()

    started = runner.invoke(local_kafka, ["start", "--dir", str(directory)])
    assert started.exit_code == 0, started.output
    first = json.loads(started.stdout)
    assert first["ready"] is True
    assert first["bootstrap_servers"] != kafka.bootstrap_servers
    try:
        topic = "survives-restart"
        _create_topic({"bootstrap.servers": first["bootstrap_servers"]}, topic)

        stopped = runner.invoke(local_kafka, ["stop", "--dir", str(directory)])
        assert stopped.exit_code == 0, stopped.output
        assert "Kafka stopped" in stopped.stderr
        with pytest.raises(ProcessLookupError):
            os.kill(first["pid"], 0)
        with pytest.raises(ProbeError):
            probe_metadata("127.0.0.1", first["ports"]["plaintext"], timeout=1)
        not_running = runner.invoke(local_kafka, ["status", "--dir", str(directory)])
        assert not_running.exit_code == 3
        assert json.loads(not_running.stdout)["running"] is False

        again = runner.invoke(local_kafka, ["start", "--dir", str(directory)])
        assert again.exit_code == 0, again.output
        second = json.loads(again.stdout)
        assert second["pid"] != first["pid"]
        assert second["ports"] == first["ports"]
        assert second["cluster_id"] == first["cluster_id"]
        topics = AdminClient({"bootstrap.servers": second["bootstrap_servers"]}).list_topics(
            timeout=15
        )
        assert topic in topics.topics
    finally:
        LocalKafka(directory).stop()
    # Stopping again finds nothing of ours to stop.
    assert LocalKafka(directory).stop() is False


@pytest.mark.kafka
def test_broker_not_ready_in_time_is_killed_and_its_log_shown(tmp_path: Path) -> None:
    # No JVM answers within 0.2 s, so this exercises the timeout path for real.
    local = LocalKafka(tmp_path / "slow", ready_timeout=0.2)
    with pytest.raises(KafkaStartError, match=r"not ready within") as raised:
        local.start()
    assert f"Last lines of {local.log_file}" in str(raised.value)
    status = local.status()
    assert status is not None
    assert status.running is False
    owner = f"-Dkaudit.local.kafka.dir={local.dir}".encode()
    leftovers = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if owner in cmdline.read_bytes().split(b"\0"):
                leftovers.append(cmdline.parent.name)
        except OSError:
            continue
    assert leftovers == []


@pytest.mark.kafka
def test_chosen_port_taken_before_the_broker_binds_it_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulate the race between choosing a free port and the JVM binding it: the first
    # choice includes a port another socket is listening on.
    thief = socket.socket()
    thief.bind(("127.0.0.1", 0))
    thief.listen()
    taken = thief.getsockname()[1]
    choose = LocalKafka._choose_ports
    choices: list[KafkaPorts] = []

    def choose_once_taken(self: LocalKafka) -> KafkaPorts:
        ports = choose(self)
        choices.append(ports if choices else replace(ports, plaintext=taken))
        return choices[-1]

    monkeypatch.setattr(LocalKafka, "_choose_ports", choose_once_taken)
    messages: list[str] = []
    local = LocalKafka(tmp_path / "race", progress=messages.append)
    try:
        info = local.start()
        assert len(choices) == 2
        assert info.ports == choices[1]
        assert info.ports.plaintext != taken
        assert any("retrying on other ports" in m for m in messages)
        assert "Address already in use" in (local.dir / "kafka.log.1").read_text()
    finally:
        local.stop()
        thief.close()


@pytest.mark.kafka
def test_port_base_in_use_is_refused_before_starting(kafka: KafkaInfo, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        local_kafka,
        ["start", "--dir", str(tmp_path / "k"), "--port-base", str(kafka.ports.plaintext)],
    )
    assert result.exit_code == 1, result.output
    assert f"{kafka.ports.plaintext}" in result.stderr
    assert "in use" in result.stderr
    assert not (tmp_path / "k" / "state.json").exists()


@pytest.mark.kafka
def test_interrupted_download_is_not_taken_for_a_complete_cache(tmp_path: Path) -> None:
    dist = cached_dist(cache_dir=tmp_path)
    # What an interrupted run can leave: a staging directory, and (from an older or
    # hand-made layout) a lib without the completion marker.
    (dist.home / "staging-interrupted").mkdir(parents=True)
    dist.lib_dir.mkdir()
    (dist.lib_dir / "kafka-clients-partial.jar").write_bytes(b"")
    assert not is_complete(dist)

    ensure_kafka(cache_dir=tmp_path)

    assert is_complete(dist)
    assert not (dist.lib_dir / "kafka-clients-partial.jar").exists()
    assert not list(dist.home.glob("staging-*"))
    assert (dist.lib_dir / f"kafka_2.13-{dist.version}.jar").is_file()
    assert dist.tools_log4j_config.is_file()


@pytest.mark.parametrize("missing", ["java", "mvn"])
def test_missing_program_is_named_with_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if missing == "mvn":
        # java present, mvn absent, and an empty cache so the jars must be fetched.
        java = subprocess.run(
            ["sh", "-c", "command -v java"], capture_output=True, text=True, check=True
        ).stdout.strip()
        (bin_dir / "java").symlink_to(os.path.realpath(java))
        monkeypatch.setenv("KAUDIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(bin_dir))
    result = CliRunner().invoke(local_kafka, ["start", "--dir", str(tmp_path / "kafka")])
    assert result.exit_code == 2, result.output
    assert f"`{missing}` was not found" in result.stderr
    assert "apt-get install" in result.stderr
