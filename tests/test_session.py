"""The SDK session: `kaudit.open(config)` as a context manager and `kaudit.emit(...)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

import kaudit
from kaudit.config import Config
from kaudit.errors import AuditUnavailableError, LogLockedError, UnknownEventTypeError
from kaudit.log.segments import LogReader, list_segments, segment_name


def events_in(log_dir: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for _, line in LogReader(log_dir).iter_lines()]


def config_for(tmp_path: Path, **audit: Any) -> Config:
    return Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "cluster": {"id": "prod-eu", "environment": "production"},
            "audit": {"log": {"fsync": "never"}, **audit},
        }
    )


def test_open_as_a_context_manager_and_emit(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    with kaudit.open(config) as session:
        assert isinstance(session, kaudit.AuditSession)
        assert session.log_dir == tmp_path / "data" / "log"
        kaudit.emit(
            "backup.completed",
            actor="ServiceAccount:backup",
            resource="backup:nightly-2026-11-22",
            details={"topics": 12, "bytes": 123456},
        )
        session.emit("auth.login", actor="User:alice", resource="cluster:prod-eu", durable=True)
        # durable=True: on disk before emit returned.
        assert len(events_in(config.log_dir)) == 2
    events = events_in(config.log_dir)
    assert [e["event_type"] for e in events] == ["backup.completed", "auth.login"]
    backup = events[0]
    assert backup["actor"] == {
        "type": "user",
        "id": "ServiceAccount:backup",
        "roles": [],
        "ip_address": None,
        "user_agent": None,
        "client_id": None,
        "auth": None,
        "authorized_as": None,
    }
    assert backup["action"]["operation"] == "backup"
    assert backup["context"]["cluster_id"] == "prod-eu"
    assert backup["context"]["environment"] == "production"
    assert backup["context"]["source"] == "sdk"
    assert backup["details"] == {"bytes": 123456, "topics": 12}
    assert events[1]["resource"]["path"] == "kafka://prod-eu/cluster/prod-eu"


def test_emit_with_no_open_session_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(AuditUnavailableError) as info:
        kaudit.emit("auth.login", actor="User:a", resource="cluster:c")
    assert "no audit session is open" in str(info.value)
    assert "kaudit.open(config)" in str(info.value)
    # And after the last session closed.
    with kaudit.open(config_for(tmp_path)):
        kaudit.emit("auth.login", actor="User:a", resource="cluster:c")
    with pytest.raises(AuditUnavailableError, match="no audit session is open"):
        kaudit.emit("auth.login", actor="User:a", resource="cluster:c")


def test_open_reads_a_yaml_file_with_environment_substitution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAUDIT_TEST_CLUSTER", "staging-1")
    path = tmp_path / "kaudit.yaml"
    path.write_text(
        f"""
data_dir: {tmp_path / "data"}
cluster:
  id: ${{KAUDIT_TEST_CLUSTER}}
  environment: ${{KAUDIT_TEST_ENV:-staging}}
audit:
  events: ["backup.*", "access.denied"]
  exclude_events: ["backup.checkpoint"]
"""
    )
    with kaudit.open(path, source="backup-tool") as session:
        for event_type in ("backup.started", "backup.checkpoint", "auth.login", "backup.failed"):
            kaudit.emit(event_type, actor="User:ops", resource="backup:b1")
        session.flush()
    events = events_in(tmp_path / "data" / "log")
    assert [e["event_type"] for e in events] == ["backup.started", "backup.failed"]
    assert events[0]["context"]["cluster_id"] == "staging-1"
    assert events[0]["context"]["environment"] == "staging"
    assert events[0]["context"]["source"] == "backup-tool"


def test_a_second_session_on_the_same_log_is_refused(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    with kaudit.open(config):
        with pytest.raises(LogLockedError, match="one writer per log directory"):
            kaudit.open(config)
        # The refused open did not replace the working session.
        kaudit.emit("auth.login", actor="User:a", resource="cluster:c")
    assert len(events_in(config.log_dir)) == 1


def test_emit_goes_through_the_session_opened_last(tmp_path: Path) -> None:
    first = config_for(tmp_path / "one")
    second = config_for(tmp_path / "two")
    with kaudit.open(first), kaudit.open(second):
        kaudit.emit("auth.login", actor="User:a", resource="cluster:c")
    assert events_in(first.log_dir) == []
    assert len(events_in(second.log_dir)) == 1


def test_a_disabled_audit_writes_nothing_but_still_checks_types(tmp_path: Path) -> None:
    config = config_for(tmp_path, enabled=False)
    with kaudit.open(config) as session:
        kaudit.emit("auth.login", actor="User:a", resource="cluster:c")
        with pytest.raises(UnknownEventTypeError):
            kaudit.emit("auth.logon", actor="User:a", resource="cluster:c")
        session.flush()
        assert session.recorder.metrics()["kaudit_events_filtered_total"] == 1
    assert not config.log_dir.exists() or list_segments(config.log_dir) == []


def test_reopening_after_a_crash_records_what_recovery_cut(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    with kaudit.open(config):
        kaudit.emit("auth.login", actor="User:a", resource="cluster:c")
    segment = config.log_dir / segment_name(0)
    with open(segment, "ab") as f:
        f.write(b'{"timestamp":"2026-11-22T10:1')  # the torn last write of a crash
    with kaudit.open(config):
        kaudit.emit("auth.logout", actor="User:a", resource="cluster:c")
    events = events_in(config.log_dir)
    assert [e["event_type"] for e in events] == ["auth.login", "audit.degraded", "auth.logout"]
    degraded = events[1]
    assert degraded["details"]["torn_lines_cut"] == 1
    assert degraded["details"]["bytes_cut"] == 29
    assert degraded["resource"] == {"type": "audit_log", "id": str(config.log_dir), "path": None}
    assert [e["integrity"]["sequence_number"] for e in events] == [0, 1, 2]


def test_close_is_idempotent_and_refuses_later_events(tmp_path: Path) -> None:
    session = kaudit.open(config_for(tmp_path))
    session.emit("auth.login", actor="User:a", resource="cluster:c")
    session.close()
    session.close()
    with pytest.raises(AuditUnavailableError, match="closed"):
        session.emit("auth.login", actor="User:a", resource="cluster:c")
    assert len(events_in(session.log_dir)) == 1


def test_recovery_is_reported_even_when_the_selection_leaves_out_audit_degraded(
    tmp_path: Path,
) -> None:
    config = config_for(tmp_path, events=["backup.*"])  # as in the OSO seed's examples
    with kaudit.open(config):
        kaudit.emit("backup.started", actor="User:ops", resource="backup:b1")
    with open(config.log_dir / segment_name(0), "ab") as f:
        f.write(b'{"timestamp":"2026-')
    with kaudit.open(config):
        kaudit.emit("backup.completed", actor="User:ops", resource="backup:b1")
    types = [e["event_type"] for e in events_in(config.log_dir)]
    assert types == ["backup.started", "audit.degraded", "backup.completed"]
