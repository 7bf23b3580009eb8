"""What the search index knows of an event, and how it is laid out in SQLite.

This module owns the mapping from a native event (the log's JSON object) to the indexed
fields and to the words of free-text search, used alike by the index (`index.py`) and by
the scan of a log without an index (`query.py`), so both answer a search the same way.
It also owns the SQLite schema and its version.

Times are kept as integer milliseconds since the Unix epoch (UTC): they compare exactly,
and a day is `ts // 86_400_000`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import msgspec
import orjson

from kaudit.timeparse import parse_iso

SCHEMA_VERSION = 3
"""Bumped when the tables or the words of an event change. An index of version 2 is
upgraded in place when it is opened (`migrate`); one of another version is refused with
a message saying to rebuild it."""

MS_PER_DAY = 86_400_000
MS_PER_HOUR = 3_600_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1)
_ONE_MS = timedelta(milliseconds=1)

# unicode61 without diacritics removal: letters and digits make words, everything else
# (punctuation, `_`, spaces) separates them, case is folded. `words()` splits the same way.
FTS_TOKENIZER = "unicode61 remove_diacritics 0"

FTS_AUTOMERGE = 8
"""Segments of a size the full-text index lets pile up before merging them (FTS5's
default is 4): each word's list of rows is rewritten less often as the index grows,
about a fifth less work per event added at a million events, more at ten."""

TEXT_DDL = f"""
CREATE VIRTUAL TABLE IF NOT EXISTS events_text USING fts5 (
    words, content='', detail=none, columnsize=0, tokenize='{FTS_TOKENIZER}'
);
INSERT INTO events_text (events_text, rank) VALUES ('automerge', {FTS_AUTOMERGE});
"""

DDL = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    actor TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    result TEXT NOT NULL,
    cluster TEXT,
    event_id TEXT NOT NULL,
    seq INTEGER,
    source TEXT
);
CREATE TABLE IF NOT EXISTS blocks (
    first_id INTEGER PRIMARY KEY,
    count INTEGER NOT NULL,
    data BLOB NOT NULL,
    max_ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_max_ts ON blocks (max_ts);
CREATE UNIQUE INDEX IF NOT EXISTS events_event_id ON events (event_id);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_type_ts ON events (event_type, ts);
CREATE INDEX IF NOT EXISTS events_actor_ts ON events (actor, ts);
CREATE INDEX IF NOT EXISTS events_resource_ts ON events (resource_id, ts);
CREATE INDEX IF NOT EXISTS events_unsuccessful_ts ON events (result, ts)
    WHERE result <> 'success';
CREATE TABLE IF NOT EXISTS terms (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;
{TEXT_DDL}"""
"""`blocks` keeps the native lines: events `first_id` to `first_id + count - 1`, joined
by newlines and compressed with zstd together, which makes them a tenth of their size
(JSON events repeat themselves) and the index fast to write. `terms` lists the distinct
values of the filtered columns, so a glob or a short actor name is turned into an exact
`IN` list that the composite indexes answer. A block's `max_ts` is the latest timestamp
of its events and of every event before it (ids are in log order, timestamps nearly so):
a search walking back from the newest id knows from it when no older event can be newer
than what it has found, and where the events of a time range can start. Each index
costs time for every event added, so there are only those the searches need: no index
on the cluster or the source (most installations have one cluster, and the time index
finds the newest events of any cluster quickly) and on the result only for failures
and denials, the rare results searched for (`success` matches most events: the time
index finds them). `events_text` is contentless: it holds only which words each row
has; removing a row gives its words again, computed from the stored line."""

TERM_KINDS = ("type", "actor", "resource", "cluster", "source")


class NotAnEvent(ValueError):
    """A JSON object that lacks what the index needs (timestamp, type, actor...)."""


class Fields(NamedTuple):
    """The indexed fields of one event (a named tuple: made for every event indexed or
    scanned, so it has to be cheap)."""

    ts: int
    event_type: str
    actor: str
    resource_type: str
    resource_id: str
    result: str
    cluster: str | None
    event_id: str
    seq: int | None
    source: str | None = None
    """`context.source`: gateway, console, sdk, ingest..."""

    @property
    def resource(self) -> str:
        return f"{self.resource_type}:{self.resource_id}"

    @property
    def category(self) -> str:
        return self.event_type.partition(".")[0]

    @property
    def day(self) -> int:
        return self.ts // MS_PER_DAY

    @property
    def hour(self) -> int:
        return self.ts // MS_PER_HOUR


