"""Choosing a rendering by name: native, cloudevents and ocsf, as dicts and as bytes."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from tests.events.strategies import audit_events

from kaudit.events import codec
from kaudit.events.formats import FORMATS, render, render_bytes
from kaudit.events.formats.cloudevents import to_cloudevent
from kaudit.events.formats.ocsf import to_ocsf
from kaudit.events.model import Action, Actor, AuditEvent, Resource

_EVENT = AuditEvent(
    timestamp="2026-11-22T10:15:30.123Z",
    event_type="topic.created",
    event_id="evt_1",
    actor=Actor(type="user", id="User:alice"),
    resource=Resource(type="topic", id="orders"),
    action=Action(operation="create"),
    details={"z": 1, "a": {"y": 2, "b": 3}},
)


def test_the_formats_are_native_cloudevents_and_ocsf() -> None:
    assert FORMATS == ("native", "cloudevents", "ocsf")


def test_render_dispatches_to_each_format() -> None:
    assert render(_EVENT, "native") == codec.to_dict(_EVENT)
    assert render(_EVENT, "cloudevents") == to_cloudevent(_EVENT)
    assert render(_EVENT, "ocsf") == to_ocsf(_EVENT)


def test_native_bytes_are_the_canonical_bytes() -> None:
    assert render_bytes(_EVENT, "native") == codec.encode(_EVENT)


@pytest.mark.parametrize("fmt", ["nope", "NATIVE", "json", ""])
def test_an_unknown_format_is_refused_naming_the_accepted_ones(fmt: str) -> None:
    for call in (render, render_bytes):
        with pytest.raises(ValueError, match="accepted: native, cloudevents, ocsf") as info:
            call(_EVENT, fmt)
        assert repr(fmt) in str(info.value)


@given(audit_events())
def test_every_event_renders_in_every_format_as_compact_sorted_utf8(event: AuditEvent) -> None:
    for fmt in FORMATS:
        data = render_bytes(event, fmt)
        assert orjson.loads(data) == render(event, fmt)
        if fmt != "native":
            assert orjson.dumps(orjson.loads(data), option=orjson.OPT_SORT_KEYS) == data
        assert not data.endswith(b"\n")
