"""How the local broker is configured: its ``server.properties``, its log4j2 file, and
the KRaft storage formatted with the SCRAM users.

The broker has three listeners on the loopback address:

- ``PLAINTEXT``: unauthenticated, so its principal is ``User:ANONYMOUS``, which is a
  super user (see `SUPER_USERS`). The harness administers the cluster through it; it is
  also the inter-broker and broker-to-controller path.
- ``SASL_PLAINTEXT``: SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN for the users in `USERS`;
  ``admin`` is a super user, ``alice`` and ``bob`` get only what ACLs grant them
  (``allow.everyone.if.no.acl.found=false``). SCRAM-SHA-256 sessions expire after
  `REAUTH_SCRAM_SHA_256_MS`, so those clients re-authenticate (KIP-368). OAUTHBEARER
  too, with Kafka's unsecured-JWS validator (the default one): any unsigned JWT whose
  `sub`, `iat` and `exp` are valid logs in as `User:<sub>`; others get the RFC 7628
  error challenge.
- ``CONTROLLER``: the KRaft quorum.

PLAIN users are JAAS entries in the properties; SCRAM users are credentials in the
metadata log, added when the storage is formatted (`format_storage`).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from pathlib import Path

from kaudit.dev.dist import run_kafka_tool
from kaudit.dev.errors import KafkaStartError, KafkaToolError
from kaudit.dev.files import KafkaDist
from kaudit.dev.info import KafkaPorts
from kaudit.dev.users import (
    REAUTH_SCRAM_SHA_256_MS,
    SASL_MECHANISMS,
    SCRAM_MECHANISMS,
    SUPER_USERS,
    USERS,
    jaas_escape,
)

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


def server_properties(
    directory: Path,
    host: str,
    ports: KafkaPorts,
    data_dir: Path,
    extra: Mapping[str, str] | None = None,
) -> str:
    """The ``server.properties`` of the broker in `directory` listening on `ports`, with
    `extra` properties set over them (a plugin's, e.g. kaudit's broker auditor)."""
    plain_users = " ".join(f'user_{u.name}="{jaas_escape(u.password)}"' for u in USERS)
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
        "log.dirs": str(data_dir),
        "sasl.enabled.mechanisms": ",".join((*SASL_MECHANISMS, "OAUTHBEARER")),
        # Each mechanism needs its own listener-prefixed JAAS entry; an unprefixed
        # sasl.jaas.config is ignored by the broker. SCRAM users live in the
        # metadata log (added at format time); PLAIN users are these user_ entries.
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": scram_jaas,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": scram_jaas,
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
        ),
        # No server callback handler: the broker validates with
        # OAuthBearerUnsecuredValidatorCallbackHandler (unsigned JWTs), enough locally.
        "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": (
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
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
    props.update(extra or {})
    lines = [f"# Written by kaudit local-kafka for {directory}; rewritten on every start."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def format_storage(dist: KafkaDist, config_file: Path, data_dir: Path, cluster_id: str) -> None:
    """Format the KRaft storage of `config_file` as cluster `cluster_id`, with a SCRAM
    credential for every user and SCRAM mechanism."""
    scram = [
        arg
        for user in USERS
        for mechanism in SCRAM_MECHANISMS
        for arg in ("--add-scram", f"{mechanism}=[name={user.name},password={user.password}]")
    ]
    args = ["format", "-c", str(config_file), "-t", cluster_id, "--standalone", *scram]
    try:
        # Its stdout lists the bootstrap records including the salted SCRAM keys, so
        # it is kept out of the terminal and shown only on failure.
        run_kafka_tool("kafka.tools.StorageTool", args, dist=dist)
    except KafkaToolError as exc:
        raise KafkaStartError(
            f"formatting KRaft storage in {data_dir} failed:\n{exc.stderr or exc.stdout}"
        ) from exc


def new_cluster_id() -> str:
    """A KRaft cluster id as Kafka generates it: 22 base64url characters, not led by '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text
