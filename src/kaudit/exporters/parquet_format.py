"""The Parquet layout of exported events: the schema, native lines to an Arrow table and back.

Every standard field of the native event is a column of its own, flattened with `_`
(`actor.id` is `actor_id`, `context.api.name` is `context_api_name`), so query engines
(Athena, Trino, Spark, DuckDB) filter on them without parsing JSON; `details` and the
RBAC `authorization_policies` are free-form and stay JSON text; `authorization_checks` is
a list of structs. `time` is the event's timestamp as a UTC timestamp (microseconds),
beside `timestamp`, the text as recorded.

`event` is the native line itself, byte for byte. It is what the integrity checks sign
(HMAC chain, Merkle tree), so an object is verified from it; and the other columns are
checked to be what `event` says (`check_columns`); the footer's statistics and metadata,
which engines also answer from, are checked by exporters/parquet_footer.py.

The columns are made from the lines as they are in the spool, a buffer of newline-ended
lines, by Arrow (C++, on all cores), never event by event in Python: this runs for every
exported event. Arrow's CSV reader splits the buffer into the `event` column, its JSON
reader parses the standard fields, and the free-form members are cut from `event` by
position (string views into it, copied once).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, date

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from kaudit.errors import EventDecodeError
from kaudit.timeparse import parse_iso

_S = pa.string()

_CHECK = pa.struct(
    [("operation", _S), ("resource", _S), ("allowed", pa.bool_()), ("error_code", pa.int32())]
)

_NESTED = pa.schema(
    [
        ("timestamp", _S),
        ("event_type", _S),
        ("event_id", _S),
        ("version", _S),
        (
            "actor",
            pa.struct(
                [
                    ("type", _S),
                    ("id", _S),
                    ("roles", pa.list_(_S)),
                    ("ip_address", _S),
                    ("user_agent", _S),
                    ("client_id", _S),
                    ("auth", _S),
                    ("authorized_as", _S),
                ]
            ),
        ),
        ("resource", pa.struct([("type", _S), ("id", _S), ("path", _S)])),
        (
            "action",
            pa.struct(
                [("operation", _S), ("result", _S), ("duration_ms", pa.float64()), ("error", _S)]
            ),
        ),
        (
            "authorization",
            pa.struct(
                [
                    ("allowed", pa.bool_()),
                    ("action", _S),
                    ("checks", pa.list_(_CHECK)),
                    # Only how many: the policies are read as JSON text (_free_form).
                    ("policies", pa.list_(pa.struct([]))),
                ]
            ),
        ),
        (
            "context",
            pa.struct(
                [
                    ("cluster_id", _S),
                    ("environment", _S),
                    ("correlation_id", _S),
                    ("source", _S),
                    ("host", _S),
                    (
                        "api",
                        pa.struct([("key", pa.int32()), ("name", _S), ("version", pa.int32())]),
                    ),
                ]
            ),
        ),
        (
            "integrity",
            pa.struct(
                [("sequence_number", pa.int64()), ("signature", _S), ("previous_signature", _S)]
            ),
        ),
    ]
)
"""What Arrow's JSON reader takes from each line (free-form members are read apart)."""

TIME_TYPE = pa.timestamp("us", tz="UTC")
US_PER_DAY = 86_400_000_000
"""Microseconds in a UTC day of `time`: a row's `dt=` day is its time over this."""
EPOCH_DAY = date(1970, 1, 1)


def _memory_pool() -> pa.MemoryPool:
    """jemalloc, where pyarrow is built with it: it keeps freed pages a while for the next
    buffers, where mimalloc (pyarrow's default) hands each large buffer back to the system
    and the next one is faulted in and zeroed again; that was a tenth of an export's CPU."""
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:
        return pa.default_memory_pool()


POOL = _memory_pool()
"""Where the columns of exported events are made (the large buffers of a roll)."""

_BLOCK = 1 << 20
_DETAILS = ',"details":'
_INTEGRITY = ',"integrity":'
_INTEGRITY_MAX = 512
"""How far from a line's end its integrity member is looked for (it holds two signatures
and a number)."""

_RENAMED = {
    "integrity_sequence_number": "sequence_number",
    "integrity_signature": "signature",
    "integrity_previous_signature": "previous_signature",
}


def _flat_fields() -> list[pa.Field]:
    flat = _NESTED.empty_table().flatten().flatten().schema
    out = [pa.field("time", TIME_TYPE)]
    for f in flat:
        name = _RENAMED.get(f.name.replace(".", "_"), f.name.replace(".", "_"))
        out.append(pa.field(name, _S if name == "authorization_policies" else f.type))
        if name == "context_api_version":
            out.append(pa.field("details", _S))
    out.append(pa.field("event", _S))
    return out


SCHEMA = pa.schema(_flat_fields())
"""The columns of an exported Parquet file, in order (`event` last)."""

COLUMNS = tuple(SCHEMA.names)

