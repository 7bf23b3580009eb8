"""One command line: every error is one line starting `kaudit: error:` (click's usage
errors and `local-kafka`'s too), `verify-proof` on a file that is not a proof is a usage
error (2, not 1: a proof that fails), `-V` is `--version`, counts are worded with their
plurals, `--help` lists the exit codes and how to turn on shell completion, and the
completion script is what the README says to load."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from unittest import mock

import pytest
from click.testing import CliRunner

import kaudit
from kaudit.cli import main
from support.stopping import KAUDIT, env, signed_config

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, **kwargs: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), **kwargs)  # type: ignore[arg-type]
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "--no-such-option"],
        ["no-such-command"],
        ["check-config", "/no/such/kaudit.yaml"],
        ["tail", "/no/such/log"],
        ["search", "--since", "yesterday-ish", "/no/such"],
    ],
)
def test_every_error_starts_kaudit_error(args: list[str], tmp_path: Path) -> None:
    code, _, err = _run(*args)
    assert code in (1, 2)
    assert any(line.startswith("kaudit: error: ") for line in err.splitlines()), err
    assert "Error: " not in err and "Traceback" not in err


def test_local_kafka_errors_start_kaudit_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [KAUDIT, "local-kafka", "start", "--dir", str(tmp_path / "kafka")],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(tmp_path)},  # no java: its error, at once
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.startswith("kaudit: error: `java` was not found"), done.stderr


def test_verify_proof_of_something_that_is_not_a_proof_is_a_usage_error(tmp_path: Path) -> None:
    config = signed_config(tmp_path)
    not_a_proof = tmp_path / "kaudit.yaml"
    code, _, err = _run("verify-proof", str(config), "--public-key", str(tmp_path / "audit.pub"))
    assert code == 2
    assert err.startswith(f"kaudit: error: {not_a_proof}: not a kaudit proof document")


def test_dash_v_is_the_version() -> None:
    short, long_ = _run("-V"), _run("--version")
    assert short == long_
    assert short[0] == 0 and short[1] == f"kaudit {kaudit.__version__}\n"


def test_one_event_and_one_checkpoint_are_worded_in_the_singular(tmp_path: Path) -> None:
    config = signed_config(tmp_path)
    with mock.patch.dict(os.environ, env()), kaudit.open(config) as session:
        session.emit("topic.created", actor="User:alice", resource="topic:orders")
    with mock.patch.dict(os.environ, env()):
        code, out, _ = _run(
            "verify", str(tmp_path / "data"), "--public-key", str(tmp_path / "audit.pub")
        )
    assert code == 0, out
    first = out.splitlines()[0]
    assert "INTACT — 1 event (sequence 0–0)" in first
    # the start checkpoint (size 0) and the final one
    assert " 2 checkpoints checked" in first or " 1 checkpoint checked" in first
    assert "1 checkpoints" not in first and "1 events" not in first


def test_help_lists_the_exit_codes_and_shell_completion() -> None:
    code, out, _ = _run("--help")
    assert code == 0
    assert "Exit codes: 0 done" in out and "2 usage or configuration error" in out
    assert "_KAUDIT_COMPLETE=bash_source kaudit" in out
    readme = (ROOT / "README.md").read_text()
    assert "_KAUDIT_COMPLETE=bash_source kaudit" in readme and "## Exit codes" in readme


def test_the_completion_script_loads_in_bash() -> None:
    script = subprocess.run(
        [KAUDIT],
        env={**os.environ, "_KAUDIT_COMPLETE": "bash_source"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "_kaudit_completion" in script
    # Loaded by a real bash, it registers completion for `kaudit`.
    done = subprocess.run(
        ["bash", "-c", f"{script}\ncomplete -p kaudit"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and "_kaudit_completion" in done.stdout, done.stderr


def test_giving_up_is_one_error_line_with_the_right_plurals(tmp_path: Path) -> None:
    """A destination that refuses connections (nothing listens on its port)."""
    from kaudit.dev.ports import free_port_block

    config = tmp_path / "kaudit.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "audit:\n"
        f"  destination: {{type: webhook, url: 'http://127.0.0.1:{free_port_block(1)}/in',"
        " retry_attempts: 0}\n"
    )
    with kaudit.open(config) as session:
        session.emit("topic.created", actor="User:alice", resource="topic:orders")
    done = subprocess.run(
        [KAUDIT, "run", "--once", "--retries", "1", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    last = done.stderr.splitlines()[-1]
    assert last.startswith("kaudit: error: gave up after 1 retry; "), done.stderr
    assert ": 1 event not delivered" in last
