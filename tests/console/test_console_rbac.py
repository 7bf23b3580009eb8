"""RBAC in Kpow's policy format: the seed's sample policy, Deny over Allow, globs on ids
and roles, the cluster by id or name, authorized and admin roles, and a policy file's
errors reported with the key's path, the line and what is accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kaudit.config.console import RbacPolicy
from kaudit.console.identity import ConsoleUser
from kaudit.console.rbac import Rbac, Target, load_rbac_file
from kaudit.errors import ConfigError
from support.console import SEED_POLICY

SEED_CLUSTER = Target("Enpl9Kw4QK6pwK0LaRVssQ", "prod", "topic", "tx-events")


def _user(*roles: str) -> ConsoleUser:
    return ConsoleUser("github", "JohnSmithGithub", "e69002ee", "John Smith", roles=roles)


def _rbac(*policies: dict[str, Any], **top: Any) -> Rbac:
    return Rbac(RbacPolicy.model_validate({"policies": list(policies), **top}))


def test_the_seed_policy_denies_topic_create_and_allows_what_it_lists() -> None:
    seed = {**SEED_POLICY, "resource": ["cluster", "Enpl9Kw4QK6pwK0LaRVssQ"]}
    rbac = _rbac(seed)
    create = rbac.decide(_user("dev"), "TOPIC_CREATE", SEED_CLUSTER)
    assert not create.allowed
    assert create.authorization().action == "TOPIC_CREATE"
    assert create.authorization().policies == ()
    for action in ("TOPIC_INSPECT", "TOPIC_EDIT", "TOPIC_PRODUCE"):
        decision = rbac.decide(_user("dev"), action, SEED_CLUSTER)
        assert decision.allowed
        assert decision.authorization().policies == (
            {
                "resource": ["cluster", "Enpl9Kw4QK6pwK0LaRVssQ"],
                "effect": "Allow",
                "actions": ["TOPIC_EDIT", "TOPIC_INSPECT", "TOPIC_PRODUCE"],
                "role": "*",
            },
        )


def test_a_matching_deny_wins_over_any_allow() -> None:
    rbac = _rbac(
        {"resource": ["cluster", "*"], "effect": "Allow", "actions": ["ADMIN"], "role": "*"},
        {"resource": ["cluster", "*", "topic", "tx-*"], "effect": "Deny",
         "actions": ["TOPIC_DELETE"], "roles": ["dev"]},
    )  # fmt: skip
    decision = rbac.decide(_user("dev"), "TOPIC_DELETE", SEED_CLUSTER)
    assert not decision.allowed
    assert [p.effect for p in decision.policies] == ["Deny"]
    assert "denied by a policy" in decision.reason
    other = Target("id", "prod", "topic", "orders")
    assert rbac.decide(_user("dev"), "TOPIC_DELETE", other).allowed
    assert rbac.decide(_user("ops"), "TOPIC_DELETE", SEED_CLUSTER).allowed


def test_globs_match_ids_roles_and_the_cluster_by_id_or_name() -> None:
    rbac = _rbac(
        {"resource": ["cluster", "prod", "topic", "tx-*"], "effect": "Allow",
         "actions": ["TOPIC_PRODUCE"], "role": "team-*"},
    )  # fmt: skip
    assert rbac.decide(_user("team-pay"), "TOPIC_PRODUCE", SEED_CLUSTER).allowed
    assert not rbac.decide(_user("other"), "TOPIC_PRODUCE", SEED_CLUSTER).allowed
    elsewhere = Target("xyz", "staging", "topic", "tx-events")
    assert not rbac.decide(_user("team-pay"), "TOPIC_PRODUCE", elsewhere).allowed
    group = Target("id", "prod", "group", "tx-events")
    assert not rbac.decide(_user("team-pay"), "TOPIC_PRODUCE", group).allowed


def test_users_with_several_roles_combine_them() -> None:
    rbac = _rbac(
        {"resource": ["cluster", "*"], "effect": "Allow", "actions": ["TOPIC_INSPECT"],
         "role": "a"},
        {"resource": ["cluster", "*"], "effect": "Allow", "actions": ["TOPIC_EDIT"], "role": "b"},
    )  # fmt: skip
    both = _user("a", "b")
    assert rbac.decide(both, "TOPIC_INSPECT", SEED_CLUSTER).allowed
    assert rbac.decide(both, "TOPIC_EDIT", SEED_CLUSTER).allowed
    assert not rbac.decide(_user("a"), "TOPIC_EDIT", SEED_CLUSTER).allowed


def test_authorized_and_admin_roles() -> None:
    rbac = _rbac(
        {"resource": ["cluster", "*"], "effect": "Allow", "actions": ["ADMIN"], "role": "*"},
        authorized_roles=["dev", "ops"],
        admin_roles=["ops"],
    )
    assert rbac.authorized(_user("dev")) and not rbac.is_admin(_user("dev"))
    assert rbac.is_admin(_user("ops"))
    assert not rbac.authorized(_user("guest"))
    assert not rbac.decide(_user("guest"), "TOPIC_INSPECT", SEED_CLUSTER).allowed
    assert not rbac.may_see(_user("guest"), SEED_CLUSTER)
    assert rbac.may_see(_user("dev"), SEED_CLUSTER)


def test_unknown_actions_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="accepted: TOPIC_INSPECT"):
        _rbac().decide(_user(), "TOPIC_EXPLODE", SEED_CLUSTER)


def test_policy_file_errors_name_the_key_the_line_and_what_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "rbac.yaml"
    path.write_text(
        "authorized_roles: ['*']\n"
        "policies:\n"
        "  - resource: [cluster, '*']\n"
        "    effect: Allow\n"
        "    actions: [TOPIC_INSPECT, TOPIC_EXPLODE]\n"
        "    role: '*'\n"
        "  - resource: [cluster, '*']\n"
        "    effect: Permit\n"
        "    actions: [TOPIC_EDIT]\n"
        "    roles: [dev]\n"
        "    colour: red\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_rbac_file(path)
    issues = [str(i) for i in caught.value.issues]
    assert caught.value.source == str(path)
    assert issues[0].startswith("policies[0].actions[1]: line 5: must be one of TOPIC_INSPECT,")
    assert issues[0].endswith("got 'TOPIC_EXPLODE'")
    assert issues[1] == "policies[1].effect: line 8: must be one of Allow, Deny, got 'Permit'"
    assert issues[2] == (
        "policies[1].colour: line 11: unknown key 'colour' "
        "(accepted keys: resource, effect, actions, role, roles)"
    )


def test_policy_shape_errors(tmp_path: Path) -> None:
    path = tmp_path / "rbac.yaml"
    path.write_text(
        "policies:\n"
        "  - resource: [schema, '*']\n"
        "    effect: Allow\n"
        "    actions: [TOPIC_EDIT]\n"
        "    role: dev\n"
        "    roles: [ops]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_rbac_file(path)
    (issue,) = caught.value.issues
    assert issue.path == "policies[0]"
    assert "line 2" in issue.message and "set one of role" in issue.message
