"""ACL edits stay within what the policy grants: a delete cannot use filter-only values
(any, match, unknown) to sweep other bindings away, and a prefixed pattern or the name `*`
needs ACL_EDIT on the whole cluster, since it covers topics the policy may deny."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported at run time
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from console_fixtures import cluster_entry

from kaudit.dev.kafka import KafkaInfo
from support.console import ConsoleHarness, console_config, harness, local_user

pytestmark = pytest.mark.kafka
BASE = "/api/v1/clusters/local"

POLICIES = [
    {"resource": ["cluster", "*"], "effect": "Allow", "actions": ["ADMIN"], "role": "ops"},
    {
        "resource": ["cluster", "*", "topic", "team-a-*"],
        "effect": "Allow",
        "actions": ["ACL_EDIT"],
        "role": "dev",
    },
]


@pytest.fixture
def acl_console(kafka: KafkaInfo, tmp_path: Path) -> Iterator[ConsoleHarness]:
    config = console_config(
        tmp_path,
        clusters=[cluster_entry(kafka)],
        users=[local_user("root", "ops"), local_user("alice", "dev")],
        rbac={"admin_roles": ["ops"], "policies": POLICIES},
    )
    yield from harness(config)


def _binding(name: str, pattern: str = "literal", **over: str) -> dict[str, str]:
    return {
        "resource_type": "topic",
        "resource_name": name,
        "pattern_type": pattern,
        "principal": "User:acl-scope",
        "host": "*",
        "operation": "read",
        "permission": "deny",
        **over,
    }


def _principal_bindings(kafka: KafkaInfo) -> int:
    admin = AdminClient(kafka.client_config("admin"))
    wanted = AclBindingFilter(
        ResourceType.TOPIC, None, ResourcePatternType.ANY, "User:acl-scope", None,  # type: ignore[arg-type]
        AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip
    return len(admin.describe_acls(wanted).result(30))


def test_a_delete_cannot_use_filter_values_to_sweep_other_bindings(
    kafka: KafkaInfo, acl_console: ConsoleHarness
) -> None:
    root = acl_console.login("root")
    protecting = _binding("secret-", "prefixed")
    assert root.post(f"{BASE}/acls", json=protecting).status_code == 201
    alice = acl_console.login("alice")
    sweep = _binding("team-a-x", "match", operation="any", permission="any")
    assert alice.post(f"{BASE}/acls/delete", json=sweep).status_code == 403
    refused = root.post(f"{BASE}/acls/delete", json=sweep)
    assert refused.status_code >= 400
    assert "pattern_type 'match' is not accepted" in refused.text
    assert "literal" in refused.text and "prefixed" in refused.text
    for field, value in (("operation", "any"), ("permission", "unknown")):
        literal = _binding("team-a-x", **{field: value})
        answer = alice.post(f"{BASE}/acls/delete", json=literal)
        assert f"{field} {value!r} is not accepted" in answer.text
        assert alice.post(f"{BASE}/acls", json=literal).status_code >= 400
    assert _principal_bindings(kafka) == 1
    assert root.post(f"{BASE}/acls/delete", json=protecting).json()["deleted"] == [protecting]


def test_prefixed_and_star_bindings_need_acl_edit_on_the_cluster(
    kafka: KafkaInfo, acl_console: ConsoleHarness
) -> None:
    alice = acl_console.login("alice")
    literal = _binding("team-a-x")
    assert alice.post(f"{BASE}/acls", json=literal).status_code == 201
    for wide in (_binding("team-a-x", "prefixed"), _binding("*")):
        assert alice.post(f"{BASE}/acls", json=wide).status_code == 403
        assert alice.post(f"{BASE}/acls/delete", json=wide).status_code == 403
    assert _principal_bindings(kafka) == 1
    root = acl_console.login("root")
    prefixed = _binding("team-a-x", "prefixed")
    assert root.post(f"{BASE}/acls", json=prefixed).status_code == 201
    for binding in (literal, prefixed):
        assert root.post(f"{BASE}/acls/delete", json=binding).json()["deleted"] == [binding]
    assert _principal_bindings(kafka) == 0
