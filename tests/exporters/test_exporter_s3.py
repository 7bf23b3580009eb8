"""The S3 destination against moto's S3 API server in its own process: gzipped JSON
Lines objects named by stream and sequence range, Object Lock retention, the retention
lifecycle rules on the bucket, batching by interval, and clear errors for a missing
bucket, a bucket without Object Lock, and an endpoint nobody answers."""

from __future__ import annotations

import gzip
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from kaudit_destination_helpers import drain, emit_events, log_events, make_config, one_runner
from kaudit_destination_servers import MotoServer, free_port

from kaudit.config.model import S3Destination
from kaudit.errors import ExporterError
from kaudit.exporters.s3 import S3Exporter


def s3_destination(moto: MotoServer, **extra: Any) -> dict[str, Any]:
    return {
        "type": "s3",
        "bucket": "audit-logs",
        "prefix": "kafka-backup/",
        "batch_interval_secs": 0,
        **moto.access(),
        **extra,
    }


def objects(moto: MotoServer, bucket: str = "audit-logs") -> dict[str, list[dict[str, Any]]]:
    s3 = moto.client("s3")
    out = {}
    for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        out[item["Key"]] = [orjson.loads(line) for line in gzip.decompress(body).splitlines()]
    return out


def test_each_batch_is_one_gzipped_jsonl_object_named_by_stream_and_sequence_range(
    tmp_path: Path, moto: MotoServer
) -> None:
    moto.client("s3").create_bucket(Bucket="audit-logs")
    config = make_config(tmp_path, s3_destination(moto, batch_size=40))
    emit_events(config, ["topic.created"] * 100)
    runner = drain(config)

    found = objects(moto)
    assert len(found) == 3
    host = log_events(config)[0]["context"]["host"]
    ranges = []
    for key, events in sorted(found.items()):
        assert key.startswith(f"kafka-backup/{host}/") and key.endswith(".jsonl.gz")
        low, high, digest = key.rsplit("/", 1)[1].removesuffix(".jsonl.gz").split("-")
        seqs = [e["integrity"]["sequence_number"] for e in events]
        assert (int(low), int(high)) == (seqs[0], seqs[-1])
        assert len(digest) == 16
        ranges.append((int(low), int(high)))
    assert ranges == [(0, 39), (40, 79), (80, 99)]
    # Native objects hold the log's own lines, every event once, in order.
    delivered = [e for _, events in sorted(found.items()) for e in events]
    assert delivered == log_events(config)
    assert runner.metrics.sent == 100 and runner.metrics.failed == 0


def test_a_retried_batch_overwrites_its_object_instead_of_adding_a_copy(
    tmp_path: Path, moto: MotoServer
) -> None:
    moto.client("s3").create_bucket(Bucket="audit-logs")
    config = make_config(tmp_path, s3_destination(moto))
    emit_events(config, ["topic.created"] * 10)
    exporter = S3Exporter(S3Destination.model_validate(s3_destination(moto)), config)
    records = [orjson.dumps(e) for e in log_events(config)]
    exporter.send(records)
    first_key = exporter.last_key
    exporter.send(records)
    assert len(objects(moto)) == 1
    assert exporter.objects_written == 2 and exporter.last_key == first_key


def test_cloudevents_format_objects(tmp_path: Path, moto: MotoServer) -> None:
    moto.client("s3").create_bucket(Bucket="audit-logs")
    config = make_config(tmp_path, s3_destination(moto, format="cloudevents"))
    emit_events(config, ["topic.created", "auth.login"])
    drain(config)
    (events,) = objects(moto).values()
    assert [e["specversion"] for e in events] == ["1.0", "1.0"]
    assert [e["id"] for e in events] == [e["event_id"] for e in log_events(config)]


def test_object_lock_writes_retention_with_mode_and_days_from_the_config(
    tmp_path: Path, moto: MotoServer
) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="compliance-audit-logs", ObjectLockEnabledForBucket=True)
    destination = s3_destination(
        moto, bucket="compliance-audit-logs", object_lock=True, object_lock_mode="GOVERNANCE"
    )
    config = make_config(tmp_path, destination, retention={"min_days": 400})
    emit_events(config, ["topic.created"] * 5)
    before = datetime.now(UTC)
    drain(config)
    (key,) = objects(moto, "compliance-audit-logs")
    head = s3.head_object(Bucket="compliance-audit-logs", Key=key)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    until = head["ObjectLockRetainUntilDate"]
    # Days default to retention.min_days.
    assert before + timedelta(days=399) < until < before + timedelta(days=401)
    # A locked object version cannot be deleted before its date.
    version = s3.list_object_versions(Bucket="compliance-audit-logs")["Versions"][0]
    with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
        s3.delete_object(Bucket="compliance-audit-logs", Key=key, VersionId=version["VersionId"])


def test_object_lock_days_set_explicitly(tmp_path: Path, moto: MotoServer) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True)
    config = make_config(
        tmp_path, s3_destination(moto, bucket="locked", object_lock=True, object_lock_days=7)
    )
    emit_events(config, ["topic.created"])
    drain(config)
    (key,) = objects(moto, "locked")
    head = s3.head_object(Bucket="locked", Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] < datetime.now(UTC) + timedelta(days=7, hours=1)


