"""Merkle checkpoints of the Kafka log on its companion topic, against a real broker:
an untouched log verifies clean across restarts, and a log tampered with through the
broker (a forged record produced into it, records deleted with the admin API, another
key's checkpoints) does not — through `verify_kafka` and `kaudit verify kafka://…`; and
`kaudit prove` of a Kafka log's event or growth, checked by `kaudit verify-proof`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import kaudit
from kaudit.cli import main
from kaudit.config import Config
from kaudit.dev.kafka import KafkaInfo
from kaudit.errors import LogError
from kaudit.integrity.kafka_streams import checkpoint_topic
from kaudit.integrity.keys import KeyFiles, KeyRing, generate
from kaudit.integrity.verify import VerifyReport
from kaudit.integrity.verify.kafka import verify_kafka
from kaudit.reading import kafka_source
from support.kafka import kafka_log, read_messages, security

pytestmark = pytest.mark.kafka

HMAC_ENV = "KAUDIT_TEST_KAFKA_HMAC"
HMAC = "kafka-integrity-hmac-key-0123456789"


@pytest.fixture(autouse=True)
def _hmac_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HMAC_ENV, HMAC)


def _config(data: Path, kafka: KafkaInfo, topic: str, key: Path) -> Config:
    return Config.model_validate(
        {
            "data_dir": str(data),
            "cluster": {"id": "it"},
            "audit": {
                "failure_policy": "fail_closed",
                "log": kafka_log(
                    kafka.sasl_bootstrap_servers, topic, security(kafka.client_config("admin"))
                ),
                "integrity": {
                    "signing": {"enabled": True, "key_env_var": HMAC_ENV},
                    "chain": {"enabled": True},
                    "checkpoints": {"enabled": True, "key_file": str(key), "every_events": 40},
                },
            },
        }
    )


def _revealed(config: Config) -> Any:
    """`config` as JSON data with its secrets (the SASL password) written out, to be
    loaded again from a file (a JSON dump shows them as `**********`)."""
    return orjson.loads(orjson.dumps(config.model_dump(), default=lambda v: v.get_secret_value()))


def _emit(session: kaudit.AuditSession, start: int, count: int) -> None:
    for i in range(start, start + count):
        session.emit(
            "topic.created", actor="User:alice", resource=f"topic:t{i % 5}", details={"i": i}
        )
        if i % 20 == 19:
            session.flush()
    session.flush()


def _url(kafka: KafkaInfo, topic: str) -> str:
    return f"kafka://admin:admin-secret@{kafka.sasl_bootstrap_servers}/{topic}"


def _verify(kafka: KafkaInfo, topic: str, keys: KeyFiles, hmac: bool = False) -> VerifyReport:
    connection, name = kafka_source(_url(kafka, topic))
    reports = verify_kafka(
        connection,
        name,
        verifiers=KeyRing([keys.verifier]),
        hmac_key=HMAC.encode() if hmac else None,
    )
    assert len(reports) == 1, [r.source for r in reports]
    return reports[0]


def _show(report: VerifyReport) -> str:
    return "\n".join(f"{f.kind}: {f.message}" for f in report.findings) or "no findings"


@pytest.fixture
def keys(tmp_path: Path) -> KeyFiles:
    return generate(tmp_path / "keys" / "audit", "kaudit-kafka-test")


@pytest.fixture
def written(kafka: KafkaInfo, unique_topic: str, tmp_path: Path, keys: KeyFiles) -> str:
    """A Kafka log of 200 events by one stream, written in two runs (a restart)."""
    config = _config(tmp_path / "data", kafka, unique_topic, keys.private)
    with kaudit.open(config) as session:
        _emit(session, 0, 120)
    with kaudit.open(config) as session:
        _emit(session, 120, 80)
    return unique_topic


def _records(kafka: KafkaInfo, topic: str) -> list[Any]:
    return read_messages(kafka.client_config(), topic)


def _lines(message: Any) -> list[bytes]:
    """The event lines of one record of the log (a writer puts several in one)."""
    return bytes(message.value()).split(b"\n")


def _genuine(kafka: KafkaInfo, topic: str, seq: int) -> tuple[Any, bytes]:
    """The record holding event `seq`, and that event's line."""
    marker = b'"sequence_number":%d,' % seq
    for message in _records(kafka, topic):
        for line in _lines(message):
            if marker in line:
                return message, line
    raise LookupError(seq)


def test_an_untouched_kafka_log_verifies_clean_across_a_restart(
    kafka: KafkaInfo, written: str, keys: KeyFiles
) -> None:
    report = _verify(kafka, written, keys, hmac=True)
    assert report.ok, _show(report)
    assert report.events == 200 and (report.first_sequence, report.last_sequence) == (0, 199)
    assert report.covered.verified_through == 199
    assert report.checkpoints_checked >= 200 // 40
    notes = [orjson.loads(m.value())["note"] for m in _records(kafka, checkpoint_topic(written))]
    assert notes[-1].splitlines()[0].startswith("kaudit/it/")  # origin: <origin>/<stream>
    assert "closed" in notes[-1]


