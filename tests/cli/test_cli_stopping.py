"""Stopping cleanly: SIGINT or SIGTERM sent to the process group of `kaudit generate`
(the checkpoint follower is in that group too, as under a terminal or systemd) ends it
with the events so far, the final checkpoint, one line and exit 130; `kaudit tail -f`
ends quietly with exit 0."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from unittest import mock

import pytest

import kaudit
from kaudit.log.segments import LogReader
from support.kafka import wait_for
from support.stopping import (
    assert_closed_cleanly,
    env,
    signed_config,
    start_group,
    stop_group,
    verify,
)


def _events_in(log_dir: Path) -> int:
    if not log_dir.exists():
        return 0
    reader = LogReader(log_dir)
    lines, _ = reader.read(reader.start(), 2000)
    return len(lines)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_generate_stopped_by_a_signal_keeps_its_events_with_a_final_checkpoint(
    tmp_path: Path, sig: signal.Signals
) -> None:
    config = signed_config(tmp_path)
    proc = start_group(["generate", "-c", str(config), "--count", "10000000"], tmp_path)
    wait_for(lambda: _events_in(tmp_path / "data" / "log") >= 1500, "events written", 60)
    code, err, _ = stop_group(proc, sig)
    assert code == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    stopped = [line for line in err.splitlines() if line.startswith("stopped: ")]
    assert len(stopped) == 1, err
    assert "kaudit generate: config " in err  # what it wrote to, said at start
    report = verify(tmp_path)
    assert_closed_cleanly(report)
    assert f"recorded {report['events']} events" in stopped[0]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_tail_follow_ends_quietly_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    config = signed_config(tmp_path)
    with mock.patch.dict(os.environ, env()), kaudit.open(config) as session:
        for n in range(5):
            session.emit("topic.created", actor="User:alice", resource=f"topic:t{n}")
    proc = start_group(["tail", str(tmp_path / "data"), "--follow"], tmp_path)
    assert proc.stdout is not None
    for _ in range(5):  # wait on what it printed, not on time
        assert proc.stdout.readline().startswith(b"{")
    code, err, _ = stop_group(proc, sig)
    assert code == 0
    assert err == ""
