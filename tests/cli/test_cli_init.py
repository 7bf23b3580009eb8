"""`kaudit init [DIR]` writes a starter configuration that check-config finds valid and
runnable, with its log and export under DIR; `--keys` adds the checkpoint key pair
(private key 0600) and turns checkpoints on; an existing config is not replaced without
--force."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from click.testing import CliRunner

from kaudit.cli import main
from kaudit.config import load_config


def test_init_writes_a_runnable_starter_config(tmp_path: Path) -> None:
    directory = tmp_path / "audit-here"
    runner = CliRunner()
    done = runner.invoke(main, ["init", str(directory)])
    assert done.exit_code == 0, done.stderr
    config = load_config(directory / "kaudit.yaml", env={})
    assert config.data_path == directory / "kaudit-data"
    assert not config.audit.integrity.checkpoints.enabled
    (export,) = config.audit.all_destinations
    assert Path(export.path).is_relative_to(directory)
    checked = runner.invoke(main, ["check-config", str(directory / "kaudit.yaml")])
    assert checked.exit_code == 0, checked.stderr

    again = runner.invoke(main, ["init", str(directory)])
    assert again.exit_code == 2
    assert "kaudit: error: " in again.stderr and "pass --force" in again.stderr


def test_init_with_keys_signs_checkpoints(tmp_path: Path) -> None:
    done = CliRunner().invoke(main, ["init", str(tmp_path), "--keys"])
    assert done.exit_code == 0, done.stderr
    assert stat.S_IMODE(os.stat(tmp_path / "audit.key").st_mode) == 0o600
    assert (tmp_path / "audit.pub").is_file()
    config = load_config(tmp_path / "kaudit.yaml", env={})
    checkpoints = config.audit.integrity.checkpoints
    assert checkpoints.enabled and checkpoints.key_file == str(tmp_path / "audit.key")
    checked = CliRunner().invoke(main, ["check-config", str(tmp_path / "kaudit.yaml")])
    assert checked.exit_code == 0, checked.stderr