def test_object_lock_on_a_bucket_without_it_is_a_clear_error_and_nothing_moves(
    tmp_path: Path, moto: MotoServer
) -> None:
    moto.client("s3").create_bucket(Bucket="audit-logs")
    config = make_config(tmp_path, s3_destination(moto, object_lock=True))
    exporter = S3Exporter(
        S3Destination.model_validate(s3_destination(moto, object_lock=True)), config
    )
    emit_events(config, ["topic.created"])
    with pytest.raises(ExporterError, match="has no Object Lock") as caught:
        exporter.send([orjson.dumps(e) for e in log_events(config)])
    assert caught.value.retryable
    assert "s3 destination s3:s3://audit-logs/kafka-backup/" in str(caught.value)
    assert objects(moto) == {}


def test_a_bucket_that_does_not_exist_is_named_and_retried_without_moving_the_cursor(
    tmp_path: Path, moto: MotoServer
) -> None:
    config = make_config(tmp_path, s3_destination(moto, bucket="no-such-bucket"))
    emit_events(config, ["topic.created"] * 3)
    runner = one_runner(config)
    attempts: list[float] = []

    def sleep(seconds: float) -> None:
        attempts.append(seconds)
        if len(attempts) == 3:
            moto.client("s3").create_bucket(Bucket="no-such-bucket")

    runner._sleep = sleep
    assert runner.run_once() == 3
    assert len(attempts) == 3
    assert runner.metrics.retried == 3
    assert runner.metrics.sent == 3
    assert [len(v) for v in objects(moto, "no-such-bucket").values()] == [3]
    runner.close()


def test_missing_bucket_message(tmp_path: Path, moto: MotoServer) -> None:
    config = make_config(tmp_path, s3_destination(moto, bucket="nope-bucket"))
    emit_events(config, ["topic.created"])
    exporter = S3Exporter(
        S3Destination.model_validate(s3_destination(moto, bucket="nope-bucket")), config
    )
    with pytest.raises(ExporterError) as caught:
        exporter.send([orjson.dumps(e) for e in log_events(config)])
    assert caught.value.retryable
    assert "NoSuchBucket: bucket nope-bucket does not exist" in str(caught.value)


def test_an_endpoint_nobody_answers_is_a_retryable_error_naming_it(tmp_path: Path) -> None:
    port = free_port()
    destination = {
        "type": "s3",
        "bucket": "audit-logs",
        "endpoint_url": f"http://127.0.0.1:{port}",
        "access_key_id": "a",
        "secret_access_key": "b",
        "timeout_secs": 1,
    }
    config = make_config(tmp_path, destination)
    emit_events(config, ["topic.created"])
    exporter = S3Exporter(S3Destination.model_validate(destination), config)
    with pytest.raises(ExporterError) as caught:
        exporter.send([orjson.dumps(e) for e in log_events(config)])
    assert caught.value.retryable
    assert "cannot reach the endpoint" in str(caught.value)
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_retention_lifecycle_rules_are_applied_to_the_prefix_keeping_other_rules(
    tmp_path: Path, moto: MotoServer
) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="audit-logs")
    other = {
        "ID": "someone-else",
        "Filter": {"Prefix": "other/"},
        "Status": "Enabled",
        "Expiration": {"Days": 3},
    }
    s3.put_bucket_lifecycle_configuration(
        Bucket="audit-logs", LifecycleConfiguration={"Rules": [other]}
    )
    retention = {
        "min_days": 365,
        "max_days": 2555,
        "lifecycle": [
            {"days": 365, "storage_class": "GLACIER"},
            {"days": 90, "storage_class": "STANDARD_IA"},
        ],
    }
    config = make_config(tmp_path, s3_destination(moto), retention=retention)
    emit_events(config, ["topic.created"])
    drain(config)
    rules = {
        r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket="audit-logs")["Rules"]
    }
    assert set(rules) == {"someone-else", "kaudit:kafka-backup/"}
    ours = rules["kaudit:kafka-backup/"]
    assert ours["Filter"] == {"Prefix": "kafka-backup/"}
    assert ours["Status"] == "Enabled"
    assert [(t["Days"], t["StorageClass"]) for t in ours["Transitions"]] == [
        (90, "STANDARD_IA"),
        (365, "GLACIER"),
    ]
    assert ours["Expiration"] == {"Days": 2555}


def test_a_trickle_of_events_waits_for_batch_interval_secs(
    tmp_path: Path, moto: MotoServer
) -> None:
    moto.client("s3").create_bucket(Bucket="audit-logs")
    config = make_config(tmp_path, s3_destination(moto, batch_interval_secs=1.5))
    runner = one_runner(config)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,))
    thread.start()
    try:
        for n in range(6):
            emit_events(config, ["topic.created"], start=n)
            time.sleep(0.15)
        deadline = time.monotonic() + 10
        while runner.metrics.sent < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join()
        runner.close()
    found = objects(moto)
    # Six events about 0.15 s apart: one or two objects, not six.
    assert 1 <= len(found) <= 2
    assert sorted(e["details"]["i"] for v in found.values() for e in v) == list(range(6))
