"""Batch runs end: `kaudit run --once` with a destination that is down (a real HTTP
receiver answering 503) gives up after its retries, says what was not delivered, exits 1,
and leaves that destination's cursor where delivery stopped, while the other destinations
are served; the next run, with the destination back, delivers the rest."""

from __future__ import annotations

from pathlib import Path

import orjson
import yaml
from click.testing import CliRunner
from kaudit_destination_helpers import emit_events
from kaudit_destination_servers import HttpBehaviour, HttpReceiver

from kaudit.cli import main
from kaudit.config import load_config


def test_run_once_gives_up_on_a_destination_that_is_down(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    config_path = tmp_path / "kaudit.yaml"
    export = tmp_path / "copy.jsonl"
    config_path.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "audit": {
                    "log": {"fsync": "never"},
                    "destinations": [
                        {"type": "webhook", "name": "siem", "url": receiver.url,
                         "retry_attempts": 0},
                        {"type": "file", "name": "copy", "path": str(export)},
                    ],
                },
            }
        )
    )  # fmt: skip
    config = load_config(config_path, env={})
    emit_events(config, ["topic.created"] * 7)
    receiver.behaviour = HttpBehaviour(status=503)

    cli = CliRunner()
    down = cli.invoke(main, ["run", "--once", "--retries", "2", "-c", str(config_path)])
    assert down.exit_code == 1, down.output
    assert down.stderr.splitlines()[-1].startswith("kaudit: error: gave up after 2 retries; ")
    assert "siem: 7 events not delivered, from sequence 0 on" in down.stderr
    assert "answered 503" in down.stderr and "delivered copy: 7" in down.stderr
    assert len(receiver.bodies()) == 0
    assert len(export.read_bytes().splitlines()) == 7  # the other destination was served

    status = orjson.loads(cli.invoke(main, ["exporters", "status", "-c", str(config_path)]).output)
    siem = next(row for row in status if row["destination"] == "siem")
    assert siem["cursor"] is None and siem["lag_events"] == 7  # where delivery stopped
    assert siem["metrics"]["retried"] == 2

    receiver.behaviour = HttpBehaviour()
    back = cli.invoke(main, ["run", "--once", "-c", str(config_path)])
    assert back.exit_code == 0, back.output
    assert "kaudit run: delivered siem: 7 events, copy: 0 events" in back.stderr
    assert len(receiver.bodies()[0]) == 7
