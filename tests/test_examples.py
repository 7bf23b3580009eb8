"""The commented configurations in examples/ load as written (with the environment
variables they document), configure what their comments say, and write under the
working directory; the README's examples do not write to /var/log either."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaudit.config import load_config
from kaudit.config.model import KafkaLog

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ENV = {
    "AUDIT_SIGNING_KEY": "0123456789abcdef0123456789abcdef",
    "KAUDIT_KAFKA_PASSWORD": "pw",
    "SLACK_WEBHOOK": "https://hooks.slack.com/services/T000/B000/XXXX",
    "KAUDIT_DISCOVERY_SECRET": "secret",
    "AUDIT_KAFKA_PASSWORD": "pw",
    "WEBHOOK_TOKEN": "token",
    "HOSTNAME": "kaudit-0",
}


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(
        ["local-file.yaml", "kafka-log-s3-slack.yaml", "gateway-sasl-ssl.yaml",
         "oso-enterprise.yaml"]
    )  # fmt: skip


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_an_example_writes_under_the_working_directory(name: str) -> None:
    text = (EXAMPLES / name).read_text()
    assert "/var/log" not in text and "/tmp/" not in text
    config = load_config(EXAMPLES / name, env=ENV)
    assert not config.data_path.is_absolute()
    assert all(line.lstrip().startswith("#") for line in text.splitlines()[:3])  # commented


def test_local_file_exports_the_local_log_to_a_file() -> None:
    config = load_config(EXAMPLES / "local-file.yaml", env=ENV)
    assert config.audit.log.type == "local"
    (export,) = config.audit.all_destinations
    assert export.type == "file" and export.path == "./kaudit-export/audit.jsonl"


def test_kafka_log_with_s3_and_slack() -> None:
    config = load_config(EXAMPLES / "kafka-log-s3-slack.yaml", env=ENV)
    assert isinstance(config.audit.log, KafkaLog)
    assert config.audit.log.security.security_protocol == "SASL_SSL"
    assert [d.type for d in config.audit.all_destinations] == ["s3", "slack"]
    s3 = config.audit.all_destinations[0]
    assert s3.object_lock and s3.object_lock_mode == "COMPLIANCE"


def test_gateway_in_front_of_a_sasl_ssl_cluster() -> None:
    config = load_config(EXAMPLES / "gateway-sasl-ssl.yaml", env=ENV)
    gateway = config.gateway
    assert gateway is not None and gateway.tls is not None and gateway.upstream_tls is not None
    assert gateway.upstream == ["pkc-abc12.us-west-2.aws.confluent.cloud:9092"]
    assert gateway.discovery is not None and gateway.discovery.security_protocol == "SASL_SSL"
    assert config.audit.integrity.checkpoints.enabled and config.audit.integrity.chain.enabled


def test_the_oso_enterprise_configuration_as_written() -> None:
    config = load_config(EXAMPLES / "oso-enterprise.yaml", env=ENV)
    assert [d.type for d in config.audit.all_destinations] == [
        "file", "s3", "cloudwatch", "kafka", "syslog", "webhook"
    ]  # fmt: skip
    assert "backup.checkpoint" in config.audit.exclude_events
    assert config.audit.integrity.signing.enabled and config.audit.integrity.chain.enabled
    assert config.audit.retention.min_days == 365 and config.audit.retention.max_days == 2555


def test_readme_examples_write_under_the_working_directory() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "/var/log" not in readme
