"""What a client or a test needs to use one local broker: `KafkaInfo` and its `KafkaPorts`.

It owns the connection details of a broker started by `kaudit.dev.kafka.LocalKafka`: its
directory, cluster id, the three listener ports and the addresses built from them, the
users and their client settings (librdkafka settings, a Java ``--command-config`` file),
where its jars are, whether it runs — and their JSON form, which is both the
``state.json`` a broker leaves in its directory and the document
``kaudit local-kafka status`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaudit.dev.files import KafkaDist
from kaudit.dev.users import (
    SASL_MECHANISMS,
    SUPER_USERS,
    USERS,
    KafkaUser,
    check_mechanism,
    write_client_properties,
)
from kaudit.errors import LocalKafkaError


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
        check_mechanism(mechanism)
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