def to_ms(when: datetime) -> int:
    """`when` (timezone-aware) as integer milliseconds since the epoch."""
    return (when - _EPOCH) // _ONE_MS


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def day_name(day: int) -> str:
    """A day number (`ts // MS_PER_DAY`) as YYYY-MM-DD."""
    return (_EPOCH_DAY + timedelta(days=day)).isoformat()


_MINUTES: dict[str, int] = {}
_MAX_MINUTES = 100_000


def parse_timestamp(text: str) -> int:
    """An event's ISO 8601 timestamp as milliseconds; a time without offset is UTC.

    The form the log writes (`2026-11-22T10:15:30.123Z`) is read by adding its seconds
    to its minute, parsed once: parsing every timestamp in full was a tenth of what
    indexing an event costs."""
    if len(text) == 24 and text[23] == "Z" and text[19] == "." and text[16] == ":":
        seconds, millis = text[17:19], text[20:23]
        if seconds.isdigit() and millis.isdigit() and seconds < "60":
            minute = _MINUTES.get(text[:16])
            if minute is None:
                minute = to_ms(parse_iso(text[:16] + "Z"))
                if len(_MINUTES) >= _MAX_MINUTES:
                    _MINUTES.clear()
                _MINUTES[text[:16]] = minute
            return minute + int(seconds) * 1000 + int(millis)
    return to_ms(parse_iso(text))


