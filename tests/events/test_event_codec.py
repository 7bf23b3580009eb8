"""The canonical codec: lossless, stable bytes, and decode errors that say what is wrong."""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any

import orjson
import pytest
from hypothesis import given
from tests.events.strategies import audit_events

from kaudit.errors import EventDecodeError, KauditError
from kaudit.events import codec
from kaudit.events.model import (
    Action,
    Actor,
    ApiRef,
    AuditEvent,
    AuthCheck,
    Authorization,
    Context,
    Integrity,
    Resource,
)

_PARTS: dict[str, type] = {
    "actor": Actor,
    "resource": Resource,
    "action": Action,
    "authorization": Authorization,
    "context": Context,
    "integrity": Integrity,
}


def _names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def _assert_sorted_keys(value: Any) -> None:
    if isinstance(value, dict):
        assert list(value) == sorted(value)
        for child in value.values():
            _assert_sorted_keys(child)
    elif isinstance(value, list):
        for child in value:
            _assert_sorted_keys(child)


@given(audit_events())
def test_decode_gives_back_the_encoded_event(event: AuditEvent) -> None:
    assert codec.decode(codec.encode(event)) == event


@given(audit_events())
def test_encoding_is_canonical_decode_then_encode_gives_the_same_bytes(event: AuditEvent) -> None:
    data = codec.encode(event)
    assert codec.encode(codec.decode(data)) == data
    assert codec.encode_line(event) == data + b"\n"
    assert codec.from_dict(codec.to_dict(event)) == event


@given(audit_events())
def test_bytes_are_compact_utf8_in_model_order_with_sorted_free_form_keys(
    event: AuditEvent,
) -> None:
    data = codec.encode(event)
    data.decode("utf-8")
    obj = orjson.loads(data)
    # orjson keeps key order on load and writes without whitespace: same bytes back
    # means the input had no insignificant whitespace.
    assert orjson.dumps(obj) == data
    assert list(obj) == _names(AuditEvent)
    for part, cls in _PARTS.items():
        if obj[part] is not None:
            assert list(obj[part]) == _names(cls)
    if obj["context"]["api"] is not None:
        assert list(obj["context"]["api"]) == _names(ApiRef)
    _assert_sorted_keys(obj["details"])
    if obj["authorization"] is not None:
        for check in obj["authorization"]["checks"]:
            assert list(check) == _names(AuthCheck)
        _assert_sorted_keys(obj["authorization"]["policies"])


def test_non_ascii_text_is_written_as_utf8_not_escaped() -> None:
    event = _minimal(details={"note": "café ☕ 𝄞"})
    assert "café ☕ 𝄞".encode() in codec.encode(event)


def _minimal(**changes: Any) -> AuditEvent:
    base: dict[str, Any] = {
        "timestamp": "2026-11-22T10:15:30.123Z",
        "event_type": "topic.created",
        "event_id": "evt_1",
        "actor": Actor(type="user", id="User:alice"),
        "resource": Resource(type="topic", id="orders"),
        "action": Action(operation="create"),
    }
    return AuditEvent(**(base | changes))


def _valid() -> dict[str, Any]:
    return codec.to_dict(
        _minimal(
            authorization=Authorization(
                allowed=True, checks=(AuthCheck("CREATE", "Topic:LITERAL:orders", True),)
            ),
            context=Context(api=ApiRef(19, "CreateTopics", 7)),
            integrity=Integrity(1),
        )
    )


def test_only_the_required_fields_are_needed_and_the_rest_default() -> None:
    obj = {
        "timestamp": "2026-11-22T10:15:30Z",
        "event_type": "backup.completed",
        "event_id": "evt_2",
        "actor": {"type": "service", "id": "backup-tool"},
        "resource": {"type": "backup", "id": "nightly"},
        "action": {"operation": "backup"},
    }
    event = codec.from_dict(obj)
    assert event.version == "1.0"
    assert event.action.result == "success"
    assert event.context == Context()
    assert event.details == {}
    assert event.authorization is None and event.integrity is None


def test_decode_error_is_a_non_retryable_value_error() -> None:
    with pytest.raises(EventDecodeError) as info:
        codec.decode(b"{")
    assert isinstance(info.value, ValueError) and isinstance(info.value, KauditError)
    assert info.value.retryable is False
    assert "not JSON" in str(info.value)


def test_a_non_object_is_refused_with_what_it_was() -> None:
    with pytest.raises(EventDecodeError, match="event must be an object, got list"):
        codec.decode(b"[]")


@pytest.mark.parametrize("missing", ["timestamp", "event_type", "event_id", "actor", "action"])
def test_a_missing_top_level_field_is_named(missing: str) -> None:
    obj = _valid()
    del obj[missing]
    with pytest.raises(EventDecodeError, match=missing):
        codec.from_dict(obj)


def test_a_missing_nested_field_is_named_with_its_path() -> None:
    obj = _valid()
    del obj["actor"]["id"]
    with pytest.raises(EventDecodeError, match=r"actor\.id"):
        codec.from_dict(obj)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("timestamp",), 1, "timestamp must be a string, got int"),
        (("actor",), "alice", "actor must be an object, got str"),
        (("actor", "roles"), "ops", "actor.roles must be a list"),
        (("actor", "ip_address"), 10, "actor.ip_address must be a string, got int"),
        (("action", "duration_ms"), "12", "action.duration_ms must be a number"),
        (("action", "duration_ms"), True, "action.duration_ms must be a number"),
        (("authorization", "allowed"), "yes", "authorization.allowed must be true or false"),
        (
            ("authorization", "checks"),
            [{"operation": "READ", "resource": "Topic:LITERAL:x", "allowed": 1}],
            r"authorization.checks\[\].allowed must be true or false, got int",
        ),
        (("context", "api", "key"), True, "context.api.key must be an integer, got bool"),
        (("integrity", "sequence_number"), 1.5, "integrity.sequence_number must be an integer"),
        (("details",), [], "details must be an object, got list"),
    ],
)
def test_a_wrong_type_is_refused_with_field_path_and_actual_type(
    path: tuple[str, ...], value: object, message: str
) -> None:
    obj = _valid()
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(EventDecodeError, match=message):
        codec.from_dict(obj)


def test_an_unknown_result_is_refused_listing_the_accepted_ones() -> None:
    obj = _valid()
    obj["action"]["result"] = "ok"
    expected = "action.result must be one of success, failure, denied, unknown, got 'ok'"
    with pytest.raises(EventDecodeError, match=re.escape(expected)):
        codec.from_dict(obj)
