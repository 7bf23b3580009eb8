"""Inclusion and consistency proofs made from a real log and checked with the public key."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

import kaudit
from kaudit.cli import main
from kaudit.config import Config
from kaudit.integrity.keys import generate, load_verifiers
from kaudit.integrity.proof import ProofError, prove_consistency, prove_inclusion, verify_proof
from kaudit.integrity.store import StoredCheckpoint, read_checkpoints
from kaudit.log.segments import LogReader


@pytest.fixture
def signed_log(tmp_path: Path) -> tuple[Path, Path]:
    """A log written in three runs with checkpoints every 50 events; (log dir, .pub)."""
    keys = generate(tmp_path / "audit", "kaudit/test")
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "audit": {
                "log": {"segment_max_mb": 1},
                "integrity": {
                    "checkpoints": {
                        "enabled": True,
                        "key_file": str(keys.private),
                        "every_events": 50,
                    }
                },
            },
        }
    )
    for run in range(3):
        with kaudit.open(config) as session:
            for i in range(120):
                session.emit(
                    "acl.created",
                    actor="User:a",
                    resource=f"acl:t{i}",
                    details={"run": run, "pad": "x" * 4000},
                )
    return tmp_path / "data" / "log", keys.public


def _ids(log_dir: Path) -> list[str]:
    return [orjson.loads(line)["event_id"] for _, line in LogReader(log_dir).iter_lines()]


def test_every_event_has_an_inclusion_proof(signed_log: tuple[Path, Path]) -> None:
    log_dir, pub = signed_log
    ring = load_verifiers([pub])
    ids = _ids(log_dir)
    assert len(ids) == 360 and len(list(log_dir.glob("*.jsonl"))) > 1
    for index in (0, 1, 179, 358, 359):
        proof = prove_inclusion(log_dir, ids[index])
        assert proof["index"] == index
        assert "included at index" in verify_proof(orjson.dumps(proof), ring)


def test_a_proof_for_another_index_or_changed_event_fails(
    signed_log: tuple[Path, Path],
) -> None:
    log_dir, pub = signed_log
    ring = load_verifiers([pub])
    proof = prove_inclusion(log_dir, _ids(log_dir)[42])
    moved = dict(proof, index=43)
    with pytest.raises(ProofError, match="NOT included"):
        verify_proof(orjson.dumps(moved), ring)
    changed = dict(proof, event=proof["event"].replace("User:a", "User:b"))
    with pytest.raises(ProofError, match="NOT included"):
        verify_proof(orjson.dumps(changed), ring)


def test_consistency_between_every_older_checkpoint_and_the_latest(
    signed_log: tuple[Path, Path],
) -> None:
    log_dir, pub = signed_log
    ring = load_verifiers([pub])
    sizes = sorted(
        {c.size for _, _, c in read_checkpoints(log_dir) if isinstance(c, StoredCheckpoint)}
    )
    assert sizes[0] == 0 or sizes[0] >= 50
    for size in [s for s in sizes if s > 0]:
        proof = prove_consistency(log_dir, size)
        assert "without rewriting" in verify_proof(orjson.dumps(proof), ring)


def test_a_rewritten_log_fails_consistency(signed_log: tuple[Path, Path], tmp_path: Path) -> None:
    log_dir, pub = signed_log
    ring = load_verifiers([pub])
    proof = prove_consistency(log_dir, 120)
    proof["proof"][0] = "00" * 32
    with pytest.raises(ProofError, match="rewritten"):
        verify_proof(orjson.dumps(proof), ring)


def test_another_key_does_not_trust_the_checkpoint(
    signed_log: tuple[Path, Path], tmp_path: Path
) -> None:
    log_dir, _ = signed_log
    other = generate(tmp_path / "other", "kaudit/other")
    proof = prove_inclusion(log_dir, _ids(log_dir)[0])
    with pytest.raises(ProofError, match="not trusted"):
        verify_proof(orjson.dumps(proof), load_verifiers([other.public]))


def test_prove_and_verify_proof_on_the_command_line(
    signed_log: tuple[Path, Path], tmp_path: Path
) -> None:
    log_dir, pub = signed_log
    runner = CliRunner()
    out = tmp_path / "proof.json"
    event_id = _ids(log_dir)[7]
    result = runner.invoke(main, ["prove", event_id, "--log", str(log_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["verify-proof", str(out), "--public-key", str(pub)])
    assert result.exit_code == 0 and result.output.startswith("OK:")
    result = runner.invoke(main, ["prove", "evt_nope", "--log", str(log_dir)])
    assert result.exit_code == 1 and "no event 'evt_nope'" in result.output


def test_checkpoints_are_also_written_to_the_external_anchor(tmp_path: Path) -> None:
    keys = generate(tmp_path / "audit", "kaudit/test")
    anchor = tmp_path / "worm" / "anchor.jsonl"
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "audit": {
                "integrity": {
                    "checkpoints": {
                        "enabled": True,
                        "key_file": str(keys.private),
                        "every_events": 10,
                        "anchor_path": str(anchor),
                    }
                }
            },
        }
    )
    with kaudit.open(config) as session:
        for i in range(30):
            session.emit("auth.login", actor=f"User:u{i}", resource="cluster:c", durable=True)
    in_log = [
        c.note
        for _, _, c in read_checkpoints(tmp_path / "data" / "log")
        if isinstance(c, StoredCheckpoint)
    ]
    in_anchor = [orjson.loads(line)["note"].encode() for line in anchor.read_bytes().splitlines()]
    assert in_anchor == in_log and len(in_log) >= 3


def test_a_torn_checkpoint_record_is_cut_before_the_next_one(tmp_path: Path) -> None:
    keys = generate(tmp_path / "audit", "kaudit/test")
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "audit": {
                "integrity": {"checkpoints": {"enabled": True, "key_file": str(keys.private)}}
            },
        }
    )
    with kaudit.open(config) as session:
        session.emit("auth.login", actor="User:a", resource="cluster:c")
    (ckpt,) = (tmp_path / "data" / "log").glob("*.checkpoints.jsonl")
    with open(ckpt, "ab") as f:
        f.write(b'{"size": 1, "segm')  # a power cut in the middle of a record
    with kaudit.open(config) as session:
        session.emit("auth.login", actor="User:b", resource="cluster:c")
    items = [c for _, _, c in read_checkpoints(tmp_path / "data" / "log")]
    assert all(isinstance(c, StoredCheckpoint) for c in items), items
