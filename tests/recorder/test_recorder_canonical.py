"""The hot path writes canonical bytes: a line the recorder wrote decodes and re-encodes to
exactly the same bytes, for any input hypothesis can think of.

The recorder builds lines by hand on the hot path (cached byte fragments instead of one
codec call), so this is what keeps it honest against `kaudit.events.codec`.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# tests/events/strategies.py is shared; make `tests` importable as its conftest does.
_ROOT = Path(__file__).resolve().parents[2]
if importlib.util.find_spec("tests") is None:
    sys.path.insert(0, str(_ROOT))

from tests.events.strategies import (  # noqa: E402
    actions,
    actors,
    audit_events,
    authorizations,
    json_objects,
    resources,
    text,
)

from kaudit.events.catalog import CATALOG  # noqa: E402
from kaudit.events.codec import decode, encode_line  # noqa: E402
from kaudit.events.model import RESULTS, Action, AuditEvent  # noqa: E402
from kaudit.log.segments import LogReader, Position, SegmentLog  # noqa: E402
from kaudit.recorder.core import Recorder, RecorderSettings  # noqa: E402
from kaudit.recorder.redact import Redactor  # noqa: E402

CUSTOM = ("billing.invoice_sent", "ml.model_deployed")


class Tail:
    """A recorder over a real log, and the lines it wrote since the last call."""

    def __init__(self, log_dir: Path) -> None:
        self.recorder = Recorder(
            SegmentLog(log_dir, fsync="never"),
            RecorderSettings(cluster_id="prod", environment="test", custom_event_types=CUSTOM),
        )
        self.reader = LogReader(log_dir)
        self.position: Position | None = None

    def new_lines(self) -> list[bytes]:
        self.recorder.flush(timeout=10)
        out = []
        for pos, line in self.reader.iter_lines(self.position):
            out.append(line)
            self.position = pos
        return out


@pytest.fixture(scope="module")
def tail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tail]:
    t = Tail(tmp_path_factory.mktemp("canonical") / "log")
    yield t
    t.recorder.close()


def _mapping_of(obj: Any) -> dict[str, Any]:
    # asdict keeps tuples as tuples: an actor mapping with a roles *list* hits a separate
    # bug (see test_recorder_emit.py::test_an_actor_mapping_with_roles_is_recorded).
    return {k: v for k, v in asdict(obj).items() if v is not None or k in ("type", "id")}


_actor_args = actors() | actors().map(_mapping_of) | text(1)
_resource_args = (
    resources()
    | resources().map(lambda r: {"type": r.type, "id": r.id})
    | st.builds("{}:{}".format, text(1).filter(lambda s: ":" not in s), text())
)
_action_args = st.none() | actions() | actions().map(asdict) | text(1)

emit_kwargs = st.fixed_dictionaries(
    {
        "event_type": st.sampled_from([*CATALOG.names, *CUSTOM]),
        "actor": _actor_args,
        "resource": _resource_args,
        "action": _action_args,
        "result": st.sampled_from(RESULTS),
        "details": st.none() | json_objects(),
        "authorization": st.none() | authorizations(),
        "correlation_id": st.none() | text(),
        "duration_ms": st.none() | st.integers(0, 2**53) | st.floats(0, 1e9),
        "error": st.none() | text(),
        "source": st.none() | st.sampled_from(["gateway", "console"]) | text(1),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kwargs=emit_kwargs)
def test_emitted_lines_are_canonical(tail: Tail, kwargs: dict[str, Any]) -> None:
    event_type = kwargs.pop("event_type")
    tail.recorder.emit(event_type, **kwargs)
    [line] = tail.new_lines()
    event = decode(line)
    assert encode_line(event) == line
    # And the line says what was emitted.
    assert event.event_type == event_type
    assert event.details == Redactor().details(kwargs["details"] or {})
    assert event.authorization == kwargs["authorization"]
    assert event.context.correlation_id == kwargs["correlation_id"]
    assert event.context.source == (kwargs["source"] or "sdk")
    actor = kwargs["actor"]
    actor_id = (
        actor if isinstance(actor, str) else (actor["id"] if isinstance(actor, dict) else actor.id)
    )
    assert event.actor.id == actor_id
    action = kwargs["action"]
    if action is None:
        assert event.action == Action(
            CATALOG_WITH_CUSTOM.get(event_type).operation,
            kwargs["result"],
            kwargs["duration_ms"],
            kwargs["error"],
        )
    elif isinstance(action, str):
        assert event.action.operation == action
        assert event.action.result == kwargs["result"]


CATALOG_WITH_CUSTOM = type(CATALOG)(CUSTOM)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=st.builds(replace, audit_events(), event_type=st.sampled_from(CATALOG.names)))
def test_recorded_events_are_canonical_and_keep_their_identity(
    tail: Tail, event: AuditEvent
) -> None:
    tail.recorder.record(event)
    [line] = tail.new_lines()
    written = decode(line)
    assert encode_line(written) == line
    assert written.event_id == event.event_id
    assert written.timestamp == event.timestamp
    assert written.event_type == event.event_type
    assert written.actor == event.actor
    assert written.action == event.action
    assert written.details == Redactor().details(event.details)
    assert written.integrity is not None and written.integrity.signature is None
