"""Printing search results and counts: `table` for people, `json`, `jsonl`, `csv` for
programs. This module owns the columns and how each format writes them; events in
`json`/`jsonl` are the native events as recorded, byte for byte in `jsonl`; what clients
chose is written so that spreadsheets and terminals do not act on it (untrusted_text).
`write_search` is `kaudit search`, from a filter to printed output."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any, BinaryIO

import orjson

from kaudit.config import Config
from kaudit.store.query import Filter, Hit, open_search
from kaudit.store.schema import day_name
from kaudit.untrusted_text import spreadsheet_cell, terminal_text

OUTPUT_FORMATS = ("table", "json", "jsonl", "csv")

CSV_COLUMNS = (
    "timestamp",
    "event_type",
    "event_id",
    "actor",
    "resource",
    "operation",
    "result",
    "error",
    "cluster",
    "client_id",
    "ip_address",
    "sequence_number",
)
_TABLE_COLUMNS = ("timestamp", "event_type", "actor", "resource", "result", "cluster")
_MAX_CELL = 48


def _columns(hit: Hit) -> dict[str, Any]:
    obj = hit.event()
    actor = obj.get("actor") or {}
    action = obj.get("action") or {}
    return {
        "timestamp": obj.get("timestamp"),
        "event_type": hit.fields.event_type,
        "event_id": hit.fields.event_id,
        "actor": hit.fields.actor,
        "resource": hit.fields.resource,
        "operation": action.get("operation"),
        "result": hit.fields.result,
        "error": action.get("error"),
        "cluster": hit.fields.cluster,
        "client_id": actor.get("client_id"),
        "ip_address": actor.get("ip_address"),
        "sequence_number": hit.fields.seq,
    }


def _cell(value: Any) -> str:
    text = "" if value is None else terminal_text(str(value))
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def _table(header: Sequence[str], rows: list[list[str]], right: Sequence[bool]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)]) + "\n"


def write_hits(hits: Sequence[Hit], fmt: str, out: BinaryIO) -> None:
    """Events in `fmt` (one of OUTPUT_FORMATS), in the order given."""
    if fmt == "jsonl":
        for hit in hits:
            out.write(hit.line + b"\n")
    elif fmt == "json":
        out.write(
            orjson.dumps([orjson.Fragment(h.line) for h in hits], option=orjson.OPT_INDENT_2)
            + b"\n"
        )
    elif fmt == "csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for hit in hits:
            writer.writerow({k: spreadsheet_cell(v) for k, v in _columns(hit).items()})
        out.write(text.getvalue().encode())
    else:
        rows = [[_cell(_columns(h)[c]) for c in _TABLE_COLUMNS] for h in hits]
        header = [c.upper().replace("_", " ") for c in _TABLE_COLUMNS]
        body = _table(header, rows, [False] * len(header)) if hits else ""
        noun = "event" if len(hits) == 1 else "events"
        out.write((body + f"({len(hits)} {noun}, newest first)\n").encode())


def _key_text(key: str, value: Any) -> Any:
    if key == "day" and isinstance(value, int):
        return day_name(value)
    if key == "hour" and isinstance(value, int):
        return f"{day_name(value // 24)}T{value % 24:02d}:00Z"
    return value


def write_counts(
    counts: Sequence[tuple[tuple[Any, ...], int]], keys: Sequence[str], fmt: str, out: BinaryIO
) -> None:
    """Groups and their counts in `fmt`; `day` and `hour` numbers are written as UTC
    dates and hours (2026-11-22, 2026-11-22T10:00Z)."""
    records = [
        {**{k: _key_text(k, v) for k, v in zip(keys, group, strict=True)}, "count": n}
        for group, n in counts
    ]
    if fmt == "jsonl":
        for record in records:
            out.write(orjson.dumps(record) + b"\n")
    elif fmt == "json":
        out.write(orjson.dumps(records, option=orjson.OPT_INDENT_2) + b"\n")
    elif fmt == "csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, [*keys, "count"], lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: spreadsheet_cell(v) for k, v in r.items()} for r in records)
        out.write(text.getvalue().encode())
    else:
        rows = [[_cell(r[k]) for k in keys] + [str(r["count"])] for r in records]
        header = [k.upper() for k in keys] + ["COUNT"]
        right = [False] * len(keys) + [True]
        total = sum(n for _, n in counts)
        body = _table(header, rows, right) if rows else ""
        out.write((body + f"({len(rows)} groups, {total} events)\n").encode())


def write_search(
    source: str | None,
    config: Config,
    flt: Filter,
    out: BinaryIO,
    *,
    fmt: str,
    count_by: str | None = None,
    limit: int = 0,
) -> None:
    """Search SOURCE (else the configured index or log, as `open_search` picks) and print
    the matching events, newest first, at most `limit` (0: all), or with `count_by` their
    counts by that key."""
    searcher = open_search(source, config)
    try:
        if count_by:
            write_counts(searcher.count_by(flt, (count_by,)), (count_by,), fmt, out)
        else:
            write_hits(searcher.search(flt, limit or None), fmt, out)
        out.flush()
    finally:
        searcher.close()
