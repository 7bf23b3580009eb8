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