def test_the_cli_verifies_a_kafka_topic_with_the_public_key(
    kafka: KafkaInfo, written: str, keys: KeyFiles
) -> None:
    url = _url(kafka, written)
    result = CliRunner().invoke(main, ["verify", url, "--public-key", str(keys.public), "--json"])
    assert result.exit_code == 0, result.output
    body = orjson.loads(result.output)
    assert body["ok"] is True and [s["events"] for s in body["streams"]] == [200]


def test_a_forged_record_produced_into_the_log_is_caught(
    kafka: KafkaInfo, written: str, keys: KeyFiles
) -> None:
    genuine, line = _genuine(kafka, written, 77)
    forged = line.replace(b"User:alice", b"User:mallory")
    producer = Producer(kafka.client_config())
    # Same stream header, same sequence number: a replacement for event 77.
    producer.produce(
        written, forged, genuine.key(), partition=genuine.partition(), headers=genuine.headers()
    )
    producer.flush(10)
    report = _verify(kafka, written, keys)
    assert not report.ok
    assert {str(f.kind) for f in report.findings} & {"inserted", "modified"}, _show(report)
    assert any(
        f.sequence_from is not None and f.sequence_from <= 77 <= (f.sequence_to or 77)
        for f in report.findings
    ), _show(report)
    result = CliRunner().invoke(
        main, ["verify", _url(kafka, written), "--public-key", str(keys.public)]
    )
    assert result.exit_code == 1 and "TAMPERED" in result.output


def test_records_deleted_with_the_admin_api_are_missing(
    kafka: KafkaInfo, written: str, keys: KeyFiles
) -> None:
    records = _records(kafka, written)
    partition = max(
        {m.partition() for m in records}, key=lambda p: sum(m.partition() == p for m in records)
    )
    admin = AdminClient(kafka.client_config())
    cut = TopicPartition(written, partition, 10)  # delete the partition's first 10 records
    future = admin.delete_records([cut])[cut]
    future.result(20)
    deleted = {
        orjson.loads(line)["integrity"]["sequence_number"]
        for m in records
        if m.partition() == partition and m.offset() < 10
        for line in _lines(m)
    }
    report = _verify(kafka, written, keys)
    assert not report.ok
    missing = report.by_kind("missing")
    assert missing, _show(report)
    assert any(
        f.sequence_from is not None and f.sequence_from <= min(deleted) <= (f.sequence_to or 0)
        for f in report.findings
    ), (sorted(deleted), _show(report))


def test_a_kafka_log_checked_with_another_key_is_unknown_key(
    kafka: KafkaInfo, written: str, tmp_path: Path
) -> None:
    other = generate(tmp_path / "other", "kaudit-kafka-test")
    report = _verify(kafka, written, other)
    assert not report.ok
    assert "unknown_key" in {str(f.kind) for f in report.findings}, _show(report)


def test_a_damaged_tree_file_is_rebuilt_from_the_topic(
    kafka: KafkaInfo, written: str, keys: KeyFiles, tmp_path: Path
) -> None:
    tree_file = tmp_path / "data" / "kafka-log" / f"{written}.tree.json"
    state = orjson.loads(tree_file.read_bytes())
    assert state["size"] == 200 and state["frontier"]
    state["frontier"][0] = "00" * 32  # no longer folds to the root its note signs
    tree_file.write_bytes(orjson.dumps(state))
    with kaudit.open(_config(tmp_path / "data", kafka, written, keys.private)) as session:
        _emit(session, 200, 30)
    report = _verify(kafka, written, keys, hmac=True)
    # Built on the damaged frontier, the new checkpoints' roots would not match the topic.
    assert report.ok, _show(report)
    assert report.events == 230 and report.covered.verified_through == 229


def test_an_anchor_file_with_the_kafka_log_is_refused_with_where_checkpoints_go(
    kafka: KafkaInfo, unique_topic: str, tmp_path: Path, keys: KeyFiles
) -> None:
    settings = _revealed(_config(tmp_path / "data", kafka, unique_topic, keys.private))
    settings["audit"]["integrity"]["checkpoints"]["anchor_path"] = str(tmp_path / "anchor")
    with pytest.raises(LogError, match="companion topic"):
        kaudit.open(Config.model_validate(settings))


def test_each_writer_stream_is_verified_and_a_record_without_a_stream_is_caught(
    kafka: KafkaInfo, unique_topic: str, tmp_path: Path, keys: KeyFiles
) -> None:
    for writer in ("a", "b"):
        with kaudit.open(_config(tmp_path / writer, kafka, unique_topic, keys.private)) as session:
            _emit(session, 0, 60)
    connection, name = kafka_source(_url(kafka, unique_topic))
    reports = verify_kafka(connection, name, verifiers=KeyRing([keys.verifier]))
    assert [(r.ok, r.events) for r in reports] == [(True, 60), (True, 60)], [
        _show(r) for r in reports
    ]
    genuine = _records(kafka, unique_topic)[0]
    producer = Producer(kafka.client_config())
    producer.produce(unique_topic, _lines(genuine)[0].replace(b"User:alice", b"User:eve"))
    producer.flush(10)  # no stream header: forged by hand
    reports = verify_kafka(connection, name, verifiers=KeyRing([keys.verifier]))
    assert [r.ok for r in reports].count(True) == 2
    stray = [r for r in reports if not r.ok]
    assert len(stray) == 1 and stray[0].source.endswith("(no stream header)"), [
        _show(r) for r in reports
    ]


