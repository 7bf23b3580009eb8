"""Crash safety of the local log: a writer killed with SIGKILL mid-stream, again and again.

A child process opens an audit session with `kaudit.open(...)` and emits events in a
loop; this process kills it with SIGKILL at a random moment, reopens the log in a new
child that keeps writing, and repeats. Afterwards every line of every segment must be a
whole event, the sequence numbers must run 0..N-1 without gaps or duplicates, and each
time the reopen had to cut a torn tail an `audit.degraded` event reporting the cut must
be in the log.

A real kill -9 rarely tears a line (the kernel finishes most write() calls it has begun),
so one round additionally appends half of an event line by hand to the last segment
before reopening, standing in for a write cut short by power loss.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import kaudit
from kaudit.config import Config
from kaudit.events.codec import decode
from kaudit.log.segments import list_segments, segment_name

_WRITER = textwrap.dedent(
    """
    import sys, time
    import kaudit
    from kaudit.config import Config

    config = Config.model_validate({
        "data_dir": sys.argv[1],
        "audit": {"log": {"fsync": sys.argv[2], "segment_max_mb": 1}},
    })
    round_ = int(sys.argv[3])
    with kaudit.open(config) as session:
        session.flush()  # the recovery report, if any, is durable before we go on
        print("ready", flush=True)
        i = 0
        while True:
            kaudit.emit(
                "records.produced",
                actor="User:crash",
                resource="topic:orders",
                details={"round": round_, "i": i, "pad": "p" * 100},
            )
            i += 1
            if i % 100 == 0:
                time.sleep(0.002)  # let the writer keep up instead of filling the queue
    """
)


def _tail_is_torn(log_dir: Path) -> bool:
    """Whether the last segment ends in something other than a whole event line."""
    segments = list_segments(log_dir)
    if not segments:
        return False
    data = (log_dir / segment_name(segments[-1])).read_bytes()
    if not data:
        return False
    if not data.endswith(b"\n"):
        return True
    last = data[data.rfind(b"\n", 0, len(data) - 1) + 1 :]
    try:
        decode(last)
    except Exception:
        return True
    return False


def _run_and_kill(data_dir: Path, fsync: str, round_: int, rng: random.Random) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(data_dir), fsync, str(round_)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        assert line == "ready", child.stderr.read() if child.stderr else ""
        time.sleep(rng.uniform(0.1, 0.35))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL


@pytest.mark.parametrize("fsync", ["never", "batch"])
def test_repeated_kill_9_leaves_a_whole_contiguous_log(tmp_path: Path, fsync: str) -> None:
    rng = random.Random(fsync)
    data_dir = tmp_path / "data"
    log_dir = data_dir / "log"
    rounds = 4
    torn_rounds = 0
    for round_ in range(rounds):
        if round_ > 0 and _tail_is_torn(log_dir):
            torn_rounds += 1
        elif round_ == 2:
            # Stand-in for a write cut short by power loss (see the module docstring).
            # Half of a real line, appended to the newest segment. (Under load a killed
            # round may have rolled to a new segment and written nothing there yet, so the
            # line is taken from the newest segment that has one.)
            segments_now = [log_dir / segment_name(s) for s in list_segments(log_dir)]
            last = segments_now[-1]
            lines = next(
                path.read_bytes().splitlines(keepends=True)
                for path in reversed(segments_now)
                if path.stat().st_size
            )
            with open(last, "ab") as f:
                f.write(lines[-1][: len(lines[-1]) // 2])
            torn_rounds += 1
        _run_and_kill(data_dir, fsync, round_, rng)

    if _tail_is_torn(log_dir):
        torn_rounds += 1
    # A last clean session repairs the tail the final kill may have left.
    config = Config.model_validate({"data_dir": str(data_dir)})
    with kaudit.open(config) as session:
        session.emit("backup.completed", actor="User:crash", resource="backup:final")

    segments = list_segments(log_dir)
    assert len(segments) >= 2, "the test should cover segment rolls"
    seqs: list[int] = []
    rounds_seen: set[int] = set()
    degraded = []
    for base in segments:
        data = (log_dir / segment_name(base)).read_bytes()
        assert data.endswith(b"\n")
        for raw in data.splitlines(keepends=True):
            event = decode(raw)  # every line is a whole event
            assert event.integrity is not None
            seqs.append(event.integrity.sequence_number)
            if event.event_type == "records.produced":
                rounds_seen.add(event.details["round"])
            if event.event_type == "audit.degraded" and "torn_lines_cut" in event.details:
                degraded.append(event)
        first = decode(data.splitlines()[0]).integrity
        assert first is not None and first.sequence_number == base

    assert seqs == list(range(len(seqs))), "sequence numbers have gaps or duplicates"
    assert rounds_seen == set(range(rounds)), "every writer got events into the log"
    assert len(degraded) == torn_rounds
    for event in degraded:
        assert event.details["torn_lines_cut"] >= 1
        assert event.details["bytes_cut"] > 0
    # The event after the last kill made it too, as the last line.
    last_line = (log_dir / segment_name(segments[-1])).read_bytes().splitlines()[-1]
    assert decode(last_line).event_type == "backup.completed"
