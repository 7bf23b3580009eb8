"""The local broker's JVM as a process: started detached, told apart from others, ended.

It owns the broker's command line (`BROKER_JVM_FLAGS`, and a system property naming the
broker's directory so that a pid from ``state.json`` is signalled only while it is still
that JVM), starting it in a session of its own with its output in a log file
(`spawn_broker`), checking that a pid is still our broker (`is_broker_of`), ending it
(`terminate`: SIGTERM, then SIGKILL) and reading the end of its log (`log_tail`).
Brokers this Python process started are kept so they are reaped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from kaudit.dev.files import KafkaDist
from kaudit.errors import LocalKafkaError

KILL_WAIT_S = 10.0

# Two cores and a dev broker: a small heap, one GC thread, C1 only (start-up is mostly
# class loading and interpreted code, which C2 would not pay back), and die on OOM
# rather than limp.
BROKER_JVM_FLAGS: tuple[str, ...] = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
# Put on the broker's command line so `stop` can tell our JVM from any other process
# that later got the same pid.
_OWNER_PROPERTY = "-Dkaudit.local.kafka.dir="

# Brokers this Python process started, kept so they are reaped (no zombie that still
# "exists" to kill(pid, 0)) and so Popen does not warn about a child it forgot.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def spawn_broker(
    java: str,
    dist: KafkaDist,
    directory: Path,
    config_file: Path,
    log4j_file: Path,
    log_file: Path,
    plugin_jars: tuple[Path, ...] = (),
) -> subprocess.Popen[bytes]:
    """Start the broker of `directory` (``kafka.Kafka config_file``), its output in
    `log_file` (the previous one is kept as ``<log_file>.1``), with `plugin_jars` on its
    classpath after Kafka's."""
    if log_file.exists():
        os.replace(log_file, log_file.with_name(log_file.name + ".1"))
    cmd = [
        java,
        *BROKER_JVM_FLAGS,
        f"{_OWNER_PROPERTY}{directory}",
        f"-Dlog4j2.configurationFile={log4j_file}",
        "-cp",
        os.pathsep.join((dist.classpath, *map(str, plugin_jars))),
        "kafka.Kafka",
        str(config_file),
    ]
    with log_file.open("wb") as log:
        # A new session: the broker outlives the CLI and ignores the terminal's
        # Ctrl-C, and its output goes to a file, never to a pipe nobody reads.
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc


def is_broker_of(pid: int, directory: Path, config_file: Path) -> bool:
    """Whether `pid` is alive and is the ``kafka.Kafka`` JVM started for `directory`."""
    # _alive first: it reaps a broker this process started that has exited.
    if not _alive(pid):
        return False
    argv = _cmdline(pid)
    return (
        bool(argv)
        and os.path.basename(argv[0]).startswith("java")
        and "kafka.Kafka" in argv
        and f"{_OWNER_PROPERTY}{directory}" in argv
        and str(config_file) in argv
    )


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM, and SIGKILL if `pid` still lives after `timeout`; `LocalKafkaError` if
    it outlives that too."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, KILL_WAIT_S)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)
    raise LocalKafkaError(f"Kafka (pid {pid}) did not exit after SIGKILL")


def log_tail(path: Path, lines: int = 60) -> str:
    """The last `lines` lines of the log at `path` (or why it cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty)"


def _cmdline(pid: int) -> list[str]:
    proc_file = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        try:
            raw = proc_file.read_bytes()
        except OSError:
            return []
        return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]
    # No /proc (macOS): ask ps. Arguments with spaces get split, which only makes the
    # identity check stricter.
    done = subprocess.run(
        ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return done.stdout.split()


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # A zombie has exited; only its parent's wait() is missing.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