_DICTIONARY_COLUMNS = [
    "version",
    "actor_type",
    "actor_id",
    "actor_auth",
    "actor_client_id",
    "actor_user_agent",
    "actor_ip_address",
    "resource_type",
    "resource_id",
    "resource_path",
    "action_operation",
    "action_result",
    "action_error",
    "authorization_action",
    "context_cluster_id",
    "context_environment",
    "context_source",
    "context_host",
    "context_api_name",
    "event_type",
]
"""Columns with few distinct values, dictionary-encoded in the files (engines filter
and group on them); the others (ids, times, the event) would only grow the dictionary."""

WRITE_OPTIONS: dict[str, object] = {
    "compression": "zstd",
    "use_dictionary": _DICTIONARY_COLUMNS,
    "write_statistics": ["time", "event_type", "action_result", "sequence_number"],
}
"""How exported files are written (pyarrow.parquet.ParquetWriter keyword arguments)."""


def lines_table(lines: Sequence[bytes]) -> pa.Table:
    """The events of native log lines (no trailing newline needed) as a table of SCHEMA;
    EventDecodeError when a line is not a native audit event."""
    return ndjson_table(b"".join(line.rstrip(b"\n") + b"\n" for line in lines))


def ndjson_table(data: bytes) -> pa.Table:
    """The events of native log lines, each ended by a newline as the log and the spool
    hold them, as a table of SCHEMA; EventDecodeError when a line is not a native audit
    event (an empty line, or a carriage return, which the log's compact JSON never holds,
    are refused too)."""
    if not data:
        return SCHEMA.empty_table()
    if not data.endswith(b"\n"):
        raise EventDecodeError("not native audit events: the last line has no newline")
    if b"\r" in data:
        raise EventDecodeError("not native audit events: a line holds a carriage return")
    events = _lines_column(data)
    lines = len(events)
    if not pc.min(pc.binary_length(events)).as_py():
        raise EventDecodeError("not native audit events: an empty line")
    try:
        nested = pa_json.read_json(
            pa.BufferReader(data),
            # Blocks of 1 MiB are parsed by as many threads as there are cores.
            read_options=pa_json.ReadOptions(block_size=_BLOCK),
            parse_options=pa_json.ParseOptions(
                explicit_schema=_NESTED, unexpected_field_behavior="ignore"
            ),
            memory_pool=POOL,
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise EventDecodeError(f"not native audit events: {exc}") from exc
    if nested.num_rows != lines:
        raise EventDecodeError(
            f"{lines} lines gave {nested.num_rows} events: a line is not one JSON object"
        )
    flat = nested.flatten(POOL).flatten(POOL)
    columns: dict[str, pa.ChunkedArray | pa.Array] = {
        _RENAMED.get(n.replace(".", "_"), n.replace(".", "_")): flat.column(n)
        for n in flat.column_names
    }
    for required in ("timestamp", "event_type", "event_id", "actor_id", "resource_type"):
        if columns[required].null_count:
            raise EventDecodeError(f"not native audit events: a line has no {required}")
    columns["time"] = _times(columns["timestamp"])
    details, policies = _free_form(events, columns["authorization_policies"])
    columns["details"] = details
    columns["authorization_policies"] = policies
    columns["event"] = events
    return pa.Table.from_arrays([columns[n] for n in COLUMNS], schema=SCHEMA)


def _lines_column(data: bytes) -> pa.Array:
    """The lines of `data` as one string array (checked UTF-8), split by Arrow's CSV
    reader as one column with no quoting (C++, on all cores): far quicker than a list of
    Python bytes turned into an array."""
    try:
        table = pa_csv.read_csv(
            pa.BufferReader(data),
            read_options=pa_csv.ReadOptions(column_names=["event"], block_size=_BLOCK),
            # No delimiter can be in a line of JSON: a control character is escaped there.
            parse_options=pa_csv.ParseOptions(
                delimiter="\x1f", quote_char=False, escape_char=False, ignore_empty_lines=False
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={"event": _S},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
            memory_pool=POOL,
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise EventDecodeError(f"not native audit events: {exc}") from exc
    return table.column("event").combine_chunks(POOL)


def _times(text: pa.ChunkedArray | pa.Array) -> pa.Array | pa.ChunkedArray:
    """The timestamps as UTC times; one without an offset is UTC (as the search reads it)."""
    try:
        return pc.cast(text, TIME_TYPE, memory_pool=POOL)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    times = []
    for value in text.to_pylist():
        try:
            times.append(parse_iso(value).astimezone(UTC))
        except ValueError as exc:
            raise EventDecodeError(f"not an audit event: timestamp {value!r}: {exc}") from exc
    return pa.array(times, TIME_TYPE)


def _free_form(events: pa.Array, policy_lists: pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """The `details` and `authorization.policies` members as JSON text.

    The details are the last member but integrity, whose members are not free-form: the
    text between the first `,"details":` and the last `,"integrity":` is the details as
    recorded (a quote in a string value is escaped, so these can only be members), unless
    policies (which come before, and are free-form) or the details themselves name a
    member "details". Lines with policies, and lines whose details name "details", are
    read in full instead, which gives the same text (both are orjson's compact, key-sorted
    JSON); policies are `[]` for every other line with an authorization (Arrow's reader
    counts them).
    """
    policies = pc.if_else(
        pc.is_valid(policy_lists), pa.scalar("[]", _S), pa.scalar(None, _S)
    ).combine_chunks()
    has_policies = pc.fill_null(pc.greater(pc.list_value_length(policy_lists), 0), False)
    # (The regex kernel finds a literal several times faster than find_substring.)
    starts = pc.find_substring_regex(events, _DETAILS, memory_pool=POOL).to_numpy(
        zero_copy_only=False
    )
    # The last `,"integrity":`: the first of the reversed pattern in the reversed line's
    # end (integrity's members are short; a line where it is not there is read in full).
    ends = pc.binary_slice(events.view(pa.binary()), -_INTEGRITY_MAX, memory_pool=POOL)
    ends = pc.binary_reverse(ends, memory_pool=POOL)
    from_end = pc.find_substring_regex(ends, _INTEGRITY[::-1], memory_pool=POOL).to_numpy(
        zero_copy_only=False
    )
    lengths = pc.binary_length(events).to_numpy(zero_copy_only=False)
    stops = lengths - from_end - len(_INTEGRITY)
    found = (starts >= 0) & (from_end >= 0)
    starts = starts + len(_DETAILS)
    found &= stops >= starts
    starts[~found] = stops[~found] = 0
    cut = _substrings(events, starts, stops)
    slow = pc.or_(
        pa.array(~found), pc.or_(has_policies, pc.match_substring(cut, '"details":'))
    ).combine_chunks()
    rows = pc.indices_nonzero(slow).to_pylist()
    if not rows:
        return cut, policies
    details_text: list[str] = []
    policies_text: list[str | None] = []
    for index in rows:
        obj = orjson.loads(events[index].as_py())
        details_text.append(orjson.dumps(obj.get("details"), option=orjson.OPT_SORT_KEYS).decode())
        authorization = obj.get("authorization")
        policies_text.append(
            orjson.dumps(authorization.get("policies", []), option=orjson.OPT_SORT_KEYS).decode()
            if isinstance(authorization, dict)
            else policies[index].as_py()
        )
    return (
        pc.replace_with_mask(cut, slow, pa.array(details_text, _S)),
        pc.replace_with_mask(policies, slow, pa.array(policies_text, _S)),
    )


def _substrings(values: pa.Array, starts: np.ndarray, stops: np.ndarray) -> pa.Array:
    """`values[i][starts[i]:stops[i]]` (byte positions, on character boundaries) for each
    row of a string array, in one copy of those bytes: a string view array pointing into
    `values`, cast to strings (Arrow slices strings only at the same positions for all)."""
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32, len(values) + 1, values.offset * 4)
    begins = offsets[:-1].astype(np.int64) + starts
    lengths = (stops - starts).astype(np.int32)
    data = np.frombuffer(data_buffer, np.uint8)
    # A view: length (int32), then the string itself up to 12 bytes, else its first 4
    # bytes, the buffer's number and the offset in it (int32 each).
    views = np.zeros((len(values), 16), np.uint8)
    views[:, :4] = lengths.view(np.uint8).reshape(-1, 4)
    inline = np.arange(12)
    head = data[np.minimum(begins[:, None] + inline, max(len(data) - 1, 0))] if len(data) else 0
    views[:, 4:] = np.where(inline < lengths[:, None], head, 0)
    long = lengths > 12
    words = views.view(np.int32)
    words[long, 2] = 0
    words[long, 3] = begins[long].astype(np.int32)
    array = pa.Array.from_buffers(
        pa.string_view(), len(values), [None, pa.py_buffer(views), data_buffer]
    )
    return array.cast(_S, memory_pool=POOL)


def table_lines(table: pa.Table) -> list[bytes]:
    """The native lines of a table of SCHEMA (its `event` column), in order."""
    return [value.encode() for value in table.column("event").to_pylist()]


def check_columns(table: pa.Table) -> str | None:
    """None when every column of `table` is what its `event` column says; else what
    differs (a column changed by hand, which the integrity checks of `event` would miss)."""
    if table.schema.names != list(COLUMNS):
        return f"the columns are not kaudit's: {', '.join(table.schema.names)}"
    try:
        expected = lines_table(table_lines(table))
    except EventDecodeError as exc:
        return str(exc)
    for name in COLUMNS:
        have, want = table.column(name), expected.column(name)
        if not have.equals(want):
            for row in range(table.num_rows):
                if have[row] != want[row]:
                    return f"column {name} of row {row} is not what its event says"
    return None


def read_checked(data: bytes, day: str, where: str) -> bytes:
    """The native lines (newline-terminated) of an exported Parquet file of day `day`
    (YYYY-MM-DD); OSError saying what is wrong when it cannot be read, a column is not
    what its event says, or an event is of another day."""
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise OSError(f"{where}: not a readable Parquet file: {exc}") from exc
    problem = check_columns(table)
    if problem is None:
        days = pc.unique(pc.strftime(table.column("time"), format="%Y-%m-%d")).to_pylist()
        if days and days != [day]:
            problem = f"events of {', '.join(map(str, days))} in the file of {day}"
    if problem is not None:
        raise OSError(f"{where}: {problem}")
    return b"".join(line + b"\n" for line in table_lines(table))
