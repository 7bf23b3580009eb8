"""fail_closed means no unaudited change: while the log cannot take records, changes and
produce are refused before the broker sees them (checked on the broker), a change the
broker applied is answered only once its record is durable, and no answered request's
produce/fetch count is lost to a kill -9."""

from __future__ import annotations

import signal
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from gateway_fixtures import GatewayFactory

from kaudit.dev.kafka import KafkaInfo
from kaudit.dev.ports import free_port_block
from kaudit.log.segments import LogReader
from support.kafka import (
    create_topic,
    grant_topic,
    new_scram_user,
    read_messages,
    security,
    wait_for,
)
from support.wire import wait_for_port

pytestmark = pytest.mark.kafka
KAUDIT = str(Path(sys.executable).with_name("kaudit"))


def topic_exists(admin_config: dict[str, str], topic: str) -> bool:
    return topic in AdminClient(admin_config).list_topics(timeout=10).topics


def test_while_the_log_fails_changes_are_refused_unsent_and_an_applied_one_waits_for_its_record(
    gateway_factory: GatewayFactory,
    kafka: KafkaInfo,
    admin_config: dict[str, str],
    admin_sasl_config: dict[str, str],
    kafka_tool: Any,
    unique_topic: str,
) -> None:
    audit_topic = f"{unique_topic}-audit"
    create_topic(admin_config, audit_topic)
    data_topic = f"{unique_topic}-data"
    create_topic(admin_config, data_topic)
    # The log's writer may see its topic but not write it: every write of the log fails
    # until the test grants it Write.
    writer, password = new_scram_user(admin_config, "auditlog")
    grant_topic(kafka_tool, writer, audit_topic, "Describe")
    writer_config = {
        **kafka.client_config("admin"),
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": writer,
        "sasl.password": password,
        "bootstrap.servers": kafka.sasl_bootstrap_servers,
    }
    gw = gateway_factory(
        audit={
            "failure_policy": "fail_closed",
            "block_timeout_ms": 3000,
            # Logins are not recorded here, so clients reach CreateTopics.
            "exclude_events": ["auth.*"],
            "log": {
                "type": "kafka",
                "bootstrap_servers": kafka.sasl_bootstrap_servers,
                "topic": audit_topic,
                "create_topic": False,
                "write_timeout_ms": 2000,
                "security": security(writer_config),
            },
        }
    )
    admin = AdminClient(gw.client(admin_sasl_config))
    # The log is not known to fail yet: this change reaches the broker, which applies
    # it; its record cannot be written, so its answer waits.
    applied = unique_topic + "-applied"
    first: Future[Any] = admin.create_topics([NewTopic(applied, 1, 1)], request_timeout=120)[
        applied
    ]
    wait_for(lambda: topic_exists(admin_config, applied), "topic created by the broker")
    wait_for(lambda: not gw.session.recorder.healthy, "the audit log failing")
    assert not first.done()
    # Now the log is known to fail: a change is refused before it reaches the broker,
    # with CreateTopics' own retriable error (on another connection: on the first one,
    # answers come in order, after the one that waits).
    refused = unique_topic + "-refused"
    other = AdminClient(gw.client(admin_sasl_config))
    outcome = other.create_topics([NewTopic(refused, 1, 1)], request_timeout=30)[refused]
    with pytest.raises(KafkaException) as caught:
        outcome.result(timeout=60)
    error = caught.value.args[0]
    assert error.code() == KafkaError.REQUEST_TIMED_OUT
    assert "audit log cannot take records" in error.str()
    assert not topic_exists(admin_config, refused)
    # Produce too: the producer retries NOT_ENOUGH_REPLICAS until its delivery timeout,
    # and no record reaches the topic.
    producer = Producer(gw.client({**admin_sasl_config, "message.timeout.ms": "5000"}))
    outcomes: list[Any] = []
    producer.produce(data_topic, b"x", on_delivery=lambda e, m: outcomes.append(e))
    producer.flush(30)
    assert len(outcomes) == 1 and outcomes[0] is not None
    assert read_messages(admin_config, data_topic) == []
    assert gw.gateway.metrics.refused >= 2
    # The log comes back: the applied change's record is written and only then answered.
    grant_topic(kafka_tool, writer, audit_topic, "Write")
    assert first.result(timeout=90) is None
    records = [
        orjson.loads(line)
        for m in read_messages(admin_config, audit_topic)
        for line in m.value().split(b"\n")  # a record of the log holds events, a line each
    ]
    created = [r for r in records if r["event_type"] == "topic.created"]
    assert [r["resource"]["id"] for r in created] == [applied]
    assert created[0]["action"]["result"] == "success"
    # And changes go through again.
    again = unique_topic + "-again"
    assert other.create_topics([NewTopic(again, 1, 1)])[again].result(timeout=60) is None
    gw.close()