# ------------------------------------------------------------------------------- proofs


def _event_id(kafka: KafkaInfo, topic: str, seq: int) -> str:
    return str(orjson.loads(_genuine(kafka, topic, seq)[1])["event_id"])


def _prove(args: list[str], out: Path) -> Any:
    return CliRunner().invoke(main, ["prove", *args, "--out", str(out)])


def _check_proof(proof: Path, pub: Path) -> Any:
    return CliRunner().invoke(main, ["verify-proof", str(proof), "--public-key", str(pub)])


def test_an_event_of_a_kafka_log_is_proved_in_its_stream_and_checked_with_the_public_key(
    kafka: KafkaInfo, written: str, keys: KeyFiles, tmp_path: Path
) -> None:
    event_id = _event_id(kafka, written, 123)
    proof = tmp_path / "inclusion.json"
    made = _prove([event_id, "--log", _url(kafka, written)], proof)
    assert made.exit_code == 0, made.output
    body = orjson.loads(proof.read_bytes())
    assert (body["index"], body["tree_size"]) == (123, 200)
    assert orjson.loads(body["event"])["event_id"] == event_id
    checked = _check_proof(proof, keys.public)
    assert checked.exit_code == 0, checked.output
    assert f"event {event_id} is included at index 123 in kaudit/it/" in checked.output
    # A changed event no longer fits the proof; another key does not trust its checkpoint.
    body["event"] = body["event"].replace("User:alice", "User:mallory")
    proof.write_bytes(orjson.dumps(body))
    assert _check_proof(proof, keys.public).exit_code == 1
    other = generate(tmp_path / "other", "kaudit-kafka-test")
    made = _prove([event_id, "--log", _url(kafka, written)], proof)
    assert _check_proof(proof, other.public).exit_code == 1


def test_a_kafka_stream_grew_without_rewriting_a_consistency_proof_from_the_config(
    kafka: KafkaInfo, written: str, keys: KeyFiles, tmp_path: Path
) -> None:
    # The configured Kafka log is the default: no --log.
    settings = _revealed(_config(tmp_path / "data", kafka, written, keys.private))
    config_file = tmp_path / "kaudit.yaml"
    config_file.write_bytes(orjson.dumps(settings))
    proof = tmp_path / "consistency.json"
    made = _prove(["--consistency-from", "40", "-c", str(config_file)], proof)
    assert made.exit_code == 0, made.output
    checked = _check_proof(proof, keys.public)
    assert checked.exit_code == 0, checked.output
    assert "grew from 40 to 200 events" in checked.output
    missing = _prove(["--consistency-from", "41", "-c", str(config_file)], proof)
    assert missing.exit_code == 1 and "no checkpoint of size 41" in missing.output


def test_no_proof_is_made_from_a_tampered_kafka_stream(
    kafka: KafkaInfo, written: str, keys: KeyFiles, tmp_path: Path
) -> None:
    genuine, line = _genuine(kafka, written, 77)
    producer = Producer(kafka.client_config())
    producer.produce(
        written,
        line.replace(b"User:alice", b"User:mallory"),
        genuine.key(),
        partition=genuine.partition(),
        headers=genuine.headers(),
    )
    producer.flush(10)
    made = _prove([_event_id(kafka, written, 150), "--log", _url(kafka, written)], tmp_path / "p")
    assert made.exit_code == 1
    assert "two different events 77" in made.output and "kaudit verify" in made.output


def test_a_consistency_proof_of_a_topic_with_two_streams_names_the_stream(
    kafka: KafkaInfo, unique_topic: str, tmp_path: Path, keys: KeyFiles
) -> None:
    for writer in ("a", "b"):
        with kaudit.open(_config(tmp_path / writer, kafka, unique_topic, keys.private)) as session:
            _emit(session, 0, 60)
    streams = sorted(
        {orjson.loads(m.value())["stream"] for m in _records(kafka, checkpoint_topic(unique_topic))}
    )
    assert len(streams) == 2
    url = _url(kafka, unique_topic)
    proof = tmp_path / "consistency.json"
    unsaid = _prove(["--consistency-from", "40", "--log", url], proof)
    assert unsaid.exit_code == 1 and "checkpoints of 2 streams" in unsaid.output
    made = _prove(["--consistency-from", "40", "--log", url, "--stream", streams[1]], proof)
    assert made.exit_code == 0, made.output
    checked = _check_proof(proof, keys.public)
    assert checked.exit_code == 0 and f"/{streams[1]} grew from 40 to 60" in checked.output
