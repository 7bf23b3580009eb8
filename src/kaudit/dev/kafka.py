"""A real local Apache Kafka for the demo and the tests: one KRaft node, SASL and ACLs.

This module owns the broker's life cycle in a directory (default ``./kaudit-data/kafka``):
it writes the broker configuration, formats KRaft storage with the SCRAM users, starts
one combined broker+controller JVM detached from the caller, waits until it answers a
MetadataRequest, records what a client needs in ``state.json``, and stops exactly the
process it started. The jars come from `kaudit.dev.dist`.

The broker has three listeners on the loopback address:

- ``PLAINTEXT``: unauthenticated, so its principal is ``User:ANONYMOUS``, which is a
  super user (see `SUPER_USERS`). The harness administers the cluster through it; it is
  also the inter-broker and broker-to-controller path.
- ``SASL_PLAINTEXT``: SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN for the users in `USERS`;
  ``admin`` is a super user, ``alice`` and ``bob`` get only what ACLs grant them
  (``allow.everyone.if.no.acl.found=false``). SCRAM-SHA-256 sessions expire after
  `REAUTH_SCRAM_SHA_256_MS`, so those clients re-authenticate (KIP-368).
- ``CONTROLLER``: the KRaft quorum.

Typical use::

    info = LocalKafka("kaudit-data/kafka").start()
    producer = confluent_kafka.Producer(info.client_config("alice"))
    run_kafka_tool("org.apache.kafka.tools.AclCommand", [...], dist=info.dist)
    LocalKafka("kaudit-data/kafka").stop()
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kaudit.dev.dist import (
    KAFKA_VERSION,
    KafkaDist,
    Progress,
    ensure_kafka,
    file_lock,
    require_java,
    run_kafka_tool,
    write_atomic,
)
from kaudit.dev.errors import (
    KafkaAlreadyRunningError,
    KafkaStartError,
    KafkaToolError,
    LocalKafkaError,
)
from kaudit.dev.probe import ProbeError, probe_metadata

__all__ = [
    "DEFAULT_DIR",
    "KAFKA_VERSION",
    "SASL_MECHANISMS",
    "SUPER_USERS",
    "USERS",
    "KafkaDist",
    "KafkaInfo",
    "KafkaPorts",
    "KafkaUser",
    "LocalKafka",
    "ensure_kafka",
    "jaas_config",
    "run_kafka_tool",
    "write_client_properties",
]

DEFAULT_DIR = Path("kaudit-data/kafka")
DEFAULT_HOST = "127.0.0.1"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
_KILL_WAIT_S = 10.0
_PORT_ATTEMPTS = 3
# What the JVM's bind error says (java.net.BindException) when a port is taken.
_BIND_FAILURE = "Address already in use"

SASL_MECHANISMS: tuple[str, ...] = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
REAUTH_SCRAM_SHA_256_MS = 4000
"""Session lifetime of SCRAM-SHA-256 logins on the SASL listener (see _server_properties)."""
_SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaUser:
    """A SASL user of the local broker; every user can log in with every mechanism."""

    name: str
    password: str
    super_user: bool = False
    mechanisms: tuple[str, ...] = SASL_MECHANISMS

    @property
    def principal(self) -> str:
        return f"User:{self.name}"


USERS: tuple[KafkaUser, ...] = (
    KafkaUser("admin", "admin-secret", super_user=True),
    KafkaUser("alice", "alice-secret"),
    KafkaUser("bob", "bob-secret"),
)

# User:ANONYMOUS must be a super user: the broker reaches the controller over the
# PLAINTEXT controller listener, the controller requires CLUSTER_ACTION from that
# principal, and before the ACLs are loaded StandardAuthorizer refuses every principal
# that is not a super user. The price is that any PLAINTEXT client is a super user too,
# which is why the listeners bind to the loopback address only and ACL tests use SASL.
SUPER_USERS: tuple[str, ...] = (
    "User:ANONYMOUS",
    *(user.principal for user in USERS if user.super_user),
)

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

BROKER_LOG4J2 = """\
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


@dataclass(frozen=True)
class KafkaPorts:
    """The three listener ports of the local broker."""

    plaintext: int
    sasl_plaintext: int
    controller: int

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.plaintext, self.sasl_plaintext, self.controller)


