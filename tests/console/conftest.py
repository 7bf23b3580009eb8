"""The console without Kafka: login, sessions and the security wall. Its one cluster
points at a closed port, so no test here can reach a broker by mistake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.console import SEED_POLICY, ConsoleHarness, console_config, harness, local_user


@pytest.fixture
def console(tmp_path: Path) -> Iterator[ConsoleHarness]:
    """alice (role dev) and root (role ops, a console admin) under the seed's policy,
    with an OIDC provider, GitHub and an ingest source configured."""
    config = console_config(
        tmp_path,
        users=[local_user("alice", "dev"), local_user("root", "ops")],
        rbac={"admin_roles": ["ops"], "policies": [SEED_POLICY]},
        login_limits={"max_failures_per_user": 3, "max_failures_per_address": 5},
        # Every kind of login and the ingest, so the route walk of the security tests
        # sees every route the console can serve.
        oidc=[{"name": "sso", "issuer": "https://sso.example.com/realms/ops", "client_id": "c"}],
        github={"client_id": "gh-client", "client_secret": "gh-secret"},
        ingest=[{"name": "backup", "token": "backup-token-01234567", "event_types": ["backup.*"]}],
    )
    yield from harness(config)