def fields_of(obj: dict[str, Any]) -> Fields:
    """The indexed fields of a decoded native event; NotAnEvent when some are missing."""
    try:
        actor = obj["actor"]
        resource = obj["resource"]
        integrity = obj.get("integrity")
        seq = integrity.get("sequence_number") if type(integrity) is dict else None
        context = obj.get("context")
        cluster = context.get("cluster_id") if type(context) is dict else None
        source = context.get("source") if type(context) is dict else None
        fields = Fields(
            parse_timestamp(obj["timestamp"]),
            obj["event_type"],
            actor["id"],
            resource["type"],
            resource["id"],
            obj["action"]["result"],
            _text_or_none(cluster),
            obj["event_id"],
            seq if type(seq) is int else None,
            _text_or_none(source),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NotAnEvent(f"not an audit event: {exc!r}") from None
    # One check for the six strings rather than one call each (this runs per event).
    if not all(type(v) is str for v in fields[1:6]) or type(fields.event_id) is not str:
        raise NotAnEvent(f"not an audit event: a field is not a string in {fields!r}")
    return fields


def _text_or_none(value: object) -> str | None:
    """A cluster or source as indexed: a non-empty string, else None (an empty one names
    nothing, and the rollups keep a missing one as '')."""
    return value if type(value) is str and value else None


def _strings(values: Iterable[object]) -> list[str]:
    return [v for v in values if type(v) is str]


def search_text(obj: dict[str, Any]) -> str:
    """The words free-text search looks in: the event type, who (actor id, client id,
    address, user agent), what (resource type and id, operation, error, RBAC action and
    checks), the correlation id, the Kafka API, and the details, keys and values.

    Left out are what is the same for most events or has its own filter (cluster,
    environment, result, source, host, roles), timestamps and the unique event id and
    integrity fields, which would only make the index larger.
    """
    actor = obj.get("actor") or {}
    resource = obj.get("resource") or {}
    action = obj.get("action") or {}
    context = obj.get("context") or {}
    parts = _strings(
        (
            obj.get("event_type"),
            actor.get("id"),
            actor.get("client_id"),
            actor.get("ip_address"),
            actor.get("user_agent"),
            resource.get("type"),
            resource.get("id"),
            action.get("operation"),
            action.get("error"),
            context.get("correlation_id"),
        )
    )
    api = context.get("api")
    if type(api) is dict and type(api.get("name")) is str:
        parts.append(api["name"])
    _authorization_words(obj.get("authorization"), parts)
    details = obj.get("details")
    if details:
        # The JSON text of the details: keys and values alike are words; the tokenizer
        # drops the punctuation.
        parts.append(orjson.dumps(details).decode())
    return " ".join(parts)


# Members that are words are typed `str | None`: a line where one is of another type is
# read by the full decode (`read_event`), which skips it as `search_text` does.
class _Actor(msgspec.Struct, gc=False):
    id: str
    client_id: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None


class _Resource(msgspec.Struct, gc=False):
    type: str
    id: str


class _Action(msgspec.Struct, gc=False):
    result: str
    operation: str | None = None
    error: str | None = None


class _Context(msgspec.Struct, gc=False):
    cluster_id: Any = None
    source: Any = None
    correlation_id: str | None = None
    api: Any = None


class _Integrity(msgspec.Struct, gc=False):
    sequence_number: Any = None


class _Event(msgspec.Struct, gc=False):
    """The members of a native event that the index reads; the rest is skipped.

    These structs are not tracked by the garbage collector (`gc=False`: they hold no
    cycles), which makes decoding a third faster: the collector runs less often and has
    fewer objects to look at while a part of thousands of events is decoded."""

    timestamp: str
    event_type: str
    event_id: str
    actor: _Actor
    resource: _Resource
    action: _Action
    context: _Context | None = None
    authorization: Any = None
    details: msgspec.Raw = msgspec.Raw(b"null")
    integrity: _Integrity | None = None


_decode_event = msgspec.json.Decoder(_Event).decode
_NO_DETAILS = frozenset(("null", "{}"))
_new_tuple = tuple.__new__


def read_event(line: bytes) -> tuple[Fields, str]:
    """The indexed fields and the search text (`search_text`) of one native line;
    NotAnEvent when it is not an audit event.

    Decodes only what the index reads, into typed members, which is several times
    faster than decoding the whole event; a line of another shape (a member of an
    unexpected type, say) is decoded in full and read by `fields_of` and `search_text`.
    The details are taken as the JSON text they are in the line (the same text as
    `search_text` makes, as the log's lines are written by orjson).
    """
    try:
        ev = _decode_event(line)
    except msgspec.MsgspecError:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise NotAnEvent(f"not JSON: {exc}") from None
        if type(obj) is not dict:
            raise NotAnEvent(f"not an audit event: a JSON {type(obj).__name__}") from None
        return fields_of(obj), search_text(obj)
    try:
        ts = parse_timestamp(ev.timestamp)
    except ValueError as exc:
        raise NotAnEvent(f"not an audit event: {exc!r}") from None
    actor, resource, action, context = ev.actor, ev.resource, ev.action, ev.context
    integrity = ev.integrity
    seq = integrity.sequence_number if integrity is not None else None
    parts: list[str | None] = [
        ev.event_type,
        actor.id,
        actor.client_id,
        actor.ip_address,
        actor.user_agent,
        resource.type,
        resource.id,
        action.operation,
        action.error,
    ]
    cluster = source = None
    if context is not None:
        # A cluster or source as `_text_or_none` reads it, inline: this runs per event.
        cluster, source = context.cluster_id, context.source
        if type(cluster) is not str or not cluster:
            cluster = None
        if type(source) is not str or not source:
            source = None
        parts.append(context.correlation_id)
        api = context.api
        if type(api) is dict and type(api.get("name")) is str:
            parts.append(api["name"])
    if ev.authorization is not None:
        _authorization_words(ev.authorization, parts)
    # Read as text straight from the line's bytes (no copy of them first).
    details = str(ev.details, "utf-8")
    if "\\" in details:
        # Escapes (`\n`, `\u00e9`) would make words of their own: read the values.
        details = orjson.dumps(orjson.loads(details)).decode()
    if details not in _NO_DETAILS:
        parts.append(details)
    # `tuple.__new__` makes the same named tuple as `Fields(...)` without the call of
    # its Python-level constructor.
    fields = _new_tuple(
        Fields,
        (
            ts,
            ev.event_type,
            actor.id,
            resource.type,
            resource.id,
            action.result,
            cluster,
            ev.event_id,
            seq if type(seq) is int else None,
            source,
        ),
    )
    # Members left out (None) and empty ones have no words.
    return fields, " ".join(filter(None, parts))


def _authorization_words(authorization: object, parts: list[str] | list[str | None]) -> None:
    if type(authorization) is dict:
        if isinstance(authorization.get("action"), str):
            parts.append(authorization["action"])
        for check in authorization.get("checks") or ():
            if type(check) is dict:
                parts.extend(_strings((check.get("operation"), check.get("resource"))))


_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The words of `text` as the full-text index splits them: runs of letters and
    digits, lower-cased."""
    return _WORD.findall(text.lower())
