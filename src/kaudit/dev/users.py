"""The local broker's SASL users, and how a client logs in as one of them.

It owns who may log in (`USERS`: ``admin``, a super user, and ``alice`` and ``bob``, who
get only what ACLs grant them), which principals are super users (`SUPER_USERS`), the
mechanisms the SASL listener offers (`SASL_MECHANISMS`; SCRAM-SHA-256 sessions expire
after `REAUTH_SCRAM_SHA_256_MS`), and the client side of a login: the
``sasl.jaas.config`` value (`jaas_config`) and a Java client properties file
(`write_client_properties`). The broker's side (JAAS entries, SCRAM credentials written
at format time) is `kaudit.dev.broker_config`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kaudit.dev.files import write_atomic
from kaudit.errors import LocalKafkaError

SASL_MECHANISMS: tuple[str, ...] = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
SCRAM_MECHANISMS: tuple[str, ...] = ("SCRAM-SHA-256", "SCRAM-SHA-512")
REAUTH_SCRAM_SHA_256_MS = 4000
"""Session lifetime of SCRAM-SHA-256 logins on the SASL listener (see server_properties)."""


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


def jaas_config(user: str, password: str, mechanism: str) -> str:
    """The client ``sasl.jaas.config`` value for `user` with `mechanism`."""
    check_mechanism(mechanism)
    module = (
        "org.apache.kafka.common.security.plain.PlainLoginModule"
        if mechanism == "PLAIN"
        else "org.apache.kafka.common.security.scram.ScramLoginModule"
    )
    return f'{module} required username="{jaas_escape(user)}" password="{jaas_escape(password)}";'


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


def check_mechanism(mechanism: str) -> None:
    """`LocalKafkaError` unless the local broker offers `mechanism`."""
    if mechanism not in SASL_MECHANISMS:
        raise LocalKafkaError(
            f"unknown SASL mechanism {mechanism!r}; the local Kafka offers "
            f"{', '.join(SASL_MECHANISMS)}"
        )


def jaas_escape(value: str) -> str:
    """`value` quoted for a JAAS option string (backslashes and double quotes escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')
