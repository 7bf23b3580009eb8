"""A real local Apache Kafka for the demo and the tests: one KRaft node, SASL and ACLs.

This module owns the broker's life cycle in a directory (default ``./kaudit-data/kafka``):
it writes the broker configuration (`kaudit.dev.broker_config`), formats KRaft storage
with the SCRAM users, starts one combined broker+controller JVM detached from the caller
(`kaudit.dev.process`), waits until it answers a MetadataRequest (`kaudit.dev.probe`),
records what a client needs in ``state.json`` (`kaudit.dev.info`), and stops exactly the
process it started. The jars come from `kaudit.dev.dist`; the users and their logins are
`kaudit.dev.users`. `ready_broker` and `started_broker` are the two halves of "use the
broker running there, or start one" for the tests and benchmarks.

The names of those modules that clients of the local Kafka use are handed on from here
(see ``__all__``), so ``from kaudit.dev.kafka import KafkaInfo, LocalKafka`` is enough.

Typical use::

    info = LocalKafka("kaudit-data/kafka").start()
    producer = confluent_kafka.Producer(info.client_config("alice"))
    run_kafka_tool("org.apache.kafka.tools.AclCommand", [...], dist=info.dist)
    LocalKafka("kaudit-data/kafka").stop()
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from kaudit.dev.broker_auditor import BrokerAuditorPlugin
from kaudit.dev.broker_config import (
    BROKER_LOG4J2,
    format_storage,
    new_cluster_id,
    server_properties,
)
from kaudit.dev.dist import (
    KAFKA_VERSION,
    Progress,
    ensure_kafka,
    require_java,
    run_kafka_tool,
)
from kaudit.dev.errors import (
    KafkaAlreadyRunningError,
    KafkaStartError,
    LocalKafkaError,
)
from kaudit.dev.files import KafkaDist, file_lock, write_atomic
from kaudit.dev.info import KafkaInfo, KafkaPorts
from kaudit.dev.ports import port_free
from kaudit.dev.probe import ProbeError, probe_metadata
from kaudit.dev.process import KILL_WAIT_S, is_broker_of, log_tail, spawn_broker, terminate
from kaudit.dev.users import (
    REAUTH_SCRAM_SHA_256_MS,
    SASL_MECHANISMS,
    SUPER_USERS,
    USERS,
    KafkaUser,
    jaas_config,
    write_client_properties,
)

__all__ = [
    "DEFAULT_DIR",
    "KAFKA_VERSION",
    "READY_TIMEOUT_S",
    "REAUTH_SCRAM_SHA_256_MS",
    "SASL_MECHANISMS",
    "STOP_TIMEOUT_S",
    "SUPER_USERS",
    "USERS",
    "KafkaDist",
    "KafkaInfo",
    "KafkaPorts",
    "KafkaUser",
    "LocalKafka",
    "ensure_kafka",
    "jaas_config",
    "ready_broker",
    "run_kafka_tool",
    "started_broker",
    "write_client_properties",
]

DEFAULT_DIR = Path("kaudit-data/kafka")
DEFAULT_HOST = "127.0.0.1"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
_PORT_ATTEMPTS = 3
# What the JVM's bind error says (java.net.BindException) when a port is taken.
_BIND_FAILURE = "Address already in use"


class _PortTakenError(KafkaStartError):
    """The broker exited because one of its listener ports was taken."""


class LocalKafka:
    """The local broker whose files live in `dir`; `start`, `status`, `stop`.

    Instances hold no process state of their own: everything is in ``dir/state.json``,
    so a broker started by one process (the CLI) can be queried and stopped by another.
    """

    def __init__(
        self,
        dir: str | os.PathLike[str] = DEFAULT_DIR,
        *,
        kafka_version: str = KAFKA_VERSION,
        host: str = DEFAULT_HOST,
        port_base: int | None = None,
        cache_dir: Path | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
        progress: Progress | None = None,
        broker_auditor: BrokerAuditorPlugin | None = None,
    ) -> None:
        self.dir = Path(dir).expanduser().resolve()
        self.broker_auditor = broker_auditor
        self.kafka_version = kafka_version
        self.host = host
        self.port_base = port_base
        self.cache_dir = cache_dir
        self.ready_timeout = ready_timeout
        self._progress = progress

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def config_file(self) -> Path:
        return self.dir / "server.properties"

    @property
    def log_file(self) -> Path:
        return self.dir / "kafka.log"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def _log4j_file(self) -> Path:
        return self.dir / "log4j2.properties"

    def status(self, *, probe: bool = True) -> KafkaInfo | None:
        """The recorded broker, with `running` (and `ready` if `probe`) checked live.

        None if this directory never had a broker.
        """
        info = self._read_state()
        if info is None:
            return None
        running = info.pid is not None and is_broker_of(info.pid, self.dir, self.config_file)
        ready = running and probe and self._answers(info)
        return replace(info, running=running, ready=ready, pid=info.pid if running else None)

    def start(self, *, fresh: bool = False) -> KafkaInfo:
        """Start the broker and wait until it serves clients.

        Storage from an earlier run in `dir` is kept (topics, ACLs, SCRAM users and the
        ports it was formatted with) unless `fresh` is set or there is none. Raises
        `KafkaAlreadyRunningError` if this directory's broker is running,
        `MissingToolError` without java/mvn, `KafkaStartError` if it does not get ready.
        """
        java = require_java()
        self.dir.mkdir(parents=True, exist_ok=True)
        attempt = 1
        while True:
            with file_lock(self.dir / ".lock"):
                current = self.status(probe=False)
                if current is not None and current.running:
                    raise KafkaAlreadyRunningError(self.status() or current)
                dist = ensure_kafka(
                    self.kafka_version, cache_dir=self.cache_dir, progress=self._progress
                )
                previous = None if fresh else self._reusable_state()
                proc, info, started = self._launch(java, dist, previous)
            # The lock is not held while waiting, so `stop` from another shell can end a
            # broker that hangs during start-up (its pid is already in state.json).
            try:
                return self._await_ready(proc, info, started)
            except _PortTakenError:
                # Free ports are chosen before the JVM binds them, and another process
                # can take one in between. Only ports chosen here can be chosen again.
                if previous is not None or self.port_base is not None:
                    raise
                if attempt >= _PORT_ATTEMPTS:
                    raise
                if self._progress is not None:
                    self._progress("A chosen port was taken meanwhile; retrying on other ports")
                attempt += 1
                # The failed attempt formatted storage with the taken controller port.
                fresh = True

    def _launch(
        self, java: str, dist: KafkaDist, previous: KafkaInfo | None
    ) -> tuple[subprocess.Popen[bytes], KafkaInfo, float]:
        if previous is not None:
            ports, cluster_id = previous.ports, previous.cluster_id
            for port in ports.as_tuple():
                if not port_free(self.host, port):
                    raise LocalKafkaError(
                        f"port {port} on {self.host}, which the storage in {self.dir} was "
                        "formatted with, is in use; start with --fresh to re-create the "
                        "broker on new ports"
                    )
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            ports = self._choose_ports()
            cluster_id = new_cluster_id()
        plugin = self.broker_auditor
        extra = plugin.properties(self.host, ports) if plugin is not None else None
        write_atomic(
            self.config_file, server_properties(self.dir, self.host, ports, self.data_dir, extra)
        )
        write_atomic(self._log4j_file, BROKER_LOG4J2)
        if previous is None:
            format_storage(dist, self.config_file, self.data_dir, cluster_id)
        started = time.monotonic()
        jars = (plugin.jar,) if plugin is not None else ()
        proc = spawn_broker(
            java, dist, self.dir, self.config_file, self._log4j_file, self.log_file, jars
        )
        info = KafkaInfo(
            dir=self.dir,
            kafka_version=self.kafka_version,
            cluster_id=cluster_id,
            host=self.host,
            ports=ports,
            lib_dir=dist.lib_dir,
            log_file=self.log_file,
            config_file=self.config_file,
            pid=proc.pid,
            running=True,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self._write_state(info)
        return proc, info, started

    def _await_ready(
        self, proc: subprocess.Popen[bytes], info: KafkaInfo, started: float
    ) -> KafkaInfo:
        try:
            self._wait_ready(proc, info, started)
        except BaseException:
            # It never became usable: do not leave a half-started JVM behind.
            terminate(proc.pid, KILL_WAIT_S)
            self._write_state(replace(info, pid=None, running=False))
            raise
        info = replace(info, ready=True, ready_seconds=round(time.monotonic() - started, 2))
        self._write_state(info)
        return info

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop the broker this directory started (SIGTERM, SIGKILL after `timeout`).

        Returns False when nothing of ours was running. A pid from ``state.json`` is
        signalled only if it is still a ``kafka.Kafka`` JVM started for this directory.
        """
        if not self.state_file.exists():
            return False
        with file_lock(self.dir / ".lock"):
            info = self._read_state()
            if info is None or info.pid is None:
                return False
            stopped = False
            if is_broker_of(info.pid, self.dir, self.config_file):
                terminate(info.pid, timeout)
                stopped = True
            self._write_state(replace(info, pid=None, running=False, ready=False))
            return stopped

    def _reusable_state(self) -> KafkaInfo | None:
        previous = self._read_state()
        if previous is None or not (self.data_dir / "meta.properties").is_file():
            return None
        if previous.kafka_version != self.kafka_version:
            raise LocalKafkaError(
                f"{self.dir} holds storage of Kafka {previous.kafka_version}, not "
                f"{self.kafka_version}; start with --fresh to re-create it"
            )
        if previous.host != self.host or (
            self.port_base is not None and self.port_base != previous.ports.plaintext
        ):
            raise LocalKafkaError(
                f"{self.dir} was formatted for {previous.host} ports "
                f"{'/'.join(map(str, previous.ports.as_tuple()))}; start with --fresh to "
                "re-create it elsewhere"
            )
        return previous

    def _choose_ports(self) -> KafkaPorts:
        if self.port_base is not None:
            wanted = (self.port_base, self.port_base + 1, self.port_base + 2)
            busy = [port for port in wanted if not port_free(self.host, port)]
            if busy:
                raise LocalKafkaError(
                    f"port(s) {', '.join(map(str, busy))} on {self.host} are in use; "
                    "choose another --port-base or leave it out to use free ports"
                )
            return KafkaPorts(*wanted)
        # Concrete ports, not 0: with port 0 KRaft would record ":0" as the voter address
        # at format time. Holding all three sockets open at once makes them distinct.
        sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(3)]
        try:
            for sock in sockets:
                sock.bind((self.host, 0))
            plaintext, sasl, controller = (sock.getsockname()[1] for sock in sockets)
        finally:
            for sock in sockets:
                sock.close()
        return KafkaPorts(plaintext=plaintext, sasl_plaintext=sasl, controller=controller)

    def _wait_ready(self, proc: subprocess.Popen[bytes], info: KafkaInfo, started: float) -> None:
        deadline = started + self.ready_timeout
        last = "no answer yet"
        while True:
            code = proc.poll()
            if code is not None:
                if _BIND_FAILURE in log_tail(self.log_file, lines=400):
                    raise _PortTakenError(
                        f"Kafka could not bind its ports {info.ports.as_tuple()}.\n"
                        f"Last lines of {self.log_file}:\n{log_tail(self.log_file)}"
                    )
                raise KafkaStartError(
                    f"Kafka exited with code {code} before it was ready.\n"
                    f"Last lines of {self.log_file}:\n{log_tail(self.log_file)}"
                )
            try:
                metadata = probe_metadata(self.host, info.ports.plaintext, timeout=2.0)
            except ProbeError as exc:
                last = str(exc)
            else:
                if metadata.cluster_id == info.cluster_id and metadata.brokers:
                    return
                last = f"answered for cluster {metadata.cluster_id!r}, not {info.cluster_id!r}"
            if time.monotonic() >= deadline:
                raise KafkaStartError(
                    f"Kafka was not ready within {self.ready_timeout:.0f} s "
                    f"(PLAINTEXT {info.bootstrap_servers}: {last}).\n"
                    f"Last lines of {self.log_file}:\n{log_tail(self.log_file)}"
                )
            time.sleep(0.1)

    def _answers(self, info: KafkaInfo) -> bool:
        try:
            metadata = probe_metadata(info.host, info.ports.plaintext, timeout=2.0)
        except ProbeError:
            return False
        return metadata.cluster_id == info.cluster_id

    def _read_state(self) -> KafkaInfo | None:
        try:
            text = self.state_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return KafkaInfo.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise LocalKafkaError(
                f"{self.state_file} is not a local Kafka state file ({exc}); if no broker "
                "runs there, remove the directory"
            ) from exc

    def _write_state(self, info: KafkaInfo) -> None:
        data = info.to_json()
        # Whether it runs is a live fact, established by `status`, not stored.
        data.pop("running")
        data.pop("ready")
        write_atomic(self.state_file, json.dumps(data, indent=2) + "\n")


def ready_broker(directory: str | os.PathLike[str] | None) -> KafkaInfo | None:
    """The broker running in `directory` if it serves clients (to use and leave running);
    None without a directory or without such a broker."""
    if not directory:
        return None
    info = LocalKafka(directory).status()
    return info if info is not None and info.ready else None


@contextmanager
def started_broker(
    directory: str | os.PathLike[str], broker_auditor: BrokerAuditorPlugin | None = None
) -> Iterator[KafkaInfo]:
    """A broker started in `directory` (see `LocalKafka.start`), stopped on the way out;
    running kaudit's `broker_auditor` plugin when given."""
    broker = LocalKafka(directory, broker_auditor=broker_auditor)
    info = broker.start()
    try:
        yield info
    finally:
        broker.stop()
