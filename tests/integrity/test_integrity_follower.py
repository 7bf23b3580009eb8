"""The local log's checkpointer process: checkpoints at rolls, fsync before a checkpoint
with `fsync: never`, a damaged stored frontier rebuilt from the log, a follower that dies
started again, and no follower left behind when the writer is killed.

Logs are written through `kaudit.open` (the follower is a real child process) and
checked with `verify_log` and the public key.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest

import kaudit
from kaudit.config import Config
from kaudit.integrity import follower as follower_module
from kaudit.integrity.follower import LogFollower
from kaudit.integrity.keys import KeyFiles, KeyRing, generate, load_signer
from kaudit.integrity.store import StoredCheckpoint, checkpoint_files, read_checkpoints
from kaudit.integrity.verify import verify_log
from kaudit.log.segments import SegmentLog, list_segments, segment_name


def _config(data: Path, key: Path, *, fsync: str = "batch", every_events: int = 100_000) -> Config:
    return Config.model_validate(
        {
            "data_dir": str(data),
            "audit": {
                "failure_policy": "fail_closed",
                "log": {"type": "local", "segment_max_mb": 1, "fsync": fsync},
                "integrity": {
                    "checkpoints": {
                        "enabled": True,
                        "key_file": str(key),
                        "every_events": every_events,
                        "every_seconds": 3600,
                    }
                },
            },
        }
    )


def _emit(session: kaudit.AuditSession, start: int, count: int) -> None:
    for i in range(start, start + count):
        session.emit(
            "topic.created", actor="User:alice", resource=f"topic:t{i}", details={"pad": "p" * 600}
        )
    session.flush()


def _stored(log_dir: Path) -> list[StoredCheckpoint]:
    return [c for _, _, c in read_checkpoints(log_dir) if isinstance(c, StoredCheckpoint)]


def _assert_clean(log_dir: Path, keys: KeyFiles, events: int) -> None:
    report = verify_log(log_dir, verifiers=KeyRing([keys.verifier]))
    assert report.ok, [f"{f.kind}: {f.message}" for f in report.findings]
    assert report.events == events and report.covered.verified_through == events - 1


@pytest.fixture
def keys(tmp_path: Path) -> KeyFiles:
    return generate(tmp_path / "keys" / "audit", "kaudit-test")


def test_each_closed_segment_ends_with_a_checkpoint_covering_exactly_it(
    tmp_path: Path, keys: KeyFiles
) -> None:
    with kaudit.open(_config(tmp_path / "data", keys.private)) as session:
        _emit(session, 0, 4000)  # ~3 MB: several 1 MB segments, no checkpoint by count
    log_dir = tmp_path / "data" / "log"
    bases = list_segments(log_dir)
    assert len(bases) >= 3
    stored = _stored(log_dir)
    for base, following in itertools.pairwise(bases):
        size = (log_dir / segment_name(base)).stat().st_size
        assert any(
            c.segment == base and c.offset == size and c.size == following for c in stored
        ), f"no checkpoint at the end of segment {base}"
    _assert_clean(log_dir, keys, 4000)


def test_with_fsync_never_covered_segments_are_fsynced_before_the_checkpoint(
    tmp_path: Path, keys: KeyFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source"
    with kaudit.open(Config.model_validate({"data_dir": str(source)})) as session:
        _emit(session, 0, 300)
    lines = b"".join(
        (source / "log" / segment_name(b)).read_bytes() for b in list_segments(source / "log")
    ).splitlines(keepends=True)
    log_dir = tmp_path / "log"
    log = SegmentLog(log_dir, segment_max_bytes=100_000, fsync="never")
    follower = LogFollower(
        log_dir,
        0,
        load_signer(keys.private),
        "kaudit/t",
        every_events=10,
        every_seconds=3600,
        fsync_segments=True,
    )
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:  # records what is synced, then really syncs it
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    log.append(lines)
    follower.follow(log.next_sequence, log.position)
    segments = [str(log_dir / segment_name(b)) for b in list_segments(log_dir)]
    assert len(segments) >= 2
    checkpoint_writes = [i for i, path in enumerate(synced) if ".checkpoints." in path]
    for path in segments:
        # Synced before the checkpoint that covers it (the one written at its end).
        assert path in synced, f"{path} never synced: {synced}"
        assert synced.index(path) < max(checkpoint_writes)
    assert synced.index(segments[-1]) < checkpoint_writes[-1]
    log.close()
    _assert_clean(log_dir, keys, 300)


def test_a_damaged_stored_frontier_is_rebuilt_from_the_log(tmp_path: Path, keys: KeyFiles) -> None:
    config = _config(tmp_path / "data", keys.private, every_events=500)
    with kaudit.open(config) as session:
        _emit(session, 0, 1500)
    log_dir = tmp_path / "data" / "log"
    last_file = checkpoint_files(log_dir)[-1]
    records = last_file.read_bytes().splitlines(keepends=True)
    record = orjson.loads(records[-1])
    assert record["frontier"]
    record["frontier"][0] = "00" * 32  # a frontier that no longer folds to the signed root
    records[-1] = orjson.dumps(record) + b"\n"
    last_file.write_bytes(b"".join(records))
    with kaudit.open(config) as session:
        _emit(session, 1500, 700)
    # Built on the damaged frontier, the new checkpoints' roots would not match the log.
    _assert_clean(log_dir, keys, 2200)


def test_a_follower_that_dies_is_started_again_and_the_log_verifies_clean(
    tmp_path: Path, keys: KeyFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follower_module, "_RESTART_INTERVAL_S", 0.0)
    with kaudit.open(_config(tmp_path / "data", keys.private, every_events=200)) as session:
        _emit(session, 0, 500)
        handle = session.recorder.sealer.checkpoints.follower  # type: ignore[union-attr]
        first = handle._proc
        assert first is not None
        first.kill()
        first.wait()
        _emit(session, 500, 500)
        session.recorder.sealer.tick()  # type: ignore[union-attr]
        _emit(session, 1000, 500)
        assert handle._proc is not None and handle._proc.pid != first.pid
    _assert_clean(tmp_path / "data" / "log", keys, 1500)
    assert _stored(tmp_path / "data" / "log")[-1].size == 1500


def test_kill_9_of_the_writer_leaves_no_follower_behind(tmp_path: Path, keys: KeyFiles) -> None:
    settings = _config(tmp_path / "data", keys.private).model_dump(mode="json")
    script = textwrap.dedent(
        f"""
        import os, sys, time
        import kaudit
        from kaudit.config import Config
        config = Config.model_validate({settings!r})
        session = kaudit.open(config)
        print(session.recorder.sealer.checkpoints.follower._proc.pid, flush=True)
        for i in range(100):
            session.emit("auth.login", actor="User:a", resource="cluster:c", durable=True)
        print("emitted", flush=True)
        time.sleep(60)
        """
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    pid = int(writer.stdout.readline())
    assert writer.stdout.readline().strip() == "emitted"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid), "the follower outlived its writer"
    with kaudit.open(_config(tmp_path / "data", keys.private)) as session:
        _emit(session, 100, 50)
    _assert_clean(tmp_path / "data" / "log", keys, 150)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.split(") ", 1)[1][0] != "Z"


def test_the_writer_never_waits_for_a_follower_that_is_behind(
    tmp_path: Path, keys: KeyFiles
) -> None:
    with kaudit.open(_config(tmp_path / "data", keys.private, every_events=500)) as session:
        handle = session.recorder.sealer.checkpoints.follower  # type: ignore[union-attr]
        assert handle._proc is not None
        os.kill(handle._proc.pid, signal.SIGSTOP)  # a follower that reads nothing
        try:
            started = time.monotonic()
            # One durable batch per event: far more messages than the pipe holds.
            for i in range(5000):
                session.emit("auth.login", actor=f"User:u{i}", resource="cluster:c", durable=True)
            assert time.monotonic() - started < 60
        finally:
            os.kill(handle._proc.pid, signal.SIGCONT)
    stored = _stored(tmp_path / "data" / "log")
    assert stored[-1].size == 5000  # the final checkpoint caught up with everything
    _assert_clean(tmp_path / "data" / "log", keys, 5000)
