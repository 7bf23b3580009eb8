"""`kaudit verify` on the command line: exit codes 0 intact, 1 tampered, 2 usage."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

import kaudit
from kaudit.cli import main
from kaudit.config import Config
from kaudit.integrity.keys import generate

HMAC = ("--hmac-key-env", "KAUDIT_CLI_HMAC")


def verify(*args: str) -> Result:
    return CliRunner().invoke(main, ["verify", *args])


@pytest.fixture
def log_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("KAUDIT_CLI_HMAC", "h" * 32)
    keys = generate(tmp_path / "audit", "kaudit/cli-test")
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "audit": {
                "integrity": {
                    "signing": {"enabled": True, "key_env_var": "KAUDIT_CLI_HMAC"},
                    "chain": {"enabled": True},
                    "checkpoints": {
                        "enabled": True,
                        "key_file": str(keys.private),
                        "every_events": 20,
                    },
                }
            },
        }
    )
    with kaudit.open(config) as session:
        for i in range(100):
            session.emit("topic.deleted", actor="User:a", resource=f"topic:t{i}")
    return tmp_path / "data", keys.public


def test_an_untouched_log_is_intact(log_and_key: tuple[Path, Path]) -> None:
    data, pub = log_and_key
    result = verify(str(data), "--public-key", str(pub), *HMAC)
    assert result.exit_code == 0, result.output
    assert "INTACT" in result.output and "100 events" in result.output


def test_a_modified_event_is_reported_with_exit_1(log_and_key: tuple[Path, Path]) -> None:
    data, pub = log_and_key
    segment = data / "log" / "00000000000000000000.jsonl"
    lines = segment.read_bytes().splitlines(keepends=True)
    lines[42] = lines[42].replace(b"topic:t42", b"topic:t99").replace(b'"t42"', b'"t99"')
    segment.write_bytes(b"".join(lines))
    result = verify(str(data), "--public-key", str(pub), *HMAC, "--json")
    assert result.exit_code == 1
    report = orjson.loads(result.output)
    assert report["ok"] is False
    modified = [f for f in report["findings"] if f["kind"] == "modified"]
    assert modified and modified[0]["sequence_from"] <= 42 <= modified[0]["sequence_to"]


def test_usage_errors_exit_2(log_and_key: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = log_and_key
    assert verify(str(data)).exit_code == 2
    assert verify(str(tmp_path / "nope"), *HMAC).exit_code in (1, 2)
    result = verify("s3:///p", *HMAC)
    assert result.exit_code == 2 and "s3://bucket/prefix" in result.output
    result = verify("s3://b/p", *HMAC, "--anchor", "a")
    assert result.exit_code == 2 and "--anchor" in result.output
    result = verify(str(data), *HMAC, "--endpoint-url", "http://x")
    assert result.exit_code == 2 and "--endpoint-url applies to an s3://" in result.output
    result = verify("kafka://h:1/t", *HMAC, "--anchor", "a")
    assert result.exit_code == 2 and "--anchor" in result.output