@dataclass(frozen=True)
class KafkaInfo:
    """Everything a client or a test needs to use one local broker (the `status` JSON)."""

    dir: Path
    kafka_version: str
    cluster_id: str
    host: str
    ports: KafkaPorts
    lib_dir: Path
    log_file: Path
    config_file: Path
    pid: int | None
    running: bool = False
    ready: bool = False
    started_at: str | None = None
    ready_seconds: float | None = None
    users: tuple[KafkaUser, ...] = field(default=USERS)

    @property
    def bootstrap_servers(self) -> str:
        """PLAINTEXT ``host:port``: the harness's super-user path."""
        return f"{self.host}:{self.ports.plaintext}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        """SASL_PLAINTEXT ``host:port`` for the users in `users`."""
        return f"{self.host}:{self.ports.sasl_plaintext}"

    @property
    def controller_bootstrap_servers(self) -> str:
        return f"{self.host}:{self.ports.controller}"

    @property
    def dist(self) -> KafkaDist:
        """The cached Kafka this broker runs, e.g. for `run_kafka_tool(..., dist=info.dist)`."""
        return KafkaDist(version=self.kafka_version, home=self.lib_dir.parent)

    @property
    def kafka_classpath(self) -> str:
        """``java -cp`` value for Kafka's own tools (``org.apache.kafka.tools.TopicCommand``)."""
        return f"{self.lib_dir}/*"

    def user(self, name: str) -> KafkaUser:
        for user in self.users:
            if user.name == name:
                return user
        known = ", ".join(user.name for user in self.users)
        raise LocalKafkaError(f"no user {name!r} on the local Kafka (users: {known})")

    def client_config(
        self, user: str | None = None, mechanism: str = "SCRAM-SHA-512"
    ) -> dict[str, str]:
        """librdkafka/confluent-kafka settings: PLAINTEXT super user if `user` is None."""
        if user is None:
            return {"bootstrap.servers": self.bootstrap_servers, "security.protocol": "PLAINTEXT"}
        account = self.user(user)
        _check_mechanism(mechanism)
        return {
            "bootstrap.servers": self.sasl_bootstrap_servers,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism,
            "sasl.username": account.name,
            "sasl.password": account.password,
        }

    def write_client_properties(
        self, path: Path, user: str, mechanism: str = "SCRAM-SHA-512"
    ) -> Path:
        """A Java client properties file (``--command-config``) for `user` over SASL."""
        account = self.user(user)
        return write_client_properties(path, account.name, account.password, mechanism)

    def to_json(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "ready": self.ready,
            "pid": self.pid,
            "dir": str(self.dir),
            "kafka_version": self.kafka_version,
            "cluster_id": self.cluster_id,
            "host": self.host,
            "ports": {
                "plaintext": self.ports.plaintext,
                "sasl_plaintext": self.ports.sasl_plaintext,
                "controller": self.ports.controller,
            },
            "bootstrap_servers": self.bootstrap_servers,
            "sasl_bootstrap_servers": self.sasl_bootstrap_servers,
            "controller_bootstrap_servers": self.controller_bootstrap_servers,
            "sasl_mechanisms": list(SASL_MECHANISMS),
            "users": {
                user.name: {
                    "password": user.password,
                    "mechanisms": list(user.mechanisms),
                    "super_user": user.super_user,
                }
                for user in self.users
            },
            "super_users": list(SUPER_USERS),
            "kafka_classpath": self.kafka_classpath,
            "tools_log4j_config": str(self.dist.tools_log4j_config),
            "log_file": str(self.log_file),
            "config_file": str(self.config_file),
            "started_at": self.started_at,
            "ready_seconds": self.ready_seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KafkaInfo:
        ports = data["ports"]
        return cls(
            dir=Path(data["dir"]),
            kafka_version=str(data["kafka_version"]),
            cluster_id=str(data["cluster_id"]),
            host=str(data["host"]),
            ports=KafkaPorts(
                plaintext=int(ports["plaintext"]),
                sasl_plaintext=int(ports["sasl_plaintext"]),
                controller=int(ports["controller"]),
            ),
            lib_dir=Path(data["kafka_classpath"]).parent,
            log_file=Path(data["log_file"]),
            config_file=Path(data["config_file"]),
            pid=None if data.get("pid") is None else int(data["pid"]),
            running=bool(data.get("running", False)),
            ready=bool(data.get("ready", False)),
            started_at=data.get("started_at"),
            ready_seconds=data.get("ready_seconds"),
            users=tuple(
                KafkaUser(
                    name,
                    str(entry["password"]),
                    super_user=bool(entry.get("super_user", False)),
                    mechanisms=tuple(entry.get("mechanisms", SASL_MECHANISMS)),
                )
                for name, entry in data["users"].items()
            ),
        )


class _PortTakenError(KafkaStartError):
    """The broker exited because one of its listener ports was taken."""


# Brokers this Python process started, kept so they are reaped (no zombie that still
# "exists" to kill(pid, 0)) and so Popen does not warn about a child it forgot.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


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
    ) -> None:
        self.dir = Path(dir).expanduser().resolve()
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
        running = info.pid is not None and self._is_our_broker(info.pid)
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
                if not _port_free(self.host, port):
                    raise LocalKafkaError(
                        f"port {port} on {self.host}, which the storage in {self.dir} was "
                        "formatted with, is in use; start with --fresh to re-create the "
                        "broker on new ports"
                    )
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            ports = self._choose_ports()
            cluster_id = new_cluster_id()
        write_atomic(self.config_file, self._server_properties(ports))
        write_atomic(self._log4j_file, BROKER_LOG4J2)
        if previous is None:
            self._format(dist, cluster_id)
        started = time.monotonic()
        proc = self._spawn(java, dist)
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
            _terminate(proc.pid, _KILL_WAIT_S)
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
            if self._is_our_broker(info.pid):
                _terminate(info.pid, timeout)
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
            busy = [port for port in wanted if not _port_free(self.host, port)]
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

    def _server_properties(self, ports: KafkaPorts) -> str:
        host = self.host
        plain_users = " ".join(f'user_{u.name}="{_jaas_escape(u.password)}"' for u in USERS)
        scram_jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{host}:{ports.controller}",
            "controller.listener.names": "CONTROLLER",
            "listeners": (
                f"PLAINTEXT://{host}:{ports.plaintext},"
                f"SASL_PLAINTEXT://{host}:{ports.sasl_plaintext},"
                f"CONTROLLER://{host}:{ports.controller}"
            ),
            "advertised.listeners": (
                f"PLAINTEXT://{host}:{ports.plaintext},"
                f"SASL_PLAINTEXT://{host}:{ports.sasl_plaintext},"
                f"CONTROLLER://{host}:{ports.controller}"
            ),
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": (
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
            ),
            "log.dirs": str(self.data_dir),
            "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
            # Each mechanism needs its own listener-prefixed JAAS entry; an unprefixed
            # sasl.jaas.config is ignored by the broker. SCRAM users live in the
            # metadata log (added at format time); PLAIN users are these user_ entries.
            "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": scram_jaas,
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": scram_jaas,
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
            ),
            # SCRAM-SHA-256 sessions last at most REAUTH_SCRAM_SHA_256_MS (KIP-368): clients
            # logged in that way re-authenticate on the open connection, so the gateway's
            # handling of re-authentication is tested against the real thing. The other
            # mechanisms keep sessions for the connection's life.
            "listener.name.sasl_plaintext.scram-sha-256.connections.max.reauth.ms": str(
                REAUTH_SCRAM_SHA_256_MS
            ),
            # Delegation tokens are enabled (a master key is all they need), so creating
            # them can be audited. A fixed key: this broker is local, and its users'
            # passwords are fixed too.
            "delegation.token.secret.key": "kaudit-local-kafka-delegation-token-key",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": ";".join(SUPER_USERS),
            "allow.everyone.if.no.acl.found": "false",
            # One node: internal topics with replication factor 1 and one partition
            # (defaults are RF 3 and 50 partitions, which a single node cannot host or
            # would spend start-up time creating).
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "share.coordinator.state.topic.num.partitions": "1",
            # Consumers in tests join at once instead of waiting 3 s for more members.
            "group.initial.rebalance.delay.ms": "0",
            # Fewer threads for two cores; the log cleaner would otherwise allocate a
            # 128 MiB dedupe buffer on a 512 MiB heap.
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        }
        lines = [f"# Written by kaudit local-kafka for {self.dir}; rewritten on every start."]
        lines += [f"{key}={value}" for key, value in props.items()]
        return "\n".join(lines) + "\n"

    def _format(self, dist: KafkaDist, cluster_id: str) -> None:
        scram = [
            arg
            for user in USERS
            for mechanism in _SCRAM_MECHANISMS
            for arg in ("--add-scram", f"{mechanism}=[name={user.name},password={user.password}]")
        ]
        args = ["format", "-c", str(self.config_file), "-t", cluster_id, "--standalone", *scram]
        try:
            # Its stdout lists the bootstrap records including the salted SCRAM keys, so
            # it is kept out of the terminal and shown only on failure.
            run_kafka_tool("kafka.tools.StorageTool", args, dist=dist)
        except KafkaToolError as exc:
            raise KafkaStartError(
                f"formatting KRaft storage in {self.data_dir} failed:\n{exc.stderr or exc.stdout}"
            ) from exc

    def _spawn(self, java: str, dist: KafkaDist) -> subprocess.Popen[bytes]:
        if self.log_file.exists():
            os.replace(self.log_file, self.log_file.with_name(self.log_file.name + ".1"))
        cmd = [
            java,
            *BROKER_JVM_FLAGS,
            f"{_OWNER_PROPERTY}{self.dir}",
            f"-Dlog4j2.configurationFile={self._log4j_file}",
            "-cp",
            dist.classpath,
            "kafka.Kafka",
            str(self.config_file),
        ]
        with self.log_file.open("wb") as log:
            # A new session: the broker outlives the CLI and ignores the terminal's
            # Ctrl-C, and its output goes to a file, never to a pipe nobody reads.
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,
                close_fds=True,
            )
        _CHILDREN[proc.pid] = proc
        return proc

    def _wait_ready(self, proc: subprocess.Popen[bytes], info: KafkaInfo, started: float) -> None:
        deadline = started + self.ready_timeout
        last = "no answer yet"
        while True:
            code = proc.poll()
            if code is not None:
                if _BIND_FAILURE in _log_tail(self.log_file, lines=400):
                    raise _PortTakenError(
                        f"Kafka could not bind its ports {info.ports.as_tuple()}.\n"
                        f"Last lines of {self.log_file}:\n{_log_tail(self.log_file)}"
                    )
                raise KafkaStartError(
                    f"Kafka exited with code {code} before it was ready.\n"
                    f"Last lines of {self.log_file}:\n{_log_tail(self.log_file)}"
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
                    f"Last lines of {self.log_file}:\n{_log_tail(self.log_file)}"
                )
            time.sleep(0.1)

    def _answers(self, info: KafkaInfo) -> bool:
        try:
            metadata = probe_metadata(info.host, info.ports.plaintext, timeout=2.0)
        except ProbeError:
            return False
        return metadata.cluster_id == info.cluster_id

    def _is_our_broker(self, pid: int) -> bool:
        # _alive first: it reaps a broker this process started that has exited.
        if not _alive(pid):
            return False
        argv = _cmdline(pid)
        return (
            bool(argv)
            and os.path.basename(argv[0]).startswith("java")
            and "kafka.Kafka" in argv
            and f"{_OWNER_PROPERTY}{self.dir}" in argv
            and str(self.config_file) in argv
        )

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


