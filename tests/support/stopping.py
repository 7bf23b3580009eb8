"""Long-running kaudit commands as a service manager runs them: in a process group of
their own, stopped by a signal sent to the whole group (a terminal's Ctrl-C, systemd's
KillMode=control-group), then their log checked with the real `kaudit verify`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from kaudit.integrity.keys import generate

KAUDIT = str(Path(sys.executable).with_name("kaudit"))
HMAC_KEY = "0123456789abcdef0123456789abcdef"


def signed_config(tmp_path: Path, extra: str = "") -> Path:
    """A configuration whose log under `tmp_path/data` is HMAC-chained and checkpointed
    with a fresh Ed25519 key (`tmp_path/audit.key`, `.pub`); `extra` YAML is appended."""
    generate(tmp_path / "audit", "test")
    config = tmp_path / "kaudit.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "audit:\n"
        "  integrity:\n"
        "    signing: {enabled: true, key_env_var: AUDIT_SIGNING_KEY}\n"
        "    chain: {enabled: true}\n"
        f"    checkpoints: {{enabled: true, key_file: {tmp_path / 'audit.key'},"
        " every_events: 1000, every_seconds: 60}\n" + extra
    )
    return config


def env() -> dict[str, str]:
    return {**os.environ, "AUDIT_SIGNING_KEY": HMAC_KEY}


def start_group(
    args: list[str], cwd: Path, extra_env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`kaudit ARGS` as the leader of a new process group (its children in it too)."""
    return subprocess.Popen(
        [KAUDIT, *args],
        cwd=cwd,
        env={**env(), **(extra_env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def stop_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> tuple[int, str, bytes]:
    """Send `sig` to the process group of `proc`; its exit code, stderr and stdout."""
    os.killpg(proc.pid, sig)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err.decode(), out


def verify(tmp_path: Path) -> dict[str, Any]:
    """`kaudit verify --json` of the log under `tmp_path/data` with its keys."""
    done = subprocess.run(
        [KAUDIT, "verify", str(tmp_path / "data"), "--public-key", str(tmp_path / "audit.pub"),
         "--hmac-key-env", "AUDIT_SIGNING_KEY", "--json"],
        capture_output=True,
        env=env(),
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    report: dict[str, Any] = orjson.loads(done.stdout)
    return report


def assert_closed_cleanly(report: Mapping[str, Any]) -> None:
    """The log verifies and its newest checkpoint covers every event (the final one
    was written at the stop)."""
    assert report["ok"] and not report["findings"] and not report["notes"], report
    assert report["events"] > 0
    assert report["covered"]["verified_through"] == report["last_sequence"], report
