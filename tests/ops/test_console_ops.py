"""`kaudit console` with a `metrics:` section and `--log-format json`, as a real process:
/readyz checks the audit log it records to, /metrics counts what it recorded, and every
line on stderr is JSON (uvicorn's included)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from kaudit.dev.ports import free_port_block
from support.console import local_user
from support.kafka import wait_for

KAUDIT = [sys.executable, "-m", "kaudit.cli"]


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_kaudit_console_serves_metrics_and_readiness_and_logs_json(tmp_path: Path) -> None:
    port, metrics_port = free_port_block(1), free_port_block(1)
    config = tmp_path / "kaudit.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "console": {
                    "listen": f"127.0.0.1:{port}",
                    "clusters": [
                        {"name": "offline", "id": "x", "bootstrap_servers": "127.0.0.1:9"}
                    ],
                    "users": [local_user("alice", "dev")],
                },
                "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
            }
        )
    )
    process = subprocess.Popen(
        [*KAUDIT, "--log-format", "json", "console", "-c", str(config)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        console, ops = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}"
        serving = lambda: _ok(f"{console}/login") and _ok(f"{ops}/readyz")  # noqa: E731
        wait_for(lambda: serving() or process.poll() is not None, "the console", 60)
        assert process.poll() is None
        ready = httpx.get(f"http://127.0.0.1:{metrics_port}/readyz", timeout=10).json()
        assert ready == {"status": "ready", "checks": {"audit_log": {"ok": True}}}
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert "kaudit_events_received_total" in text
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None
    lines = [json.loads(line) for line in process.stderr.read().splitlines()]
    events = {line["event"] for line in lines}
    assert "kaudit.status" in events
    assert any(f"http://127.0.0.1:{metrics_port}/metrics" in line["message"] for line in lines)
