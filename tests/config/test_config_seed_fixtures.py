"""The OSO seed's YAML examples load as written and mean what the seed says."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kaudit.config import Config, FileDestination, Rotation, load_config, load_config_text
from kaudit.config.model import (
    CloudWatchDestination,
    KafkaDestination,
    S3Destination,
    SyslogDestination,
    WebhookDestination,
)
from kaudit.config.secrets import reveal

SEED = Path(__file__).parents[1] / "fixtures" / "seed"


def test_basic_audit_configuration_selects_file_destination_and_eight_events() -> None:
    config = load_config(SEED / "basic.yaml", env={})

    assert config.audit.enabled is True
    assert config.audit.destination == FileDestination(path="/var/log/kafka-backup/audit.log")
    assert config.audit.destinations == []
    assert config.audit.events == [
        "backup.started",
        "backup.completed",
        "backup.failed",
        "restore.started",
        "restore.completed",
        "restore.failed",
        "access.denied",
        "config.changed",
    ]
    assert config.audit.exclude_events == []


def test_file_destination_keeps_its_rotation_settings() -> None:
    config = load_config(SEED / "file_destination.yaml", env={})

    destination = config.audit.destination
    assert isinstance(destination, FileDestination)
    assert destination.path == "/var/log/kafka-backup/audit.log"
    assert destination.rotation == Rotation(max_size_mb=100, max_files=10, compress=True)
    assert destination.format == "native"
    assert destination.display_name == "file:/var/log/kafka-backup/audit.log"
    assert config.audit.all_destinations == [destination]
    # What the seed leaves out stays at the documented defaults.
    assert config.audit.events == ["*"]
    assert config.audit.failure_policy == "fail_open"


def test_event_configuration_keeps_checkpoint_in_events_and_in_exclusions() -> None:
    config = load_config(SEED / "event_selection.yaml", env={})

    assert config.audit.events == [
        "backup.started",
        "backup.completed",
        "backup.failed",
        "backup.checkpoint",
        "restore.started",
        "restore.completed",
        "restore.failed",
        "access.denied",
        "auth.login",
        "auth.logout",
        "auth.failed",
        "config.changed",
    ]
    assert config.audit.exclude_events == ["backup.checkpoint"]
    assert config.audit.destination is None
    assert config.audit.all_destinations == []


SEED_ENV = {
    "HOSTNAME": "kafka-backup-0",
    "AUDIT_KAFKA_PASSWORD": "pw",
    "WEBHOOK_TOKEN": "tok",
}


@pytest.mark.parametrize(
    "name",
    [
        "basic.yaml",
        "file_destination.yaml",
        "event_selection.yaml",
        "s3_destination.yaml",
        "cloudwatch_destination.yaml",
        "kafka_destination.yaml",
        "syslog_destination.yaml",
        "webhook_destination.yaml",
        "multiple_destinations.yaml",
        "object_lock.yaml",
    ],
)
def test_seed_enterprise_block_means_the_same_as_top_level_audit(name: str) -> None:
    text = (SEED / name).read_text()
    # Dropping the `enterprise:` line and one indentation level gives the plain form.
    plain = "\n".join(line[2:] for line in text.splitlines()[1:])
    assert load_config_text(text, env=SEED_ENV) == load_config_text(plain, env=SEED_ENV)
    assert isinstance(load_config_text(plain, env=SEED_ENV), Config)


def test_s3_destination_keeps_bucket_prefix_region_and_interval() -> None:
    destination = load_config(SEED / "s3_destination.yaml", env={}).audit.destination
    assert isinstance(destination, S3Destination)
    assert (destination.bucket, destination.prefix, destination.region) == (
        "audit-logs",
        "kafka-backup/",
        "us-west-2",
    )
    assert destination.batch_interval_secs == 60
    assert destination.object_lock is False
    assert destination.display_name == "s3:s3://audit-logs/kafka-backup/"


def test_cloudwatch_destination_takes_its_stream_from_hostname() -> None:
    config = load_config(SEED / "cloudwatch_destination.yaml", env={"HOSTNAME": "pod-7"})
    destination = config.audit.destination
    assert isinstance(destination, CloudWatchDestination)
    assert (destination.log_group, destination.log_stream, destination.region) == (
        "/kafka-backup/audit",
        "pod-7",
        "us-west-2",
    )


def test_kafka_destination_keeps_its_sasl_settings() -> None:
    config = load_config(SEED / "kafka_destination.yaml", env={"AUDIT_KAFKA_PASSWORD": "pw"})
    destination = config.audit.destination
    assert isinstance(destination, KafkaDestination)
    assert destination.bootstrap_servers == ["kafka:9092"]
    assert destination.topic == "audit-events"
    assert destination.security.sasl_username == "audit-producer"
    assert reveal(destination.security.sasl_password) == "pw"


def test_syslog_destination_is_tcp_to_port_514_with_facility_local0() -> None:
    destination = load_config(SEED / "syslog_destination.yaml", env={}).audit.destination
    assert isinstance(destination, SyslogDestination)
    assert destination.address == ("syslog.company.com", 514)
    assert (destination.protocol, destination.facility) == ("tcp", "local0")


def test_webhook_destination_substitutes_its_header() -> None:
    config = load_config(SEED / "webhook_destination.yaml", env={"WEBHOOK_TOKEN": "tok"})
    destination = config.audit.destination
    assert isinstance(destination, WebhookDestination)
    assert reveal(destination.url) == "https://siem.company.com/ingest"
    assert {k: reveal(v) for k, v in destination.headers.items()} == {"Authorization": "Bearer tok"}
    assert (destination.batch_size, destination.retry_attempts) == (100, 3)


def test_multiple_destinations_are_file_s3_and_kafka_in_order() -> None:
    config = load_config(SEED / "multiple_destinations.yaml", env={})
    assert [d.type for d in config.audit.all_destinations] == ["file", "s3", "kafka"]


def test_object_lock_example_turns_on_lock_signing_and_chain() -> None:
    config = load_config(SEED / "object_lock.yaml", env={})
    destination = config.audit.destination
    assert isinstance(destination, S3Destination)
    assert destination.object_lock is True
    assert destination.object_lock_mode == "COMPLIANCE"
    assert config.audit.integrity.signing.enabled and config.audit.integrity.chain.enabled


def test_the_configmap_audit_yaml_loads_as_written() -> None:
    configmap = yaml.safe_load((SEED / "configmap.yaml").read_text())
    config = load_config_text(configmap["data"]["audit.yaml"], env={})
    destination = config.audit.destination
    assert isinstance(destination, S3Destination) and destination.bucket == "audit-logs"
    assert config.audit.events == ["backup.*", "restore.*", "access.denied"]