def new_cluster_id() -> str:
    """A KRaft cluster id as Kafka generates it: 22 base64url characters, not led by '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def jaas_config(user: str, password: str, mechanism: str) -> str:
    """The client ``sasl.jaas.config`` value for `user` with `mechanism`."""
    _check_mechanism(mechanism)
    module = (
        "org.apache.kafka.common.security.plain.PlainLoginModule"
        if mechanism == "PLAIN"
        else "org.apache.kafka.common.security.scram.ScramLoginModule"
    )
    return f'{module} required username="{_jaas_escape(user)}" password="{_jaas_escape(password)}";'


def write_client_properties(
    path: str | os.PathLike[str], user: str, password: str, mechanism: str = "SCRAM-SHA-512"
) -> Path:
    """Write a Java client properties file for SASL_PLAINTEXT (e.g. a tool's --command-config).

    The file holds a password, so it is readable by its owner only.
    """
    target = Path(path)
    text = (
        "security.protocol=SASL_PLAINTEXT\n"
        f"sasl.mechanism={mechanism}\n"
        # Java properties treat a backslash as an escape, so double it.
        f"sasl.jaas.config={jaas_config(user, password, mechanism).replace(chr(92), chr(92) * 2)}\n"
    )
    write_atomic(target, text, mode=0o600)
    return target


def _check_mechanism(mechanism: str) -> None:
    if mechanism not in SASL_MECHANISMS:
        raise LocalKafkaError(
            f"unknown SASL mechanism {mechanism!r}; the local Kafka offers "
            f"{', '.join(SASL_MECHANISMS)}"
        )


def _jaas_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the JVM does for server sockets, so a port in TIME_WAIT counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


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


def _terminate(pid: int, timeout: float) -> None:
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, _KILL_WAIT_S)):
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


def _log_tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty)"
