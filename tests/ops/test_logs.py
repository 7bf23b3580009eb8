"""`--log-format json`: one JSON object per line on stderr, each with the same fields and
a stable event name, secrets masked; the command's own messages too."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kaudit.config.secrets import register_secret
from kaudit.ops import logs

KAUDIT = str(Path(sys.executable).with_name("kaudit"))
FIELDS = {"ts", "level", "logger", "event", "message", "pid", "thread"}


@pytest.fixture
def json_logs() -> Iterator[Callable[[], None]]:
    """Starts JSON lines at info and above on stderr when called (from the test itself:
    pytest swaps the stream capsys reads between phases); removed afterwards."""
    handlers: list[logging.Handler] = []
    yield lambda: handlers.append(logs.configure("json", "info"))
    for handler in handlers:
        logging.getLogger().removeHandler(handler)
    logs._state.update(format="text", handler=None)
    logging.captureWarnings(False)


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_every_line_has_the_fields_and_a_stable_event_name(
    json_logs: Callable[[], None], capsys: pytest.CaptureFixture[str]
) -> None:
    json_logs()
    log = logging.getLogger("kaudit.exporters")
    log.warning("%s failed, retrying in %.1fs: %s", "siem", 0.4, "connection refused")
    log.warning("%s failed, retrying in %.1fs: %s", "archive", 12.8, "timed out")
    log.info("named", extra={"event": "exporter.started", "destination": "siem"})
    first, second, named = lines(capsys)
    assert set(first) >= FIELDS and set(second) >= FIELDS
    assert first["event"] == second["event"] == "kaudit.exporters.failed_retrying_in_s"
    assert first["message"] == "siem failed, retrying in 0.4s: connection refused"
    assert first["level"] == "warning" and first["logger"] == "kaudit.exporters"
    assert str(first["ts"]).endswith("Z")
    assert named["event"] == "exporter.started" and named["destination"] == "siem"


def test_secrets_never_reach_a_json_line(
    json_logs: Callable[[], None], capsys: pytest.CaptureFixture[str]
) -> None:
    json_logs()
    register_secret("hunter2-very-secret")
    log = logging.getLogger("kaudit.gateway")
    log.error("login with %s refused", "hunter2-very-secret")
    log.error("as field", extra={"detail": "password=hunter2-very-secret"})
    try:
        raise RuntimeError("boom hunter2-very-secret")
    except RuntimeError:
        log.exception("failed")
    text = capsys.readouterr().err
    assert "hunter2" not in text
    refused, field, failed = (json.loads(line) for line in text.splitlines())
    assert refused["event"] == "kaudit.gateway.login_with_refused"
    assert refused["message"] == "login with *** refused"
    assert field["detail"] == "password=***"
    assert "RuntimeError: boom ***" in str(failed["exception"])


def test_the_command_line_speaks_json_too(tmp_path: Path) -> None:
    config = tmp_path / "kaudit.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "audit:\n"
        f"  destination: {{type: file, path: {tmp_path / 'out.jsonl'}}}\n"
    )
    ran = subprocess.run(
        [KAUDIT, "--log-format", "json", "run", "--once", "-c", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    records = [json.loads(line) for line in ran.stderr.splitlines()]
    assert records and all(set(r) >= FIELDS for r in records)
    assert {r["event"] for r in records} == {"kaudit.status"}
    config.write_text("audit: {queue_max_events: -1}\n")
    bad = subprocess.run(
        [KAUDIT, "run", "-c", str(config)],
        capture_output=True, text=True, timeout=60, env={"KAUDIT_LOG_FORMAT": "json"},
    )  # fmt: skip
    assert bad.returncode == 2
    (invalid,) = (json.loads(line) for line in bad.stderr.splitlines())
    assert invalid["event"] == "kaudit.config_invalid"
    assert any("audit.queue_max_events" in issue for issue in invalid["issues"])
