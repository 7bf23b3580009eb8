"""Conditions in the seed's syntax, evaluated against events; a missing field is null."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from kaudit.alerts.conditions import Condition
from kaudit.config.alert_syntax import parse_template, render_template

EVENT: dict[str, Any] = {
    "event_type": "restore.started",
    "actor": {"id": "User:alice", "ip_address": None, "roles": ["ops", "backup"]},
    "context": {"environment": "production", "cluster_id": "prod-us-west-2"},
    "details": {"topics": ["orders", "payments", "users"], "records": 1500},
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("event_type == 'restore.started' and context.environment == 'production'", True),
        ("event_type == 'restore.started' and context.environment == 'staging'", False),
        ("event_type != 'backup.failed'", True),
        ("not (context.environment == 'production')", False),
        ("event_type == 'x' or actor.id == 'User:alice'", True),
        ("details.records > 1000 and details.records <= 1500", True),
        ("'ops' in actor.roles", True),
        ("context.environment in ['production', 'dr']", True),
        ("actor.id =~ 'User:a.*'", True),
        ("event_type =~ 'backup[.].*'", False),
        ("details.topics[1] == 'payments'", True),
        ("details.topics.length == 3", True),
        # Missing fields, and fields below them, are null rather than errors.
        ("details.missing == null", True),
        ("details.missing.deeper == null", True),
        ("actor.ip_address == null", True),
        ("nothing.at.all == 'x'", False),
    ],
)
def test_condition(condition: str, expected: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated mapping fallback on the way
        assert Condition(condition).matches(EVENT) is expected


def test_other_fields_index_a_rule_when_no_event_type_is_named() -> None:
    denied = Condition("action.result == 'denied' and actor.id =~ 'User:.*'")
    assert denied.event_types is None
    assert denied.index == (("action", "result"), {"denied"})
    assert denied.needs_evaluation
    either = Condition("context.environment == 'prod' or context.environment == 'dr'")
    assert either.index == (("context", "environment"), {"prod", "dr"})
    assert not either.needs_evaluation
    assert either.matches({"context": {"environment": "dr"}})
    assert not either.matches({"context": {"environment": {"nested": 1}}})
    assert Condition("actor.id =~ 'User:.*'").index is None


def test_event_types_are_read_from_the_condition() -> None:
    assert Condition("event_type == 'a' and actor.id == 'x'").event_types == {"a"}
    assert Condition("event_type in ['a', 'b']").event_types == {"a", "b"}
    assert Condition("event_type == 'a' or event_type == 'b'").event_types == {"a", "b"}
    assert Condition("event_type == 'a' or actor.id == 'x'").event_types is None
    assert Condition("actor.id == 'x'").event_types is None
    only_type = Condition("event_type in ['a', 'b']")
    assert not only_type.needs_evaluation and only_type.matches({"event_type": "b"})


def test_template_renders_paths_and_escapes_for_the_target() -> None:
    template = parse_template(":warning: *{{ .event_type }}* by {{.actor.id}} {{ .nope.x }}!")
    data = {"event_type": "acl.created", "actor": {"id": "<@U123> & co"}}
    assert render_template(template, data, "slack") == (
        ":warning: *acl.created* by &lt;@U123&gt; &amp; co !"
    )
    assert render_template(template, data, "html") == (
        ":warning: *acl.created* by &lt;@U123&gt; &amp; co !"
    )
    assert render_template(template, data) == ":warning: *acl.created* by <@U123> & co !"
    assert render_template(parse_template("{{ .n }}/{{ .l }}"), {"n": 3, "l": [1]}) == "3/[1]"


COMPILED = [
    "event_type == 'restore.started' and context.environment == 'production'",
    "event_type != 'backup.failed' or actor.id == 'User:alice'",
    "not (context.environment == 'production')",
    "details.records > 1000 and details.records <= 1500",
    "details.records >= 1500.0",
    "details.ratio < 1.5",
    "details.records > 'x'",
    "details.missing > 1",
    "details.missing >= null",
    "'ops' in actor.roles",
    "'op' in actor.id",
    "1500 in details.values_list",
    "actor.id in details",
    "'x' in details.missing",
    "1 in actor.id",
    "context.environment in ['production', 'dr']",
    "actor.id =~ 'User:a.*'",
    "actor.id =~ 'alice'",
    "actor.id =~~ 'alice'",
    "actor.id !~ 'User:b.*'",
    "actor.id !~~ 'bob'",
    "details.missing =~ 'x'",
    "details.missing !~ 'x'",
    "details.records =~ '1'",
    "details.flag == true and details.flag != 1",
    "details.records == 1500 and details.records != '1500'",
    "details.nested.deep == null and not details.nested.deep",
    "actor.roles == ['ops', 'backup']",
    "details.topics == ['orders', 'payments', 'users']",
    "details.empty_list",
    "details.records",
    "not details.zero",
    "details.values_list == ['1500']",
    "details.records > 100",
    "details.flag >= 1",
    "details.missing < 2.5",
    "details.records > 1 and actor.id == 'User:alice'",
    "actor.id =~ 'User:.*' and details.flag == true and 'x' in details.missing",
    "not (details.records > 1 and actor.id == 'User:bob')",
    "(details.records > 1 and actor.id == 'User:bob') or details.zero == 0",
    "not (context.environment in ['production', 'x']) and actor.id != 'User:alice'",
    "details.records != 'x' and not (details.missing in ['x'])",
]
EVENTS: list[dict[str, Any]] = [
    EVENT,
    {**EVENT, "actor": {"id": "User:bob", "roles": []}, "context": {"environment": "dr"}},
    {
        "event_type": "backup.failed",
        "details": {
            "records": "1500",
            "flag": 1,
            "zero": 0.0,
            "nested": {"deep": 1},
            "ratio": 1.25,
            "values_list": [1500.0],
        },
    },
    {
        "event_type": "x",
        "actor": None,
        "details": {
            "records": 2000.5,
            "flag": True,
            "nested": None,
            "empty_list": [],
            "values_list": ["1500"],
        },
    },
    {},
]


@pytest.mark.parametrize("condition", COMPILED)
def test_compiled_conditions_agree_with_rule_engine(condition: str) -> None:
    compiled = Condition(condition)
    assert compiled.compiled, "expected this condition to be compiled"
    for event in EVENTS:
        assert compiled.matches(event) is compiled.slow_matches(event), event


def test_conditions_using_rule_engine_attributes_are_left_to_rule_engine() -> None:
    length = Condition("details.topics.length == 3")
    assert not length.compiled and length.matches(EVENT)
    assert Condition("details.topics[0] == 'orders'").compiled is False
