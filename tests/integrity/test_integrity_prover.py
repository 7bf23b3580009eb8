"""The console's prover gives the same inclusion proofs as `kaudit prove`, checked the
same way, and reads a changed event in the log as FAILED."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest

import kaudit
from kaudit.config import Config
from kaudit.integrity.keys import generate, load_verifiers
from kaudit.integrity.proof import prove_inclusion
from kaudit.integrity.prover import LogProver
from kaudit.log.segments import LogReader, segment_name


@pytest.fixture
def signed_log(tmp_path: Path) -> tuple[Path, Path]:
    """A log of 300 events over several segments, checkpointed every 64; (log dir, .pub)."""
    keys = generate(tmp_path / "audit", "kaudit/test")
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "audit": {
                "log": {"segment_max_mb": 1},
                "integrity": {
                    "checkpoints": {"enabled": True, "key_file": str(keys.private),
                                    "every_events": 64},
                },
            },
        }
    )  # fmt: skip
    with kaudit.open(config) as session:
        for i in range(300):
            session.emit("acl.created", actor="User:a", resource=f"acl:t{i}",
                         details={"pad": "x" * 5000})  # fmt: skip
    with kaudit.open(config) as session:
        session.emit("acl.created", actor="User:a", resource="acl:late")
    return tmp_path / "data" / "log", keys.public


def _lines(log_dir: Path) -> list[bytes]:
    return [line.rstrip(b"\n") for _, line in LogReader(log_dir).iter_lines()]


def test_the_provers_proofs_are_kaudit_proves_and_verify(signed_log: tuple[Path, Path]) -> None:
    log_dir, pub = signed_log
    ring = load_verifiers([pub])
    lines = _lines(log_dir)
    assert len(list(log_dir.glob("*.jsonl"))) > 1
    prover = LogProver(log_dir)
    for index in (0, 1, 63, 64, 200, len(lines) - 1):
        event = orjson.loads(lines[index])
        check = prover.check(event["event_id"], event["integrity"]["sequence_number"],
                             lines[index], ring)  # fmt: skip
        assert check.status == "verified", check.message
        assert check.document == prove_inclusion(log_dir, event["event_id"])
    unkeyed = prover.check(event["event_id"], event["integrity"]["sequence_number"],
                           lines[-1], None)  # fmt: skip
    assert unkeyed.status == "unchecked" and "no public key" in unkeyed.message


def test_an_event_changed_in_the_log_fails(signed_log: tuple[Path, Path]) -> None:
    log_dir, pub = signed_log
    ring = load_verifiers([pub])
    prover = LogProver(log_dir)
    first = log_dir / segment_name(0)
    original = _lines(log_dir)[5]
    event = orjson.loads(original)
    seq = event["integrity"]["sequence_number"]
    assert prover.check(event["event_id"], seq, original, ring).status == "verified"
    changed = original.replace(b'"acl.created"', b'"acl.deleted"')
    first.write_bytes(first.read_bytes().replace(original, changed))
    tampered = _lines(log_dir)[5]
    assert tampered != original
    assert prover.check(event["event_id"], seq, original, ring).status == "failed"
    fresh = LogProver(log_dir).check(event["event_id"], seq, tampered, ring)
    assert fresh.status == "failed" and "NOT included" in fresh.message


def test_while_the_log_is_still_being_read_a_check_says_so_not_verified(
    signed_log: tuple[Path, Path],
) -> None:
    log_dir, pub = signed_log
    line = _lines(log_dir)[3]
    event = orjson.loads(line)
    prover = LogProver(log_dir)
    reading = threading.Thread(target=prover.catch_up)
    with prover._lock:  # the first read of a large log, held by another thread
        reading.start()
        busy = prover.check(event["event_id"], event["integrity"]["sequence_number"], line,
                            load_verifiers([pub]), wait=0.05)  # fmt: skip
    reading.join()
    assert busy.status == "unchecked" and "still being read" in busy.message
