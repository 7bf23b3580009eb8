"""Lines assembled from parts (`LineLayout`, `encode_act`, `encode_head`) are, byte for
byte, what `encode_line` writes for the same event: one serialiser, two ways to use it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.events.strategies import audit_events

from kaudit.events import codec
from kaudit.events.model import SCHEMA_VERSION, AuditEvent, Integrity

# Events as a writer assembles them: schema version, not yet sealed, and ids (like the
# times) that need no JSON escaping, since LineLayout.line writes them as given.
_unsealed_events = st.builds(
    replace,
    audit_events(),
    event_id=st.from_regex(r"evt_[0-9A-HJKMNP-TV-Z]{26}", fullmatch=True),
    version=st.just(SCHEMA_VERSION),
    integrity=st.builds(Integrity, st.integers(0, 2**63 - 1)),
)


def _line_of(event: AuditEvent, *, head: bool = False) -> bytes:
    assert event.integrity is not None
    layout = codec.LineLayout(replace(event.context, correlation_id=None))
    act = codec.encode_act(event.actor, event.resource, event.action, event.authorization)
    return layout.line(
        event.timestamp,
        event.event_type,
        event.event_id,
        act,
        event.context.correlation_id,
        event.details,
        event.integrity.sequence_number,
        head=head,
    )


@given(_unsealed_events)
def test_a_line_assembled_from_parts_is_the_line_encode_line_writes(event: AuditEvent) -> None:
    assert _line_of(event) == codec.encode_line(event)


@given(_unsealed_events)
def test_a_head_is_the_line_cut_after_signature_both_ways(event: AuditEvent) -> None:
    head = codec.encode_head(event)
    assert head.endswith(b',"signature":')
    assert codec.encode_line(event) == head + b'null,"previous_signature":null}}\n'
    assert _line_of(event, head=True) == head


@given(audit_events(), st.text())
def test_a_sealed_event_has_no_head(event: AuditEvent, signature: str) -> None:
    event = replace(event, integrity=Integrity(sequence_number=1, signature=signature))
    with pytest.raises(ValueError, match="already sealed"):
        codec.encode_head(event)
