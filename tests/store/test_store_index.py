"""The `store` destination and its SQLite index: fed by the exporter runner through its
cursor, idempotent on event_id, lines kept byte for byte, records that are not events
refused one by one, and an index of another schema version refused."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from kaudit_store_data import (
    export,
    forget_cursors,
    index_path,
    log_lines,
    make_config,
    record_traffic,
    text_and_event_rows,
)

from kaudit.config import Config
from kaudit.errors import StoreError
from kaudit.exporters import build_exporter
from kaudit.store.blocks import BLOCK_EVENTS
from kaudit.store.exporter import StoreExporter
from kaudit.store.index import EventIndex
from kaudit.store.query import Filter, IndexSearch

START = datetime(2026, 9, 1, tzinfo=UTC)
END = datetime(2026, 9, 3, tzinfo=UTC)


def indexed_lines(path: Path) -> list[bytes]:
    search = IndexSearch(path)
    try:
        return [h.line for h in reversed(search.search(Filter(), None))]
    finally:
        search.close()


def test_the_runner_feeds_every_event_and_the_index_keeps_each_line_exactly(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path)
    record_traffic(config, 700, START, END)
    assert export(config) == {"store:<data_dir>/index.sqlite": 700}
    assert indexed_lines(index_path(config)) == log_lines(config)
    # Caught up: running again consumes nothing and adds nothing.
    assert export(config) == {"store:<data_dir>/index.sqlite": 0}
    with EventIndex(index_path(config), readonly=True) as index:
        assert index.count() == 700
        blocks = index.conn.execute("SELECT count(*) FROM blocks").fetchone()[0]
        assert blocks >= 700 // BLOCK_EVENTS


def test_new_events_are_added_where_the_cursor_stopped(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    record_traffic(config, 300, START, END, seed=1)
    export(config)
    record_traffic(config, 200, END, datetime(2026, 9, 4, tzinfo=UTC), seed=2)
    assert export(config) == {"store:<data_dir>/index.sqlite": 200}
    assert indexed_lines(index_path(config)) == log_lines(config)


def test_redelivered_events_are_indexed_once(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    record_traffic(config, 400, START, END)
    export(config)
    # A lost cursor (crash between commit and cursor save) replays the whole log.
    forget_cursors(config)
    assert export(config) == {"store:<data_dir>/index.sqlite": 400}
    lines = log_lines(config)
    assert indexed_lines(index_path(config)) == lines
    # Duplicates inside one batch, and a batch that is all known.
    with EventIndex(tmp_path / "other.sqlite") as index:
        assert index.add(lines[:10] + lines[5:15] + lines[:3]) == 15
        assert index.add(lines[:15]) == 0
        assert index.add(lines[10:20]) == 5
        assert index.count() == 20
        # Every event has a correlation id (req_…): one full-text row per indexed event.
        text_rows, event_rows = text_and_event_rows(index)
        assert sorted(text_rows) == event_rows
    assert indexed_lines(tmp_path / "other.sqlite") == lines[:20]


def test_free_text_finds_only_what_was_indexed_once(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    record_traffic(config, 400, START, END)
    export(config)
    forget_cursors(config)
    export(config)
    search = IndexSearch(index_path(config))
    try:
        hits = search.search(Filter(query="unreachable"), None)
        assert hits and len({h.fields.event_id for h in hits}) == len(hits)
    finally:
        search.close()


def test_records_that_are_not_events_are_counted_and_skipped(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    record_traffic(config, 5, START, END)
    lines = log_lines(config)
    with EventIndex(tmp_path / "i.sqlite") as index:
        added = index.add([lines[0], b"not json", b'{"event_type": "topic.created"}', lines[1]])
        assert added == 2
        assert index.rejected == 2


def test_the_store_destination_is_configured_by_type_with_a_default_path(tmp_path: Path) -> None:
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path),
            "audit": {"destinations": [{"type": "store"}, {"type": "store", "path": "x.db"}]},
        }
    )
    first, second = config.audit.all_destinations
    default = build_exporter(first, config.data_path)
    assert isinstance(default, StoreExporter) and default.path == tmp_path / "index.sqlite"
    other = build_exporter(second, config.data_path)
    assert isinstance(other, StoreExporter) and other.path == Path("x.db")


def test_only_the_native_format_is_accepted_for_the_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="native"):
        Config.model_validate({"audit": {"destinations": [{"type": "store", "format": "ocsf"}]}})


def test_an_index_of_another_schema_version_or_a_foreign_file_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "i.sqlite"
    EventIndex(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 999"):
        EventIndex(path)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not a kaudit search index"):
        EventIndex(foreign, readonly=True)
    with pytest.raises(StoreError, match="no search index at"):
        EventIndex(tmp_path / "missing.sqlite", readonly=True)


def test_events_survive_reopening_and_old_ones_can_be_deleted(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    record_traffic(config, 500, START, END)
    export(config)
    lines = log_lines(config)
    middle = datetime(2026, 9, 2, tzinfo=UTC)
    keep = [
        line for line in lines if datetime.fromisoformat(orjson.loads(line)["timestamp"]) >= middle
    ]
    with EventIndex(index_path(config)) as index:
        assert index.delete_before(int(middle.timestamp() * 1000)) == len(lines) - len(keep)
    assert indexed_lines(index_path(config)) == keep
