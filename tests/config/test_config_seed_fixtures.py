"""The OSO seed's YAML examples load as written and mean what the seed says."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaudit.config import Config, FileDestination, Rotation, load_config, load_config_text

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


@pytest.mark.parametrize("name", ["basic.yaml", "file_destination.yaml", "event_selection.yaml"])
def test_seed_enterprise_block_means_the_same_as_top_level_audit(name: str) -> None:
    text = (SEED / name).read_text()
    # Dropping the `enterprise:` line and one indentation level gives the plain form.
    plain = "\n".join(line[2:] for line in text.splitlines()[1:])
    assert load_config_text(text, env={}) == load_config_text(plain, env={})
    assert isinstance(load_config_text(plain, env={}), Config)
