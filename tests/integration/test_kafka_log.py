"""The audit log on a Kafka topic, against a real broker with SASL and ACLs."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource

import kaudit
from kaudit.config import Config
from kaudit.dev.kafka import KafkaInfo, LocalKafka
from kaudit.errors import AuditUnavailableError, LogError
from kaudit.log.kafka import KafkaLogReader, KafkaLogSink
from kaudit.reading import iter_lines
from kaudit.recorder.core import Recorder, RecorderSettings
from support.kafka import (
    KafkaTool,
    create_topic,
    grant,
    grant_topic,
    kafka_log,
    read_messages,
    wait_for,
)

pytestmark = pytest.mark.kafka


def _log_config(
    data_dir: Path,
    servers: str,
    topic: str,
    user: str | None = "admin",
    policy: str = "fail_open",
    **log: Any,
) -> Config:
    security: dict[str, Any] = {"security_protocol": "PLAINTEXT"}
    if user is not None:
        security = {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": user,
            "sasl_password": f"{user}-secret",
        }
    return Config.model_validate(
        {
            "data_dir": str(data_dir),
            "cluster": {"id": "it"},
            "audit": {
                "failure_policy": policy,
                "block_timeout_ms": 3000,
                "log": kafka_log(servers, topic, security, **log),
            },
        }
    )


def _read_all(servers: str, topic: str) -> list[dict[str, Any]]:
    settings = {"bootstrap.servers": servers, "auto.offset.reset": "earliest"}
    out = []
    for msg in read_messages(settings, topic):
        for line in msg.value().split(b"\n"):  # a record holds several events, a line each
            event = orjson.loads(line)
            event["_partition"] = msg.partition()
            event["_headers"] = dict(msg.headers() or [])
            out.append(event)
    return out


def test_events_written_over_scram_are_read_back_partitioned_by_resource(
    kafka: KafkaInfo, unique_topic: str, tmp_path: Path
) -> None:
    """Events go to the topic with acks=all, one resource's events in one partition, in
    the order they were emitted."""
    config = _log_config(tmp_path, kafka.sasl_bootstrap_servers, unique_topic)
    with kaudit.open(config) as session:
        for i in range(300):
            session.emit(
                "topic.created",
                actor="User:alice",
                resource=f"topic:t{i % 7}",
                details={"n": i},
                correlation_id=f"c{i}",
            )
        session.flush()
    events = _read_all(kafka.bootstrap_servers, unique_topic)
    assert sorted(e["details"]["n"] for e in events) == list(range(300))
    assert sorted(e["integrity"]["sequence_number"] for e in events) == list(range(300))
    partitions_of: dict[str, set[int]] = {}
    for e in events:
        partitions_of.setdefault(e["resource"]["id"], set()).add(e["_partition"])
        assert e["_headers"]["kaudit_stream"]
    assert all(len(p) == 1 for p in partitions_of.values())
    # Per resource, events are in the order they were emitted.
    by_resource: dict[str, list[int]] = {}
    for e in sorted(events, key=lambda e: (e["_partition"], e["integrity"]["sequence_number"])):
        by_resource.setdefault(e["resource"]["id"], []).append(e["details"]["n"])
    assert all(ns == sorted(ns) for ns in by_resource.values())


def test_topic_is_created_with_partitions_and_retention(
    kafka: KafkaInfo, unique_topic: str, tmp_path: Path
) -> None:
    config = _log_config(
        tmp_path, kafka.sasl_bootstrap_servers, unique_topic, retention_ms=3 * 24 * 3600 * 1000
    )
    with kaudit.open(config) as session:
        session.emit("auth.login", actor="User:bob", resource="cluster:c", durable=True)
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    meta = admin.list_topics(unique_topic, timeout=10)
    assert len(meta.topics[unique_topic].partitions) == 3
    resource = ConfigResource("TOPIC", unique_topic)
    configs = admin.describe_configs([resource])[resource].result(10)
    assert configs["retention.ms"].value == str(3 * 24 * 3600 * 1000)


def test_default_retention_is_seven_days(tmp_path: Path) -> None:
    config = _log_config(tmp_path, "127.0.0.1:9", "t")
    assert config.audit.log.retention_ms == 7 * 24 * 3600 * 1000  # type: ignore[union-attr]


def test_kaudit_tail_reads_the_kafka_log_with_duplicates_removed(
    kafka: KafkaInfo, kafka_tool: KafkaTool, unique_topic: str, tmp_path: Path
) -> None:
    config = _log_config(tmp_path, kafka.sasl_bootstrap_servers, unique_topic)
    with kaudit.open(config) as session:
        for i in range(50):
            session.emit("acl.created", actor="User:admin", resource=f"acl:TOPIC:t{i}")
        session.flush()
    # Produce a duplicate of one record, as an at-least-once retry would.
    first = _read_all(kafka.bootstrap_servers, unique_topic)[0]
    del first["_partition"], first["_headers"]
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    producer.produce(unique_topic, orjson.dumps(first))
    producer.flush(10)
    url = f"kafka://alice:alice-secret@{kafka.sasl_bootstrap_servers}/{unique_topic}"
    # alice may read the log once granted READ on it and on her groups.
    grant(kafka_tool, "User:alice", "--operation", "Read", "--operation", "Describe",
          "--topic", unique_topic, "--group", "*")  # fmt: skip
    lines = list(iter_lines(url))
    ids = [orjson.loads(line)["event_id"] for line in lines]
    assert len(ids) == 50 and len(set(ids)) == 50


def test_write_denied_by_acls_is_a_clear_error_under_fail_closed(
    kafka: KafkaInfo, kafka_tool: KafkaTool, unique_topic: str, tmp_path: Path
) -> None:
    """bob may describe the topic but not write it: emit waits, then says why."""
    create_topic(kafka.client_config(), unique_topic)
    grant_topic(kafka_tool, "bob", unique_topic, "Describe")
    config = _log_config(
        tmp_path,
        kafka.sasl_bootstrap_servers,
        unique_topic,
        user="bob",
        policy="fail_closed",
        write_timeout_ms=3000,
    )
    session = kaudit.open(config)
    try:
        session.emit("topic.deleted", actor="User:bob", resource="topic:x")
        with pytest.raises(AuditUnavailableError) as failure:
            for _ in range(3):
                session.emit("topic.deleted", actor="User:bob", resource="topic:x", durable=True)
        message = str(failure.value)
        assert "AUTHORIZATION_FAILED" in message and "grant WRITE" in message
        assert unique_topic in message and kafka.sasl_bootstrap_servers in message
        assert not session.recorder.healthy
    finally:
        with pytest.raises(AuditUnavailableError):
            session.recorder.close(timeout=1)
    assert _read_all(kafka.bootstrap_servers, unique_topic) == []


def test_write_denied_under_fail_open_counts_drops(
    kafka: KafkaInfo, kafka_tool: KafkaTool, unique_topic: str, tmp_path: Path
) -> None:
    create_topic(kafka.client_config(), unique_topic)
    grant_topic(kafka_tool, "bob", unique_topic, "Describe")
    config = _log_config(
        tmp_path, kafka.sasl_bootstrap_servers, unique_topic, user="bob", write_timeout_ms=2000
    )
    config = config.model_copy(
        update={"audit": config.audit.model_copy(update={"queue_max_events": 10})}
    )
    session = kaudit.open(config)
    started = time.monotonic()
    for _ in range(200):
        session.emit("topic.deleted", actor="User:bob", resource="topic:x")
    # fail_open never makes the caller wait (a write attempt lasts 2 s + grace here).
    assert time.monotonic() - started < 1.0
    deadline = time.monotonic() + 20
    while session.recorder.metrics()["kaudit_events_dropped_total"] < 150 or "WRITE" not in (
        session.recorder.last_error or ""
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # Without WRITE on any topic the broker refuses even the idempotent producer id;
    # either way the error says what is missing.
    assert "WRITE" in (session.recorder.last_error or "")
    with pytest.raises(AuditUnavailableError):
        session.recorder.close(timeout=1)


def test_missing_topic_without_create_rights_names_the_broker_and_cause(
    kafka: KafkaInfo, unique_topic: str, tmp_path: Path
) -> None:
    config = _log_config(tmp_path, kafka.sasl_bootstrap_servers, unique_topic, user="bob")
    with pytest.raises(LogError) as failure:
        kaudit.open(config)
    message = str(failure.value)
    assert unique_topic in message and kafka.sasl_bootstrap_servers in message
    assert "not authorized" in message or "AUTHORIZATION" in message


def test_wrong_password_is_a_clear_error(kafka: KafkaInfo, tmp_path: Path) -> None:
    config = _log_config(tmp_path, kafka.sasl_bootstrap_servers, "t")
    security = config.audit.log.security.model_copy(  # type: ignore[union-attr]
        update={"sasl_password": "wrong"}
    )
    log = config.audit.log.model_copy(update={"security": security})
    config = config.model_copy(update={"audit": config.audit.model_copy(update={"log": log})})
    started = time.monotonic()
    with pytest.raises(LogError, match=r"(?i)authentication"):
        kaudit.open(config)
    assert time.monotonic() - started < 10


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of this test's own, since the test stops and restarts it."""
    broker = LocalKafka(tmp_path_factory.mktemp("restart-kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_broker_restart_mid_stream_loses_nothing(own_broker: LocalKafka, tmp_path: Path) -> None:
    """At-least-once: every emitted event is in the topic after the broker comes back;
    reading with duplicates removed by event_id gives each sequence number once."""
    info = own_broker.status()
    assert info is not None
    config = _log_config(
        tmp_path,
        info.bootstrap_servers,
        "__oprtr_audit_log",
        user=None,
        policy="fail_closed",
        write_timeout_ms=60_000,
    )
    config = config.model_copy(
        update={"audit": config.audit.model_copy(update={"block_timeout_ms": 120_000})}
    )
    emitted = 0
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer(session: kaudit.AuditSession) -> None:
        nonlocal emitted
        try:
            while not stop.is_set():
                session.emit(
                    "records.produced",
                    actor="User:svc",
                    resource="topic:orders",
                    correlation_id=f"c{emitted}",
                )
                emitted += 1
                if emitted % 200 == 0:
                    time.sleep(0.01)
        except BaseException as exc:
            failures.append(exc)

    with kaudit.open(config) as session:
        thread = threading.Thread(target=writer, args=(session,))
        thread.start()
        time.sleep(1.0)
        own_broker.stop()
        time.sleep(2.0)
        own_broker.start()
        time.sleep(2.0)
        stop.set()
        thread.join()
        session.flush(timeout=120)
    assert not failures
    reader = KafkaLogReader(config.audit.log, group=None)  # type: ignore[arg-type]
    try:
        lines = list(reader.lines())
    finally:
        reader.close()
    events = [orjson.loads(line) for line in lines]
    correlations = {e["context"]["correlation_id"] for e in events}
    assert correlations == {f"c{i}" for i in range(emitted)}
    sequences = sorted(e["integrity"]["sequence_number"] for e in events)
    assert sequences == list(range(emitted))


def test_writer_continues_its_sequence_after_restart(
    kafka: KafkaInfo, unique_topic: str, tmp_path: Path
) -> None:
    config = _log_config(tmp_path, kafka.sasl_bootstrap_servers, unique_topic)
    for _ in range(2):
        with kaudit.open(config) as session:
            for i in range(20):
                session.emit("auth.login", actor=f"User:u{i}", resource="cluster:c")
    state = orjson.loads((tmp_path / "kafka-log" / f"{unique_topic}.json").read_bytes())
    assert state["next_sequence"] == 40
    sink = KafkaLogSink(config.audit.log, tmp_path / "kafka-log")  # type: ignore[arg-type]
    try:
        assert sink.next_sequence == 40
    finally:
        sink.close()
    events = _read_all(kafka.bootstrap_servers, unique_topic)
    assert sorted(e["integrity"]["sequence_number"] for e in events) == list(range(40))
    assert len({e["_headers"]["kaudit_stream"] for e in events}) == 1


def test_writing_resumes_once_the_acl_is_granted(
    kafka: KafkaInfo, kafka_tool: KafkaTool, unique_topic: str, tmp_path: Path
) -> None:
    """A denied writer keeps its events; granting WRITE lets them through, with the drops
    of the meantime reported as audit.degraded."""
    create_topic(kafka.client_config(), unique_topic)
    grant_topic(kafka_tool, "bob", unique_topic, "Describe")
    config = _log_config(
        tmp_path, kafka.sasl_bootstrap_servers, unique_topic, user="bob", write_timeout_ms=2000
    )
    config = config.model_copy(
        update={"audit": config.audit.model_copy(update={"queue_max_events": 5})}
    )
    with kaudit.open(config) as session:
        for i in range(20):
            session.emit("topic.deleted", actor="User:bob", resource=f"topic:t{i}")
        deadline = time.monotonic() + 15
        while session.recorder.last_error is None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        dropped = session.recorder.metrics()["kaudit_events_dropped_total"]
        assert dropped > 0
        grant_topic(kafka_tool, "bob", unique_topic, "Write")
        session.emit("topic.created", actor="User:bob", resource="topic:after", durable=True)
        assert session.recorder.healthy
    # At least once: a retried record may be there twice; readers keep one per event_id.
    unique = {e["event_id"]: e for e in _read_all(kafka.bootstrap_servers, unique_topic)}
    events = list(unique.values())
    assert sorted(e["integrity"]["sequence_number"] for e in events) == list(range(len(events)))
    types = [e["event_type"] for e in events]
    assert "topic.created" in types
    degraded = [e for e in events if e["event_type"] == "audit.degraded"]
    assert degraded and degraded[0]["details"]["dropped_events"] == dropped
    assert types.count("topic.deleted") == 20 - dropped


def test_a_batch_given_up_at_close_is_not_taken_for_the_next_one(
    own_broker: LocalKafka, tmp_path: Path
) -> None:
    """Close gives up a batch whose record a paused broker holds; the broker then answers
    while close still writes. The next batch is written whole, under sequence numbers
    the given-up one never had (its record may be in the topic), and the given-up event is
    counted lost and reported in audit.degraded, never counted written."""
    info = own_broker.status()
    assert info is not None and info.pid is not None
    topic = "__oprtr_audit_log"
    config = _log_config(tmp_path, info.bootstrap_servers, topic, user=None, write_timeout_ms=1000)
    sink = KafkaLogSink(config.audit.log, tmp_path / "kafka-log")  # type: ignore[arg-type]
    recorder = Recorder(sink, RecorderSettings(failure_policy="fail_open"))

    def emit(resource: str, *, durable: bool = False) -> None:
        recorder.emit("topic.deleted", actor="User:u", resource=resource, durable=durable)

    def taken() -> int:
        metrics = recorder.metrics()  # received: taken by the writer, or still queued
        return int(metrics["kaudit_events_received_total"]) - int(metrics["kaudit_queue_depth"])

    def dropped() -> int:
        return int(recorder.metrics()["kaudit_events_dropped_total"])

    emit("topic:before", durable=True)  # the producer has its id: records go in flight
    failures: list[BaseException] = []

    def close() -> None:
        try:
            recorder.close(timeout=0.1)
        except BaseException as exc:
            failures.append(exc)

    os.kill(info.pid, signal.SIGSTOP)
    try:
        emit("topic:given-up")
        wait_for(lambda: taken() == 2, "the writer sending the event")
        emit("topic:after-1")
        emit("topic:after-2")
        closing = threading.Thread(target=close)
        closing.start()
        wait_for(lambda: dropped() == 1, "the batch given up")
    finally:
        os.kill(info.pid, signal.SIGCONT)
    closing.join(60)
    assert not closing.is_alive()
    [failure] = failures
    assert isinstance(failure, AuditUnavailableError) and "1 audit events" in str(failure)
    events = _read_all(info.bootstrap_servers, topic)
    resources = [e["resource"]["id"] for e in events if e["event_type"] == "topic.deleted"]
    assert {"before", "after-1", "after-2"} <= set(resources)
    by_sequence: dict[int, set[str]] = {}
    for e in events:
        by_sequence.setdefault(e["integrity"]["sequence_number"], set()).add(e["event_id"])
    assert all(len(ids) == 1 for ids in by_sequence.values()), "a number names two events"
    [degraded] = [e for e in events if e["event_type"] == "audit.degraded"]
    assert degraded["details"]["dropped_events"] == 1
    metrics = recorder.metrics()
    assert metrics["kaudit_events_written_total"] == 4  # before, after-1, after-2, degraded
    assert metrics["kaudit_events_dropped_total"] == 1


def test_a_batch_given_up_in_part_counts_each_event_once(
    kafka: KafkaInfo, unique_topic: str, tmp_path: Path
) -> None:
    """The topic takes records of up to 20 kB: a batch holding a larger event (random:
    compression leaves it as large) fails in the partition of that event only. Given up
    at close, its events the broker took are counted written, the others lost, and the
    batch after it is written whole."""
    create_topic(kafka.client_config(), unique_topic, 3, {"max.message.bytes": "20000"})
    config = _log_config(tmp_path, kafka.sasl_bootstrap_servers, unique_topic)
    sink = KafkaLogSink(config.audit.log, tmp_path / "kafka-log")  # type: ignore[arg-type]
    recorder = Recorder(sink, RecorderSettings(failure_policy="fail_open", batch_max_events=7))

    def emit(name: str, size: int = 0) -> None:
        recorder.emit("topic.deleted", actor="User:u", resource=f"topic:{name}",
                      details={"pad": os.urandom(size).hex()})  # fmt: skip

    emit("big-0", 50_000)  # a batch of its own, retried until close gives it up
    wait_for(lambda: recorder.metrics()["kaudit_log_write_errors_total"] >= 1, "a failed write")
    for i in range(6):
        emit(f"given-up-{i}")
    emit("big-1", 50_000)  # with the six before: one batch, partly taken, given up
    after = [f"after-{i}" for i in range(6)]
    for name in after:
        emit(name)
    with pytest.raises(AuditUnavailableError):
        recorder.close(timeout=0)
    events = _read_all(kafka.bootstrap_servers, unique_topic)
    written = [e["resource"]["id"] for e in events if e["event_type"] == "topic.deleted"]
    assert set(after) <= set(written)
    assert "big-0" not in written and "big-1" not in written
    assert any(name.startswith("given-up-") for name in written)  # taken, though given up
    by_sequence: dict[int, set[str]] = {}
    for e in events:
        by_sequence.setdefault(e["integrity"]["sequence_number"], set()).add(e["event_id"])
    assert all(len(ids) == 1 for ids in by_sequence.values()), "a number names two events"
    metrics = recorder.metrics()
    assert metrics["kaudit_events_written_total"] == len(events)
    assert metrics["kaudit_events_dropped_total"] == 14 - len(written)
    [degraded] = [e for e in events if e["event_type"] == "audit.degraded"]
    assert degraded["details"]["dropped_events"] == 14 - len(written)
