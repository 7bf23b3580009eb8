"""The broker auditor's decision records become kaudit events as the gateway's would be,
with source broker and an unknown outcome for what the authorizer allowed; bad records are
refused saying what is wrong."""

from __future__ import annotations

import orjson
import pytest

from kaudit.brokeraudit.decisions import parse, to_events
from kaudit.errors import EventDecodeError
from kaudit.events.catalog import CATALOG


def record(**fields: object) -> bytes:
    base: dict[str, object] = {
        "kind": "decision", "id": "1-abcd-7", "node": 1, "role": "controller",
        "time_ms": 1_796_658_475_581, "correlation_id": 6, "principal": "User:alice",
        "client_address": "10.0.0.5", "listener": "CONTROLLER",
        "security_protocol": "PLAINTEXT", "client_id": "billing", "api_key": 19,
        "api_version": 7, "operation": "CREATE", "resource_type": "TOPIC",
        "pattern_type": "LITERAL", "resource_name": "orders", "allowed": True,
    }  # fmt: skip
    return orjson.dumps({**base, **fields})


def test_an_allowed_create_topics_is_topic_created_with_an_unknown_outcome() -> None:
    (event,) = to_events(parse(record()))
    assert event.event_type == "topic.created"
    assert event.timestamp == "2026-12-07T15:47:55.581Z"
    assert event.actor.id == "User:alice"
    assert event.actor.ip_address == "10.0.0.5"
    assert event.actor.client_id == "billing"
    assert (event.resource.type, event.resource.id) == ("topic", "orders")
    assert event.action.result == "unknown"
    assert event.context.source == "broker"
    assert event.context.correlation_id == "6"
    assert event.context.api is not None and event.context.api.name == "CreateTopics"
    assert event.authorization is not None and event.authorization.allowed
    assert [(c.operation, c.resource) for c in event.authorization.checks] == [
        ("CREATE", "Topic:LITERAL:orders")
    ]


def test_a_denial_is_the_typed_event_denied_plus_access_denied() -> None:
    events = to_events(parse(record(allowed=False, api_key=20, operation="DELETE")))
    assert [e.event_type for e in events] == ["topic.deleted", "access.denied"]
    assert {e.action.result for e in events} == {"denied"}
    assert events[1].authorization is not None
    assert events[1].authorization.checks[0].error_code == 29
    assert len({e.event_id for e in events}) == 2


def test_a_denial_also_refused_on_describe_is_one_denial_with_both_checks() -> None:
    raw = record(allowed=False, api_key=20, operation="DELETE", also_denied="DESCRIBE")
    events = to_events(parse(raw))
    assert [e.event_type for e in events] == ["topic.deleted", "access.denied"]
    checks = events[0].authorization.checks if events[0].authorization else ()
    assert [(c.operation, c.allowed) for c in checks] == [("DESCRIBE", False), ("DELETE", False)]


def test_the_same_record_read_twice_gives_the_same_event_ids() -> None:
    first = [e.event_id for e in to_events(parse(record(allowed=False)))]
    again = [e.event_id for e in to_events(parse(record(allowed=False)))]
    other = [e.event_id for e in to_events(parse(record(allowed=False, id="1-abcd-8")))]
    assert first == again
    assert not set(first) & set(other)
    assert all(i.startswith("evt_") and len(i) == 30 for i in first)


@pytest.mark.parametrize(
    ("api_key", "resource_type", "expected"),
    [
        (44, "TOPIC", "topic.config_changed"),
        (44, "BROKER", "config.changed"),
        (30, "CLUSTER", "acl.created"),
        (42, "GROUP", "group.deleted"),
        (51, "CLUSTER", "auth.credentials_changed"),
        (9, "GROUP", "kafka.request"),
    ],
)
def test_each_api_gets_the_gateways_event_type(
    api_key: int, resource_type: str, expected: str
) -> None:
    events = to_events(parse(record(api_key=api_key, resource_type=resource_type)))
    assert events[0].event_type == expected
    assert expected in CATALOG


def test_a_count_of_produce_decisions_is_records_produced_with_its_window() -> None:
    raw = record(
        kind="aggregate", api_key=0, operation="WRITE", count=42,
        first_ms=1_796_658_470_000, last_ms=1_796_658_475_581,
    )  # fmt: skip
    (event,) = to_events(parse(raw))
    assert event.event_type == "records.produced"
    assert event.details["requests"] == 42
    assert event.details["topic"] == "orders"
    assert event.details["first_seen"] == "2026-12-07T15:47:50.000Z"
    assert event.action.result == "unknown"


def test_a_drop_report_is_audit_degraded() -> None:
    raw = orjson.dumps(
        {"kind": "dropped", "id": "1-abcd-9", "node": 1, "role": "broker", "time_ms": 5,
         "dropped": 12, "dropped_total": 40, "queue_capacity": 100}
    )  # fmt: skip
    (event,) = to_events(parse(raw))
    assert event.event_type == "audit.degraded"
    assert event.details["dropped"] == 12 and event.details["dropped_total"] == 40
    assert event.action.result == "failure"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (orjson.dumps({"kind": "other"}), "accepted: decision, aggregate, dropped"),
        (orjson.dumps({"kind": "decision", "id": "x", "node": 1}), "lacks time_ms, principal"),
    ],
)
def test_a_bad_record_is_refused_saying_why(raw: bytes, message: str) -> None:
    with pytest.raises(EventDecodeError, match=message):
        parse(raw)