def gateway_process(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([KAUDIT, "gateway", "-c", str(config)], stderr=subprocess.PIPE)


def log_events(log_dir: Path) -> list[dict[str, Any]]:
    reader = LogReader(log_dir)
    events: list[dict[str, Any]] = []
    position = reader.start()
    while True:
        lines, position = reader.read(position)
        if not lines:
            return events
        events.extend(orjson.loads(line) for line in lines)


def test_a_kill_9_loses_no_count_of_answered_produce_and_fetch_requests(
    kafka: KafkaInfo,
    admin_config: dict[str, str],
    admin_sasl_config: dict[str, str],
    tmp_path: Path,
    unique_topic: str,
) -> None:
    create_topic(admin_config, unique_topic, partitions=2)
    port = free_port_block(4)
    config = tmp_path / "kaudit.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "audit:\n"
        "  failure_policy: fail_closed\n"
        "gateway:\n"
        f"  upstream: {kafka.sasl_bootstrap_servers}\n"
        f"  listen: 127.0.0.1:{port}\n"
        "  records_window_seconds: 3600\n"  # the window never closes before the kill
    )
    client = {**admin_sasl_config, "bootstrap.servers": f"127.0.0.1:{port}"}
    proc = gateway_process(config)
    try:
        wait_for_port(port, proc)
        producer = Producer({**client, "linger.ms": 5})
        delivered: list[Any] = []
        for i in range(300):
            producer.produce(unique_topic, b"r%d" % i, on_delivery=lambda e, m: delivered.append(e))
        assert producer.flush(60) == 0
        assert delivered == [None] * 300
        consumed = read_messages(client, unique_topic)
        assert len(consumed) == 300
    finally:
        proc.kill()  # SIGKILL: no flush, no clean stop
        proc.wait(30)
    journal = list((tmp_path / "data" / "gateway").glob("*.jsonl"))
    assert journal, "the window's counts were not journaled"
    # The next gateway on the same data directory records them, marked recovered.
    proc = gateway_process(config)
    try:
        wait_for_port(port, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    events = log_events(tmp_path / "data" / "log")

    def total(event_type: str) -> int:
        found = [
            e
            for e in events
            if e["event_type"] == event_type and e["resource"]["id"] == unique_topic
        ]
        assert all(e["details"]["recovered"] for e in found)
        return sum(e["details"]["count"] for e in found)

    assert total("records.produced") == 300
    assert total("records.consumed") == 300
    assert not list((tmp_path / "data" / "gateway").glob("*.jsonl"))


def test_large_fetch_responses_pass_through_fail_closed_whole_and_counted(
    gateway_factory: GatewayFactory,
    admin_config: dict[str, str],
    admin_sasl_config: dict[str, str],
    unique_topic: str,
) -> None:
    # 32 MiB in one partition, fetched in responses of up to 32 MiB: cut through as they
    # arrive, each one's last byte held until its counts are journaled.
    create_topic(admin_config, unique_topic)
    values = [bytes([i % 251]) * 32 * 1024 for i in range(1024)]
    producer = Producer({**admin_config, "linger.ms": 20, "batch.size": 1_000_000})
    for value in values:
        producer.produce(unique_topic, value)
    assert producer.flush(120) == 0
    gw = gateway_factory(audit={"failure_policy": "fail_closed"})
    client = gw.client(
        {**admin_sasl_config, "fetch.max.bytes": 33554432, "max.partition.fetch.bytes": 33554432}
    )
    consumed = read_messages(client, unique_topic)
    assert [m.value() for m in consumed] == values
    counted = [e for e in gw.events("records.consumed") if e["resource"]["id"] == unique_topic]
    assert sum(e["details"]["count"] for e in counted) == len(values)
