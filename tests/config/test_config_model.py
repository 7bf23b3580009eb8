"""The configuration model: defaults, derived values, and reading files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import kaudit.config
from kaudit.config import (
    AuditConfig,
    AuditorSpec,
    Config,
    FileDestination,
    LocalLog,
    load_config,
    load_config_text,
)
from kaudit.errors import ConfigError


def test_empty_file_is_the_all_defaults_configuration() -> None:
    for text in ("", "\n", "# only a comment\n"):
        config = load_config_text(text, env={})
        assert config == Config()
    assert config.data_dir == "./kaudit-data"
    assert config.cluster.id is None
    assert config.auditors == ["recorder"]
    audit = config.audit
    assert audit.enabled is True
    assert audit.log == LocalLog(type="local", segment_max_mb=64, fsync="batch")
    assert audit.failure_policy == "fail_open"
    assert (audit.queue_max_events, audit.block_timeout_ms, audit.batch_max_events) == (
        100_000,
        5000,
        4096,
    )
    assert audit.events == ["*"]
    assert audit.exclude_events == audit.custom_event_types == audit.redact_keys == []
    assert audit.destination is None
    assert audit.all_destinations == []


def test_models_are_frozen() -> None:
    config = Config()
    with pytest.raises(ValueError, match="frozen"):
        config.data_dir = "/elsewhere"


def test_paths_derive_from_data_dir() -> None:
    config = load_config_text("data_dir: /srv/kaudit\n", env={})
    assert config.data_path == Path("/srv/kaudit")
    assert config.log_dir == Path("/srv/kaudit/log")


def test_catalog_includes_custom_event_types() -> None:
    config = load_config_text(
        "audit:\n  custom_event_types: [billing.invoice_sent]\n"
        "  events: [billing.*, topic.created]\n",
        env={},
    )
    catalog = config.catalog()
    assert "billing.invoice_sent" in catalog
    assert catalog.matching("billing.*") == ["billing.invoice_sent"]
    assert "billing.invoice_sent" not in Config().catalog()


def test_all_destinations_lists_single_then_many_and_names_them() -> None:
    single = load_config_text(
        "audit:\n  destination: {type: file, path: /a.log, name: primary}\n", env={}
    )
    assert [d.display_name for d in single.audit.all_destinations] == ["primary"]

    many = load_config_text(
        """\
audit:
  destinations:
    - {type: file, path: /a.log, format: cloudevents, events: [topic.*]}
    - {type: file, path: /b.log, name: archive, exclude_events: [records.*]}
""",
        env={},
    )
    destinations = many.audit.all_destinations
    assert [d.display_name for d in destinations] == ["file:/a.log", "archive"]
    assert destinations[0].format == "cloudevents"
    assert destinations[0].events == ["topic.*"]
    assert destinations[1].exclude_events == ["records.*"]


def test_auditors_accept_names_and_specs() -> None:
    config = load_config_text(
        """\
auditors:
  - recorder
  - logging
  - name: mypkg.audit:SiemAuditor
    config: {url: https://siem.example/ingest, batch: 10}
""",
        env={},
    )
    assert config.auditors[:2] == ["recorder", "logging"]
    assert config.auditor_specs == [
        AuditorSpec(name="recorder"),
        AuditorSpec(name="logging"),
        AuditorSpec(
            name="mypkg.audit:SiemAuditor",
            config={"url": "https://siem.example/ingest", "batch": 10},
        ),
    ]


def test_model_validation_checks_cross_key_rules_without_the_loader() -> None:
    with pytest.raises(ValueError, match="destination and destinations are both set"):
        AuditConfig.model_validate(
            {
                "destination": {"type": "file", "path": "/a"},
                "destinations": [{"type": "file", "path": "/b"}],
            }
        )
    with pytest.raises(ValueError, match=r"unknown event type 'topic\.nope'"):
        AuditConfig.model_validate({"events": ["topic.nope"]})


def test_models_can_be_built_in_python() -> None:
    destination = FileDestination(path="/var/log/a.log")
    audit = AuditConfig(destination=destination, failure_policy="fail_closed")
    config = Config(audit=audit)
    assert config.audit.all_destinations == [destination]
    assert destination.type == "file"


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "kaudit.yaml"
    path.write_text("\ufeffcluster:\n  id: ${CLUSTER:-local}\n", encoding="utf-8")
    assert load_config(path, env={}).cluster.id == "local"
    assert load_config(str(path), env={"CLUSTER": "c1"}).cluster.id == "c1"


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "kaudit.yaml"
    path.write_text("audit:\n  enabled: maybe\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.source == str(path)
    assert str(caught.value).startswith(f"{path}: 1 error(s) in configuration\n")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.yaml", "file not found"),
        (lambda p: p, "is a directory, not a file"),
    ],
)
def test_unreadable_files_are_config_errors(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert [str(issue) for issue in caught.value.issues] == [message]
    assert caught.value.source == str(path)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"cluster:\n  id: caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    (issue,) = caught.value.issues
    assert issue.message.startswith("not UTF-8 text (byte 18:")


def test_package_exports() -> None:
    assert sorted(kaudit.config.__all__) == sorted(
        [
            "AuditConfig",
            "AuditorEntry",
            "AuditorSpec",
            "ClusterConfig",
            "Config",
            "Destination",
            "DestinationBase",
            "FileDestination",
            "LocalLog",
            "LogConfig",
            "Rotation",
            "TypeSwitch",
            "load_config",
            "load_config_text",
        ]
    )
