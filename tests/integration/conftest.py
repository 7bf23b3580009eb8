"""Fixtures for tests against a real Apache Kafka broker (KRaft, SASL, ACLs).

One broker serves the whole test run: it is started once through `kaudit.dev.kafka`
in a temporary directory and stopped when the run ends. To skip the start-up while
iterating, run ``kaudit local-kafka start --dir D`` once and set
``KAUDIT_TEST_KAFKA_DIR=D``: a broker running there is reused and left running.

Tests that use these fixtures are marked ``@pytest.mark.kafka``. They need java (17+)
and, for the first run on a machine, mvn and Maven Central; without them the
`kafka` fixture errors with what to install rather than skipping, so a run that did
not exercise Kafka cannot look green.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from kaudit.dev.kafka import KafkaInfo, ready_broker, run_kafka_tool, started_broker
from support.kafka import KafkaTool
from support.keycloak import Keycloak, running_keycloak

SaslConfig = Callable[..., dict[str, str]]


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaInfo]:
    """The run's broker: connection details, users and the jars of its Java tools."""
    info = ready_broker(os.environ.get("KAUDIT_TEST_KAFKA_DIR"))
    if info is not None:
        yield info
        return
    with started_broker(tmp_path_factory.mktemp("kafka")) as info:
        yield info


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test (or earlier run against a reused broker) uses."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")[:80]
    return f"kaudit-test-{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def admin_config(kafka: KafkaInfo) -> dict[str, str]:
    """confluent-kafka settings for the harness's super user over PLAINTEXT."""
    return kafka.client_config()


@pytest.fixture
def sasl_config(kafka: KafkaInfo) -> SaslConfig:
    """Factory: confluent-kafka settings for a user over SASL_PLAINTEXT.

    ``sasl_config("alice")`` uses SCRAM-SHA-512; ``mechanism=`` picks SCRAM-SHA-256 or
    PLAIN, ``password=`` overrides the user's real one (for failure tests).
    """

    def make(
        user: str, mechanism: str = "SCRAM-SHA-512", password: str | None = None
    ) -> dict[str, str]:
        config = kafka.client_config(user, mechanism)
        if password is not None:
            config["sasl.password"] = password
        return config

    return make


@pytest.fixture
def admin_sasl_config(sasl_config: SaslConfig) -> dict[str, str]:
    """confluent-kafka settings for ``admin`` (super user) over SASL with SCRAM-SHA-512."""
    return sasl_config("admin")


@pytest.fixture
def alice_config(sasl_config: SaslConfig) -> dict[str, str]:
    """confluent-kafka settings for ``alice`` (no ACLs unless a test adds them), SCRAM-SHA-512."""
    return sasl_config("alice")


@pytest.fixture
def bob_config(sasl_config: SaslConfig) -> dict[str, str]:
    """confluent-kafka settings for ``bob`` (no ACLs unless a test adds them), SCRAM-SHA-512."""
    return sasl_config("bob")


@pytest.fixture
def kafka_tool(kafka: KafkaInfo) -> KafkaTool:
    """Run one of Kafka's Java CLI tools from the broker's jars against the broker.

    ``kafka_tool("org.apache.kafka.tools.AclCommand", "--add", ...)`` gets
    ``--bootstrap-server`` (PLAINTEXT, super user) prepended; pass ``bootstrap=False``
    for tools that take no such option, or ``bootstrap=`` with ``sasl_bootstrap_servers``
    and a ``--command-config`` file to act as a SASL user.
    """

    def run(
        main_class: str,
        *args: str,
        bootstrap: str | bool = True,
        check: bool = True,
        input: str | None = None,
    ) -> CompletedProcess[str]:
        prefix: Sequence[str] = ()
        if bootstrap is True:
            prefix = ("--bootstrap-server", kafka.bootstrap_servers)
        elif isinstance(bootstrap, str):
            prefix = ("--bootstrap-server", bootstrap)
        return run_kafka_tool(
            main_class, [*prefix, *args], dist=kafka.dist, check=check, input=input
        )

    return run


@pytest.fixture
def client_properties(kafka: KafkaInfo, tmp_path: Path) -> Callable[..., Path]:
    """Factory: a Java ``--command-config`` file for a user over SASL (SCRAM-SHA-512)."""

    def make(user: str, mechanism: str = "SCRAM-SHA-512") -> Path:
        return kafka.write_client_properties(
            tmp_path / f"{user}-{mechanism}.properties", user, mechanism
        )

    return make


# The gateway in front of this broker (kept in its own module; re-exported as fixtures).
from console_fixtures import kafka_console  # noqa: E402, F401
from gateway_fixtures import gateway, gateway_factory  # noqa: E402, F401


@pytest.fixture(scope="session")
def keycloak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keycloak]:
    """A real OpenID provider (Keycloak in dev mode, test realm), once per run."""
    with running_keycloak(tmp_path_factory.mktemp("keycloak")) as provider:
        yield provider
