"""`kaudit exporters status` shows each destination's cursor, lag and the metrics the
last `kaudit run` published (sent, failed, retried, last error)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import yaml
from click.testing import CliRunner
from kaudit_destination_helpers import emit_events
from kaudit_destination_servers import HttpBehaviour, HttpReceiver

from kaudit.cli import main
from kaudit.config import load_config
from kaudit.exporters import runners_for


def test_status_shows_lag_and_the_failures_a_running_exporter_saw(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    config_path = tmp_path / "kaudit.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "audit": {
                    "log": {"fsync": "never"},
                    "destinations": [
                        {
                            "type": "webhook",
                            "name": "siem",
                            "url": receiver.url,
                            "retry_attempts": 0,
                        }
                    ],
                },
            }
        )
    )
    config = load_config(config_path, env={})
    emit_events(config, ["topic.created"] * 12)
    receiver.behaviour = HttpBehaviour(status=503)
    (runner,) = runners_for(config)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 10
    while runner.metrics.retried < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join()
    runner.close()

    cli = CliRunner()
    result = cli.invoke(main, ["exporters", "status", "-c", str(config_path)])
    assert result.exit_code == 0, result.output
    (row,) = orjson.loads(result.output)
    assert row["destination"] == "siem"
    assert row["lag_events"] == 12 and row["cursor"] is None
    metrics = row["metrics"]
    assert metrics["sent"] == 0 and metrics["failed"] >= 2 and metrics["retried"] >= 2
    assert "answered 503" in metrics["last_error"]

    receiver.behaviour = HttpBehaviour()
    result = cli.invoke(main, ["run", "--once", "-c", str(config_path)])
    assert result.exit_code == 0, result.output
    (row,) = orjson.loads(cli.invoke(main, ["exporters", "status", "-c", str(config_path)]).output)
    assert row["lag_events"] == 0 and row["last_sequence"] == 11
    assert len(receiver.bodies()[0]) == 12
