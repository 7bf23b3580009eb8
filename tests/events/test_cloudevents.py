"""CloudEvents 1.0: required attributes, Kafka binary-mode headers, lossless round trips."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from tests.events.strategies import audit_events

from kaudit.errors import EventDecodeError
from kaudit.events import codec
from kaudit.events.formats import render_bytes
from kaudit.events.formats.cloudevents import (
    from_cloudevent,
    from_cloudevent_binary,
    parse_rfc3339,
    to_cloudevent,
    to_cloudevent_binary,
)
from kaudit.events.model import Action, Actor, AuditEvent, Context, Resource

# RFC 3986 URI-reference characters; percent-encoding keeps anything else out.
_URI_REFERENCE = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_BINARY_HEADERS = [
    "ce_specversion",
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_time",
    "ce_subject",
    "content-type",
]


def _event(**changes: Any) -> AuditEvent:
    base: dict[str, Any] = {
        "timestamp": "2026-11-22T10:15:30.123Z",
        "event_type": "topic.created",
        "event_id": "evt_1",
        "actor": Actor(type="user", id="User:alice"),
        "resource": Resource(type="topic", id="orders", path="kafka://prod/topic/orders"),
        "action": Action(operation="create"),
        "context": Context(cluster_id="prod-us-west-2", source="gateway"),
    }
    return AuditEvent(**(base | changes))


@given(audit_events())
def test_structured_cloudevent_has_the_required_attributes(event: AuditEvent) -> None:
    ce = to_cloudevent(event)
    assert ce["specversion"] == "1.0"
    assert ce["id"] == event.event_id and ce["id"]
    assert ce["type"] == f"io.kaudit.{event.event_type}"
    assert _URI_REFERENCE.fullmatch(ce["source"])
    assert ce["source"].startswith("kaudit://")
    assert ce["time"] == event.timestamp and _RFC3339.fullmatch(ce["time"].upper())
    assert ce["subject"] == (event.resource.path or f"{event.resource.type}/{event.resource.id}")
    assert ce["datacontenttype"] == "application/json"
    assert ce["data"] == codec.to_dict(event)
    # Context attribute names are lowercase a-z and digits (CloudEvents §3.1.1).
    assert all(re.fullmatch(r"[a-z0-9]+", name) for name in ce)


@given(audit_events())
def test_structured_cloudevent_round_trips_as_object_and_as_json(event: AuditEvent) -> None:
    assert from_cloudevent(to_cloudevent(event)) == event
    assert from_cloudevent(render_bytes(event, "cloudevents")) == event
    assert from_cloudevent(render_bytes(event, "cloudevents").decode()) == event


@given(audit_events())
def test_binary_mode_maps_attributes_to_ce_headers_and_data_to_the_value(
    event: AuditEvent,
) -> None:
    headers, value = to_cloudevent_binary(event)
    assert [name for name, _ in headers] == _BINARY_HEADERS
    decoded = {name: raw.decode("utf-8") for name, raw in headers}
    structured = to_cloudevent(event)
    for name, text in decoded.items():
        attribute = "datacontenttype" if name == "content-type" else name.removeprefix("ce_")
        assert structured[attribute] == text
    assert value == codec.encode(event)
    assert from_cloudevent_binary(headers, value) == event


def test_source_is_cluster_then_host_then_empty_authority_with_the_event_source() -> None:
    assert to_cloudevent(_event())["source"] == "kaudit://prod-us-west-2/gateway"
    hosted = _event(context=Context(host="kaudit-1", source="console"))
    assert to_cloudevent(hosted)["source"] == "kaudit://kaudit-1/console"
    assert to_cloudevent(_event(context=Context()))["source"] == "kaudit:///sdk"


def test_source_parts_are_percent_encoded() -> None:
    odd = _event(context=Context(cluster_id="prod/eu west", source="my app"))
    assert to_cloudevent(odd)["source"] == "kaudit://prod%2Feu%20west/my%20app"


def test_an_explicit_source_wins() -> None:
    assert to_cloudevent(_event(), source="/billing/audit")["source"] == "/billing/audit"
    headers, _ = to_cloudevent_binary(_event(), source="/billing/audit")
    assert ("ce_source", b"/billing/audit") in headers


def test_subject_falls_back_to_type_slash_id() -> None:
    event = _event(resource=Resource(type="group", id="billing"))
    assert to_cloudevent(event)["subject"] == "group/billing"


def test_a_timestamp_that_is_not_rfc3339_is_left_out_of_time_but_kept_in_data() -> None:
    event = _event(timestamp="22/11/2026 10:15")
    ce = to_cloudevent(event)
    assert "time" not in ce
    assert ce["data"]["timestamp"] == "22/11/2026 10:15"
    assert from_cloudevent(ce) == event
    headers, _ = to_cloudevent_binary(event)
    assert "ce_time" not in dict(headers)


def test_an_event_without_id_cannot_become_a_cloudevent() -> None:
    with pytest.raises(ValueError, match="non-empty id"):
        to_cloudevent(_event(event_id=""))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"specversion": "0.3"}, "specversion must be '1.0', got '0.3'"),
        ({"id": ""}, "id must be a non-empty string"),
        ({"id": "evt_other"}, "id 'evt_other' does not match data.event_id 'evt_1'"),
        ({"type": "io.kaudit.topic.deleted"}, "type 'io.kaudit.topic.deleted' does not match"),
        ({"datacontenttype": "application/xml"}, "datacontenttype must be 'application/json'"),
        ({"data": [1]}, "event must be an object, got list"),
    ],
)
def test_a_cloudevent_that_is_not_a_kaudit_event_is_refused(
    change: dict[str, Any], message: str
) -> None:
    ce = to_cloudevent(_event()) | change
    with pytest.raises(EventDecodeError, match=message):
        from_cloudevent(ce)


def test_a_cloudevent_without_data_or_not_json_is_refused() -> None:
    ce = to_cloudevent(_event())
    del ce["data"]
    with pytest.raises(EventDecodeError, match="has no data"):
        from_cloudevent(ce)
    with pytest.raises(EventDecodeError, match="not JSON"):
        from_cloudevent(b"{nope")
    with pytest.raises(EventDecodeError, match="must be a JSON object"):
        from_cloudevent(b"[]")


def test_content_type_with_parameters_and_absent_are_json() -> None:
    ce = to_cloudevent(_event()) | {"datacontenttype": "Application/JSON; charset=utf-8"}
    assert from_cloudevent(ce) == _event()
    del ce["datacontenttype"]
    assert from_cloudevent(ce) == _event()


def test_binary_mode_header_names_are_matched_case_insensitively() -> None:
    headers, value = to_cloudevent_binary(_event())
    shouted = [(name.upper(), raw.decode()) for name, raw in headers]
    assert from_cloudevent_binary(shouted, value) == _event()


def test_binary_mode_without_specversion_is_refused() -> None:
    headers, value = to_cloudevent_binary(_event())
    with pytest.raises(EventDecodeError, match="specversion"):
        from_cloudevent_binary([h for h in headers if h[0] != "ce_specversion"], value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T10:15:30Z", datetime(2026, 11, 22, 10, 15, 30, tzinfo=UTC)),
        ("2026-11-22t10:15:30.5z", datetime(2026, 11, 22, 10, 15, 30, 500000, tzinfo=UTC)),
        (
            "2026-11-22T10:15:30.123456789+05:30",
            datetime(
                2026, 11, 22, 10, 15, 30, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))
            ),
        ),
        (
            "2026-11-22T10:15:30-08:00",
            datetime(2026, 11, 22, 10, 15, 30, tzinfo=timezone(timedelta(hours=-8))),
        ),
    ],
)
def test_rfc3339_timestamps_parse_to_aware_datetimes(text: str, expected: datetime) -> None:
    parsed = parse_rfc3339(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-22T10:15:30",  # no offset
        "2026-11-22 10:15:30Z",
        "2026-W47-1T10:15:30Z",
        "2026-13-22T10:15:30Z",
        "2026-11-22T10:15:60Z",
        "2026-11-22T10:15:30+24:00",
        "",
    ],
)
def test_non_rfc3339_timestamps_do_not_parse(text: str) -> None:
    assert parse_rfc3339(text) is None
