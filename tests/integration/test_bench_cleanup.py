"""Benchmarks leave nothing behind: bench/kafka_log.py removes its data (and a broker
it starts, with the broker's directory, even when starting fails), bench/search.py
removes its log and index when stopped by SIGTERM, and the test suite removes the
tmp_path of every test that passed."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from kaudit.dev.kafka import KafkaInfo
from support.kafka import wait_for

BENCH = Path(__file__).resolve().parents[2] / "bench"
ROOT = BENCH.parent


def _left(directory: Path) -> list[str]:
    """What is in `directory`, but `.hypothesis`: kio imports hypothesis when it is
    installed (the test extra), and hypothesis keeps its directory in the working
    directory; a plain install of kaudit has neither."""
    return sorted(p.name for p in directory.iterdir() if p.name != ".hypothesis")


def _bench_common() -> object:
    spec = importlib.util.spec_from_file_location("kaudit_bench_common", BENCH / "common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_broker_the_benchmarks_start_is_removed_with_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starting fails here at once (no java on PATH): its directory goes all the same."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    common = _bench_common()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with (
            pytest.raises(SystemExit, match="cannot start Kafka"),
            common.local_broker(None),  # type: ignore[attr-defined]
        ):
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert _left(scratch) == []


@pytest.mark.kafka
def test_kafka_log_bench_removes_its_data(kafka: KafkaInfo, tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, str(BENCH / "kafka_log.py"), "--events", "300", "--repeat", "1",
         "--kafka-dir", str(kafka.dir)],
        cwd=tmp_path, env={**os.environ, "TMPDIR": str(scratch)}, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"benchmark": "kafka_log"' in done.stdout.splitlines()[-1]
    assert _left(scratch) == []
    assert _left(tmp_path) == ["tmp"]


def test_search_bench_removes_its_log_and_index_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "search.py"), "--events", "5000000"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def writing() -> bool:
            return any((d / "data" / "log").is_dir() for d in tmp_path.glob("bench-search-*"))

        wait_for(writing, "the benchmark's log", 120)
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM
    assert _left(tmp_path) == []
