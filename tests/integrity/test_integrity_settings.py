"""A log never changes its integrity settings silently: the first writer records them in
the log directory (integrity.json); a writer with other settings (`kaudit gateway`
started without `-c` beside a signed log, here `kaudit emit`) refuses to append, naming
both settings and how to proceed; `kaudit rotate-integrity` changes them on purpose and
records the change, and `kaudit verify` (with the checkpoints, which still cover every
event) reads the unsigned events after it as recorded, not as tampering."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import orjson
from click.testing import CliRunner, Result

from kaudit.cli import main
from support.stopping import env, signed_config, verify


def _kaudit(*args: str, cwd: Path) -> Result:
    with mock.patch.dict(os.environ, env()):
        return CliRunner().invoke(main, list(args))


def test_a_writer_with_other_integrity_settings_refuses_to_append(tmp_path: Path) -> None:
    config = signed_config(tmp_path)
    signed = _kaudit("emit", "topic.created", "--actor", "User:alice", "--resource",
                     "topic:orders", "-c", str(config), cwd=tmp_path)  # fmt: skip
    assert signed.exit_code == 0, signed.stderr
    recorded = orjson.loads((tmp_path / "data" / "log" / "integrity.json").read_bytes())
    assert recorded["settings"] == {"signing": "HMAC-SHA256", "chain": True, "checkpoints": True}

    # Another writer of the same log directory without the signed configuration.
    unsigned = tmp_path / "unsigned.yaml"
    unsigned.write_text(f"data_dir: {tmp_path / 'data'}\n")
    refused = _kaudit("emit", "topic.deleted", "--actor", "User:mallory", "--resource",
                      "topic:orders", "-c", str(unsigned), cwd=tmp_path)  # fmt: skip
    assert refused.exit_code == 1
    message = " ".join(refused.stderr.split())
    assert message.startswith("kaudit: error: the audit log in ")
    assert "was written with signing HMAC-SHA256, chain on, checkpoints on" in message
    assert "asks for signing off, chain off, checkpoints off" in message
    assert "a new data directory" in message and "kaudit rotate-integrity" in message
    report = verify(tmp_path)
    assert report["ok"] and report["events"] == 1  # nothing was appended

    # On purpose: HMAC signing off, the signed checkpoints kept.
    unsigned.write_text(
        f"data_dir: {tmp_path / 'data'}\naudit:\n  integrity:\n    checkpoints: "
        f"{{enabled: true, key_file: {tmp_path / 'audit.key'}}}\n"
    )
    rotated = _kaudit("rotate-integrity", "-c", str(unsigned), cwd=tmp_path)
    assert rotated.exit_code == 0, rotated.stderr
    record = orjson.loads((tmp_path / "data" / "log" / "integrity.json").read_bytes())
    (change,) = record["changes"]
    assert change["from"]["signing"] == "HMAC-SHA256" and change["to"]["signing"] is None
    assert change["from_sequence"] == 1
    assert oct(os.stat(tmp_path / "data" / "log" / "integrity.json").st_mode & 0o777) == "0o640"
    appended = _kaudit("emit", "topic.deleted", "--actor", "User:ops", "--resource",
                       "topic:orders", "-c", str(unsigned), cwd=tmp_path)  # fmt: skip
    assert appended.exit_code == 0, appended.stderr
    after = verify(tmp_path)
    assert after["ok"] and after["events"] == 2, after
    assert any("event" in n and "as recorded in" in n and "integrity.json" in n
               for n in after["notes"]), after["notes"]  # fmt: skip


def test_without_a_recorded_change_unsigned_events_are_still_findings(tmp_path: Path) -> None:
    config = signed_config(tmp_path)
    assert _kaudit("emit", "topic.created", "--actor", "User:alice", "--resource",
                   "topic:orders", "-c", str(config), cwd=tmp_path).exit_code == 0  # fmt: skip
    (tmp_path / "data" / "log" / "integrity.json").unlink()  # the record removed...
    unsigned = tmp_path / "unsigned.yaml"
    unsigned.write_text(
        f"data_dir: {tmp_path / 'data'}\naudit:\n  integrity:\n    checkpoints: "
        f"{{enabled: true, key_file: {tmp_path / 'audit.key'}}}\n"
    )
    assert _kaudit("emit", "topic.deleted", "--actor", "User:mallory", "--resource",
                   "topic:orders", "-c", str(unsigned), cwd=tmp_path).exit_code == 0  # fmt: skip
    with mock.patch.dict(os.environ, env()):
        done = CliRunner().invoke(main, ["verify", str(tmp_path / "data"), "--public-key",
                                         str(tmp_path / "audit.pub"), "--hmac-key-env",
                                         "AUDIT_SIGNING_KEY"])  # fmt: skip
    assert done.exit_code == 1  # ...so the unsigned event is what it looks like
    assert "event 1 carries no HMAC signature" in done.stdout
