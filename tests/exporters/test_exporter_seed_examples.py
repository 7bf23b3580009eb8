"""The OSO seed's destination examples run as written (tests/fixtures/seed): the S3 and
CloudWatch ones against moto's server, reached through the standard AWS_ENDPOINT_URL
variable so the YAML stays untouched; the syslog and webhook ones against local servers,
with only the host the example names (syslog.company.com, siem.company.com) swapped
for the local server's address; the ConfigMap's audit.yaml with its event selection."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from kaudit_destination_helpers import emit_events, log_events
from kaudit_destination_servers import HttpReceiver, MotoServer, Rsyslog

from kaudit.config import Config, load_config, load_config_text
from kaudit.exporters import drain_all, runners_for
from kaudit.exporters.file import FileExporter
from kaudit.exporters.kafka import KafkaExporter
from kaudit.exporters.s3 import S3Exporter

SEED = Path(__file__).parents[1] / "fixtures" / "seed"


@pytest.fixture
def aws_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoServer:
    """The seed's examples set no endpoint or keys: the environment gives them, and the
    default data_dir (./kaudit-data) lands in the test's directory."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.chdir(tmp_path)
    return moto


def s3_events(moto: MotoServer, bucket: str, region: str = "us-east-1") -> list[dict[str, Any]]:
    s3 = moto.client("s3", region=region)
    out = []
    for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        out += [orjson.loads(line) for line in gzip.decompress(body).splitlines()]
    return out


def test_s3_example_runs_as_written(aws_env: MotoServer) -> None:
    aws_env.client("s3").create_bucket(Bucket="audit-logs")
    config = load_config(SEED / "s3_destination.yaml", env={})
    emit_events(config, ["backup.started", "backup.completed", "topic.created"])
    assert drain_all(config) == {"s3:s3://audit-logs/kafka-backup/": 3}
    assert s3_events(aws_env, "audit-logs") == log_events(config)


def test_cloudwatch_example_runs_as_written(aws_env: MotoServer) -> None:
    config = load_config(
        SEED / "cloudwatch_destination.yaml", env={**os.environ, "HOSTNAME": "pod-0"}
    )
    emit_events(config, ["backup.started", "backup.failed"])
    drain_all(config)
    logs = aws_env.client("logs", region="us-west-2")
    got = logs.get_log_events(
        logGroupName="/kafka-backup/audit", logStreamName="pod-0", startFromHead=True
    )["events"]
    assert [orjson.loads(e["message"]) for e in got] == log_events(config)


def test_object_lock_example_runs_with_signed_chained_events(
    aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIT_SIGNING_KEY", "0123456789abcdef0123456789abcdef")
    s3 = aws_env.client("s3")
    s3.create_bucket(Bucket="compliance-audit-logs", ObjectLockEnabledForBucket=True)
    config = load_config(SEED / "object_lock.yaml")
    emit_events(config, ["backup.started", "backup.completed"])
    drain_all(config)
    events = s3_events(aws_env, "compliance-audit-logs")
    assert events == log_events(config)
    assert events[1]["integrity"]["previous_signature"] == events[0]["integrity"]["signature"]
    (item,) = s3.list_objects_v2(Bucket="compliance-audit-logs")["Contents"]
    head = s3.head_object(Bucket="compliance-audit-logs", Key=item["Key"])
    assert head["ObjectLockMode"] == "COMPLIANCE"


def test_configmap_audit_yaml_runs_and_exports_only_its_events(aws_env: MotoServer) -> None:
    aws_env.client("s3").create_bucket(Bucket="audit-logs")
    configmap = yaml.safe_load((SEED / "configmap.yaml").read_text())
    config = load_config_text(configmap["data"]["audit.yaml"], env={})
    emit_events(config, ["backup.started", "topic.created", "access.denied", "restore.failed"])
    drain_all(config)
    assert [e["event_type"] for e in s3_events(aws_env, "audit-logs")] == [
        "backup.started",
        "access.denied",
        "restore.failed",
    ]


def _swap_host(config: Config, old: str, new: str) -> Config:
    destination = config.audit.destination
    assert destination is not None
    # Secrets (the URL among them) written out in full, to be read back in.
    revealed = orjson.dumps(destination.model_dump(), default=lambda v: v.get_secret_value())
    text = revealed.decode().replace(old, new)
    swapped = type(destination).model_validate(orjson.loads(text))
    audit = config.audit.model_copy(update={"destination": swapped})
    return config.model_copy(update={"audit": audit})


def test_syslog_example_runs_against_rsyslog(rsyslog: Rsyslog, tmp_path: Path) -> None:
    config = load_config(SEED / "syslog_destination.yaml", env={})
    config = _swap_host(
        config, "syslog.company.com:514", f"127.0.0.1:{rsyslog.tcp_port}"
    ).model_copy(update={"data_dir": str(tmp_path / "data")})
    emit_events(config, ["backup.started", "backup.completed"])
    drain_all(config)
    deadline = time.monotonic() + 10
    while len(rsyslog.lines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = rsyslog.lines()
    assert [line.event() for line in lines] == log_events(config)
    assert {line.facility for line in lines} == {"local0"}


def test_webhook_example_runs_against_a_local_receiver(
    receiver: HttpReceiver, tmp_path: Path
) -> None:
    config = load_config(SEED / "webhook_destination.yaml", env={"WEBHOOK_TOKEN": "t0k"})
    config = _swap_host(config, "https://siem.company.com/ingest", receiver.url).model_copy(
        update={"data_dir": str(tmp_path / "data")}
    )
    emit_events(config, ["backup.started"] * 3)
    drain_all(config)
    assert receiver.bodies() == [log_events(config)]
    assert receiver.received[0].headers["Authorization"] == "Bearer t0k"


def test_multiple_destinations_example_builds_one_runner_each(tmp_path: Path) -> None:
    config = load_config(SEED / "multiple_destinations.yaml", env={}).model_copy(
        update={"data_dir": str(tmp_path / "data")}
    )
    runners = runners_for(config)
    try:
        kinds = [type(r.exporter) for r in runners]
        assert kinds == [FileExporter, S3Exporter, KafkaExporter]
        cursors = {str(r.feed.position()) for r in runners}
        assert len({r.name for r in runners}) == 3 and cursors == {"None"}
        assert [r.batch_max for r in runners] == [1000, 10_000, 1000]
        assert [r.linger_s for r in runners] == [0.0, 60.0, 0.0]
    finally:
        for r in runners:
            r.close()
