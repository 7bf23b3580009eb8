"""The console against the real broker: one cluster entry logging in as the broker's
admin over SCRAM (the console's own service credentials), users of every kind of role,
and the policies the RBAC tests and the browser test run under."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kaudit.dev.kafka import KafkaInfo
from support.console import ConsoleHarness, console_config, harness, local_user
from support.kafka import security

POLICIES: list[dict[str, Any]] = [
    # ops administer every cluster; dev hold the seed's policy (INSPECT, EDIT, PRODUCE);
    # viewers only read; no one but ops sees secret-* topics.
    {"resource": ["cluster", "*"], "effect": "Allow", "actions": ["ADMIN"], "role": "ops"},
    {
        "resource": ["cluster", "*"],
        "effect": "Allow",
        "actions": ["TOPIC_INSPECT", "TOPIC_EDIT", "TOPIC_PRODUCE"],
        "role": "dev",
    },
    {
        "resource": ["cluster", "*", "topic", "*"],
        "effect": "Allow",
        "actions": ["TOPIC_INSPECT"],
        "role": "viewer",
    },
    {
        "resource": ["cluster", "local", "topic", "*secret-*"],
        "effect": "Deny",
        "actions": ["TOPIC_INSPECT", "TOPIC_EDIT", "TOPIC_PRODUCE"],
        "roles": ["dev", "viewer"],
    },
]

USERS = [
    local_user("root", "ops", name="Root Admin"),
    local_user("alice", "dev", name="Alice Dev"),
    local_user("vic", "viewer", name="Vic Viewer"),
    local_user("nobody"),
]


def cluster_entry(kafka: KafkaInfo, **extra: Any) -> dict[str, Any]:
    return {
        "name": "local",
        "bootstrap_servers": [kafka.sasl_bootstrap_servers],
        "security": security(kafka.client_config("admin")),
        "timeout_seconds": 20,
        **extra,
    }


@pytest.fixture
def kafka_console(kafka: KafkaInfo, tmp_path: Path) -> Iterator[ConsoleHarness]:
    config = console_config(
        tmp_path,
        clusters=[cluster_entry(kafka)],
        users=USERS,
        rbac={"admin_roles": ["ops"], "policies": POLICIES},
        masking=[{"topics": ["*pay*"], "fields": ["card"], "headers": ["auth*"]}],
    )
    yield from harness(config)
