"""The HMAC-SHA256 chain in the OSO seed's format, sealed by the recorder's writer."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import kaudit
from kaudit.config import Config
from kaudit.errors import KauditError
from kaudit.events.codec import decode, encode_line
from kaudit.integrity.chain import HmacChain, split_sealed, verify_signature
from kaudit.log.segments import LogReader

KEY = "k" * 32


def _config(tmp_path: Path, chain: bool = True, segment_mb: int = 64) -> Config:
    return Config.model_validate(
        {
            "data_dir": str(tmp_path),
            "audit": {
                "log": {"type": "local", "segment_max_mb": segment_mb},
                "integrity": {
                    "signing": {"enabled": True, "key_env_var": "KAUDIT_TEST_HMAC"},
                    "chain": {"enabled": chain},
                },
            },
        }
    )


def _lines(tmp_path: Path) -> list[bytes]:
    return [line.rstrip(b"\n") for _, line in LogReader(tmp_path / "log").iter_lines()]


def test_every_event_is_signed_and_chained_across_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAUDIT_TEST_HMAC", KEY)
    for run in range(3):
        with kaudit.open(_config(tmp_path)) as session:
            for i in range(50):
                session.emit(
                    "acl.created", actor="User:a", resource=f"acl:t{i}", details={"run": run}
                )
    lines = _lines(tmp_path)
    assert len(lines) == 150
    previous = None
    for seq, line in enumerate(lines):
        event = orjson.loads(line)
        integrity = event["integrity"]
        assert integrity["sequence_number"] == seq
        assert integrity["signature"].startswith("sha256:") and len(integrity["signature"]) == 71
        assert integrity["previous_signature"] == previous
        assert verify_signature(KEY.encode(), line)
        previous = integrity["signature"]


def test_signed_lines_stay_canonical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAUDIT_TEST_HMAC", KEY)
    with kaudit.open(_config(tmp_path)) as session:
        session.emit("topic.created", actor="User:a", resource="topic:t", details={"b": 1})
        session.record(
            kaudit.AuditEvent(
                timestamp="",
                event_type="auth.login",
                event_id="",
                actor=kaudit.Actor("user", "User:b"),
                resource=kaudit.Resource("cluster", "c"),
                action=kaudit.Action("login"),
            )
        )
    for line in _lines(tmp_path):
        assert encode_line(decode(line)) == line + b"\n"


def test_a_changed_byte_or_wrong_key_fails_verification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAUDIT_TEST_HMAC", KEY)
    with kaudit.open(_config(tmp_path)) as session:
        session.emit("topic.deleted", actor="User:mallory", resource="topic:orders")
    line = _lines(tmp_path)[0]
    assert verify_signature(KEY.encode(), line)
    assert not verify_signature(b"another key of 32 bytes........", line)
    tampered = line.replace(b"User:mallory", b"User:alice00")
    assert not verify_signature(KEY.encode(), tampered)


def test_signing_without_chaining_leaves_previous_null(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAUDIT_TEST_HMAC", KEY)
    with kaudit.open(_config(tmp_path, chain=False)) as session:
        for _ in range(3):
            session.emit("auth.login", actor="User:a", resource="cluster:c")
    assert all(split_sealed(line)[2] is None for line in _lines(tmp_path))


def test_the_chain_continues_over_segment_rolls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAUDIT_TEST_HMAC", KEY)
    big = {"blob": "x" * 20_000}
    for _ in range(2):
        with kaudit.open(_config(tmp_path, segment_mb=1)) as session:
            for _ in range(80):
                session.emit("config.changed", actor="User:a", resource="broker:1", details=big)
    assert len(list((tmp_path / "log").glob("*.jsonl"))) > 2
    previous = None
    for line in _lines(tmp_path):
        _, signature, prev = split_sealed(line)
        assert prev == previous
        previous = signature


def test_missing_or_short_key_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAUDIT_TEST_HMAC", raising=False)
    with pytest.raises(KauditError, match="KAUDIT_TEST_HMAC"):
        kaudit.open(_config(tmp_path))
    monkeypatch.setenv("KAUDIT_TEST_HMAC", "short")
    with pytest.raises(KauditError, match="at least 16"):
        kaudit.open(_config(tmp_path))
    # The log directory is not left locked by the failed open.
    monkeypatch.setenv("KAUDIT_TEST_HMAC", KEY)
    with kaudit.open(_config(tmp_path)) as session:
        session.emit("auth.login", actor="User:a", resource="cluster:c")


def test_chain_needs_signing_in_the_config() -> None:
    from kaudit.config import load_config_text
    from kaudit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"chain\.enabled needs signing\.enabled"):
        load_config_text("audit:\n  integrity:\n    chain: {enabled: true}\n")


def test_sealing_refuses_a_line_that_is_not_unsealed() -> None:
    chain = HmacChain(KEY.encode(), chained=True)
    with pytest.raises(ValueError):
        chain.seal(b'{"x":1}\n')
