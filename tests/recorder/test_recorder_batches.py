"""The writer encodes a batch in one go (`ItemEncoder.lines`, `Stamper.stamps`): byte for
byte what encoding its items one at a time gives, ids and timestamps included."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_ROOT = Path(__file__).resolve().parents[2]
if importlib.util.find_spec("tests") is None:
    sys.path.insert(0, str(_ROOT))

from tests.recorder.test_recorder_canonical import CUSTOM, emit_kwargs  # noqa: E402

from kaudit.events.catalog import EventCatalog  # noqa: E402
from kaudit.events.codec import decode  # noqa: E402
from kaudit.events.model import Action, Actor, AuditEvent, Resource  # noqa: E402
from kaudit.recorder.core import Recorder, RecorderSettings  # noqa: E402
from kaudit.recorder.encode import ItemEncoder  # noqa: E402
from kaudit.recorder.stamp import Stamper  # noqa: E402

_SETTINGS = RecorderSettings(cluster_id="prod", environment="test", custom_event_types=CUSTOM)
_T0 = 1_765_000_000_123_456_789

# Times of a batch: mostly microseconds apart (many events share a millisecond), with
# jumps of seconds and steps back (a clock set back).
_steps = st.lists(
    st.integers(0, 3_000) | st.integers(-2_000_000_000, 5_000_000_000), min_size=1, max_size=60
)


class _Items:
    """A recorder whose emit() hands over its queue items instead of queueing them."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.recorder = Recorder(_NullSink(), _SETTINGS)
        self.recorder._admit = self.items.append


class _NullSink:
    keyed = False
    next_sequence = 0

    def append(self, lines: Any, keys: Any = None) -> None:
        raise AssertionError("nothing is written here")

    def close(self) -> None:
        pass


def _encoders(seed: bytes) -> tuple[ItemEncoder, ItemEncoder]:
    one, other = (ItemEncoder(_SETTINGS, EventCatalog(CUSTOM)) for _ in range(2))
    one.stamper, other.stamper = Stamper(seed), Stamper(seed)
    return one, other


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    calls=st.lists(emit_kwargs, min_size=1, max_size=60),
    steps=_steps,
    head=st.booleans(),
    seed=st.binary(min_size=1, max_size=8),
)
def test_a_batch_is_encoded_as_its_items_one_by_one(
    calls: list[dict[str, Any]], steps: list[int], head: bool, seed: bytes
) -> None:
    source = _Items()
    for kwargs in calls:
        kwargs = dict(kwargs)
        source.recorder.emit(kwargs.pop("event_type"), **kwargs)
    source.recorder.close()
    t = _T0
    items = []
    for i, item in enumerate(source.items):
        t += steps[i % len(steps)]
        items.append((t, *item[1:]))
    batch, single = _encoders(seed)
    # Twice: the second batch continues the ids of the first, as one at a time does.
    for seq in (0, len(items)):
        expected = [single.line(item, seq + i, head=head) for i, item in enumerate(items)]
        assert batch.lines(items, seq, head=head) == expected


def test_ids_sort_in_log_order_within_a_millisecond_and_across_a_carry() -> None:
    """Within one millisecond an id counts up from a random start; a start just below a
    carry into the upper 60 random bits is encoded the same both ways."""
    batch, single = _encoders(b"carry")
    for stamper in (batch.stamper, single.stamper):
        stamper._rng.getrandbits = lambda bits: (1 << 20) - 3  # type: ignore[method-assign]
    times = [_T0 + i * 1000 for i in range(8)]  # one millisecond: 8 ids in a row
    stamps, ids = batch.stamper.stamps(times)
    assert ids == [single.stamper.event_id(t).encode() for t in times]
    assert stamps == [single.stamper.timestamp(t).encode() for t in times]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # The start was 3 below the carry: the third id is the last before it.
    assert ids[0][:-4] == ids[2][:-4] != ids[3][:-4]


def test_a_batch_with_prebuilt_events_keeps_ids_in_log_order() -> None:
    source = _Items()
    source.recorder.emit("topic.created", actor="User:a", resource="topic:t1")
    source.recorder.record(
        AuditEvent(
            timestamp="",
            event_type="topic.deleted",
            event_id="",
            actor=Actor(type="user", id="b"),
            resource=Resource(type="topic", id="t2"),
            action=Action(operation="DeleteTopics", result="success"),
        )
    )
    source.recorder.emit("topic.created", actor="User:a", resource="topic:t3")
    source.recorder.close()
    batch, _ = _encoders(b"mixed")
    events = [decode(line) for line in batch.lines(source.items, 7)]
    assert [e.resource.id for e in events] == ["t1", "t2", "t3"]
    assert [e.integrity.sequence_number for e in events if e.integrity] == [7, 8, 9]
    ids = [e.event_id for e in events]
    assert ids == sorted(ids)


def test_details_that_cannot_be_serialised_are_replaced_in_a_batch() -> None:
    source = _Items()
    source.recorder.emit("topic.created", actor="User:a", resource="topic:t", details={"a": 1})
    source.recorder.emit("topic.created", actor="User:a", resource="topic:t", details={"x": {1j}})
    source.recorder.close()
    batch, single = _encoders(b"bad")
    events = [decode(line) for line in batch.lines(source.items, 0)]
    assert events[0].details == {"a": 1}
    assert events[1].details["unserialisable_details"] == {"x": "<unserialisable set>"}
    assert "not JSON serializable" in events[1].details["error"]
    # One at a time, the failed first try took an id too: only the ids differ.
    one_by_one = [decode(single.line(item, i)) for i, item in enumerate(source.items)]
    assert [replace(e, event_id="") for e in events] == [
        replace(e, event_id="") for e in one_by_one
    ]
    assert events[0].event_id < events[1].event_id
