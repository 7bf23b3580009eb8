"""The engine's shortcuts fire exactly what judging every rule on every event fires:
rules looked up by event type or another field, conditions compiled to closures, and
lines decoded into only the fields the rules read (kaudit.alerts.projection)."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from kaudit.alerts.compiled import path_getter
from kaudit.alerts.projection import Projection
from kaudit.alerts.rules import Evaluator
from kaudit.alerts.ruleset import CompiledRule, compile_rules
from kaudit.alerts.state import AlertRecord
from kaudit.config import load_config, load_config_text

SEED = Path(__file__).parents[1] / "fixtures" / "seed" / "alerts.yaml"
ENV = {"SLACK_WEBHOOK": "https://hooks.slack.com/services/T0/B0/x", "PAGERDUTY_KEY": "k" * 32}

MORE = """
audit:
  alerts:
    - {name: typed-group, condition: "event_type == 'auth.login' and actor.id =~ 'User:svc-.*'",
       threshold: 3, window: 1m, group_by: actor.id}
    - {name: two-types, condition: "event_type in ['topic.created', 'topic.deleted'] and
         context.environment == 'production'", threshold: 4, window: 2m}
    - {name: not-clients, condition: "event_type == 'records.produced' and
         not (actor.client_id in ['app-1', 'app-2'])", threshold: 5, window: 1m,
       group_by: [actor.client_id, context.environment]}
    - {name: denied-prod, condition: "action.result == 'denied' and
         context.environment == 'production'", threshold: 3, window: 1m, group_by: actor}
    - {name: staging, condition: "context.environment == 'staging'"}
    - {name: admins, condition: "actor.roles == ['admin'] and resource.type in ['acl', 'cluster']"}
    - {name: svc-errors, condition: "actor.id =~ 'User:svc-1.*' and action.result != 'success'",
       threshold: 4, window: 1m}
    - {name: big, condition: "details.partitions > 100 or details.partitions == '7'"}
    - {name: either, condition: "event_type == 'x.one' or actor.ip_address == '10.0.0.1'",
       threshold: 6, window: 30s, group_by: details}
    - {name: five, condition: "event_type == '5' and details.partitions == 6"}
    - {name: nested, condition: "details.meta.owner == 'ops' and 'ops' in actor.roles"}
  builtin_alerts:
    auth_failures: {enabled: true, threshold: 3, window: 1m}
    access_denied_burst: {enabled: true, threshold: 4, window: 1m}
    off_hours_changes: {enabled: true, hours: "09:00-17:00", days: [mon, tue]}
    audit_degraded: {enabled: true}
    gateway_bypass: {enabled: true}
"""

TYPES = [
    "backup.failed", "access.denied", "restore.started", "auth.login", "auth.failed",
    "topic.created", "topic.deleted", "records.produced", "acl.created", "acl.deleted",
    "auth.credentials_changed", "audit.degraded", "access.bypassed_gateway", "x.one",
    "alert.fired", "other", 5, "5", None,
]  # fmt: skip
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC).timestamp()  # a Monday, before 09:00


def _rules() -> list[CompiledRule]:
    seed = load_config(SEED, env=ENV)
    more = load_config_text(MORE)
    return compile_rules([*seed.audit.alerts, *more.audit.alerts], more.audit.builtin_alerts)


def _events(n: int) -> list[dict[str, Any]]:
    """Events that match and miss each rule, with odd shapes (missing parts, values of
    other types where objects are expected)."""
    rng = random.Random(21)
    pick = rng.choice
    events = []
    for i in range(n):
        event: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(T0 + i * 0.7, UTC)
            .isoformat()
            .replace("+00:00", "Z"),
            "event_type": pick(TYPES),
            "event_id": f"evt_{i}",
            "actor": pick(
                [
                    {
                        "id": f"User:svc-{i % 13}",
                        "ip_address": pick(["10.0.0.1", "10.0.0.2"]),
                        "client_id": f"app-{i % 4}",
                        "roles": pick([["ops"], ["admin"], []]),
                    },
                    {"id": f"User:person-{i % 3}", "roles": ["admin"], "client_id": None},
                    "User:plain",
                    None,
                    [1, 2],
                ]
            ),
            "resource": pick([{"type": "acl", "id": "t1"}, {"type": "topic"}, 5]),
            "action": pick([{"result": r} for r in ("success", "denied", "failure")] + [{}]),
            "context": pick([{"environment": e} for e in ("production", "staging")] + ["x"]),
            "details": pick(
                [
                    {"partitions": 101},
                    {"partitions": 6},
                    {"partitions": "7"},
                    {"partitions": 1e9},
                    {"meta": {"owner": "ops"}},
                    {"meta": "ops"},
                    None,
                    True,
                ]
            ),
            "integrity": {"sequence_number": i},
        }
        for key in ("actor", "context", "details", "event_id"):
            if rng.random() < 0.05:
                del event[key]
        events.append(event)
    return events


def _summary(alerts: list[AlertRecord]) -> list[tuple[Any, ...]]:
    """The alerts, in order of time (the rules of one event are judged in any order)."""
    alerts = sorted(alerts, key=lambda a: (a.at, a.rule, a.group, a.status))
    return [(a.rule, a.group, a.status, a.count, a.at, a.dedup_key, a.data) for a in alerts]


def test_indexed_compiled_and_projected_judging_fires_as_every_rule_on_every_event() -> None:
    rules = _rules()
    events = _events(2000)
    lines = [orjson.dumps(event) for event in events]

    # Every rule on every event (but the engine's own alert.* events), by rule-engine.
    every = Evaluator(rules)
    every._by_getter = []  # every rule is handed to judge below; nothing to add
    by_rule_engine = [
        dataclasses.replace(r, test=r.condition.slow_matches)
        for r in every.rules.values()
        if r.condition is not None
    ]
    indexed, projected = Evaluator(rules), Evaluator(rules, projected=True)
    projection = projected.projection
    assert projection is not None
    expected: list[AlertRecord] = []
    by_index: list[AlertRecord] = []
    by_projection: list[AlertRecord] = []
    for n, (event, line) in enumerate(zip(events, lines, strict=True)):
        if not str(event["event_type"]).startswith("alert."):
            expected += every.judge(event, by_rule_engine)
        candidates = indexed.candidates(event["event_type"])
        if candidates is not None:
            by_index += indexed.judge(event, candidates)
        view = projection.decode(line)
        found = projected.candidates(view.event_type)
        if found is not None:
            by_projection += projected.judge(view, found, line)
        if n % 50 == 0:
            for evaluator, out in ((every, expected), (indexed, by_index)):
                out += evaluator.sweep()
            by_projection += projected.sweep()
    fired = {a.rule for a in expected}
    assert len(fired) >= 15, fired  # most rules fire at least once
    assert _summary(by_index) == _summary(expected)
    assert _summary(by_projection) == _summary(expected)


def test_projection_reads_paths_as_the_decoded_event_does() -> None:
    paths = [("actor", "id"), ("actor", "roles"), ("details",), ("details", "meta", "x"),
             ("a", "b", "c"), ("context", "environment")]  # fmt: skip
    projection = Projection(paths)
    for event in [*_events(200), {}, {"a": {"b": {"c": [1]}}}, {"a": {"b": 3}}, {"a": "s"}]:
        view = projection.decode(orjson.dumps(event))
        for path in paths:
            expected = path_getter(path)(event)
            assert projection.getter(path)(view) == expected, (path, event)
            try:
                fast = projection.fast_getter(path)(view)
            except AttributeError:  # a value on the way is not an object: null
                fast = None
            assert fast == expected, (path, event)


def test_a_condition_left_to_rule_engine_gets_whole_events() -> None:
    config = load_config_text(
        'audit:\n  alerts:\n    - {name: n, condition: "details.topics.length == 3"}\n'
    )
    rules = compile_rules(config.audit.alerts, config.audit.builtin_alerts)
    assert Evaluator(rules, projected=True).projection is None


def test_groups_of_equal_but_different_values_stay_apart() -> None:
    config = load_config_text(
        "audit:\n  alerts:\n"
        "    - {name: g, condition: \"event_type == 'x'\", group_by: details.v}\n"
    )
    evaluator = Evaluator(compile_rules(config.audit.alerts, config.audit.builtin_alerts))
    groups = []
    for n, value in enumerate([1, True, 1.0, "1", None, 1]):
        event = {"event_type": "x", "timestamp": "2026-11-23T08:00:00Z", "event_id": f"e{n}",
                 "details": {"v": value}}  # fmt: skip
        (alert,) = evaluator.judge(event, evaluator.candidates("x") or [])
        groups.append(alert.group)
    assert groups == ["[1]", "[true]", "[1.0]", '["1"]', "[null]", "[1]"]
