"""What makes indexing fast without changing what is indexed: reading only the members
the index needs (the same fields and words as decoding the whole event), adding a large
batch in parts committed on the writer thread, and the store's larger runner batches."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from kaudit_store_data import (
    export,
    index_path,
    log_lines,
    make_config,
    record_traffic,
    text_and_event_rows,
)

from kaudit.config import Config
from kaudit.config.model import StoreDestination
from kaudit.exporters import ExporterRunner, runners_for
from kaudit.log.cursor import Cursor
from kaudit.store import index as index_module
from kaudit.store.exporter import StoreExporter
from kaudit.store.index import EventIndex
from kaudit.store.query import Filter, IndexSearch, ScanSearch
from kaudit.store.schema import NotAnEvent, fields_of, read_event, search_text, words

START = datetime(2026, 9, 1, tzinfo=UTC)
END = datetime(2026, 9, 3, tzinfo=UTC)


def _store_exporter(config: Config) -> StoreExporter:
    """The exporter of the `store` destination `make_config` sets up."""
    (destination,) = config.audit.all_destinations
    assert isinstance(destination, StoreDestination)
    return StoreExporter(destination, config.data_path)


def test_reading_a_line_gives_the_fields_and_words_of_the_whole_decoded_event(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path)
    record_traffic(config, 600, START, END)
    lines = log_lines(config)
    with_details = with_authorization = 0
    for line in lines:
        obj = orjson.loads(line)
        fields, text = read_event(line)
        assert fields == fields_of(obj)
        assert words(text) == words(search_text(obj))
        with_details += bool(obj["details"])
        with_authorization += obj["authorization"] is not None
    # The generated traffic exercises the members that are read specially.
    assert with_details > 0 and with_authorization > 0


def test_a_line_of_another_shape_is_read_from_the_whole_decoded_event(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    record_traffic(config, 3, START, END)
    obj = orjson.loads(log_lines(config)[0])
    obj["actor"]["client_id"] = 42  # not a string: not a word, but still an event
    obj["details"] = {"note": 'caf\u00e9 "quoted"\nnext'}
    line = orjson.dumps(obj)
    fields, text = read_event(line)
    assert fields == fields_of(obj)
    assert words(text) == words(search_text(obj))
    assert "42" not in words(text) and {"café", "quoted"} <= set(words(text))
    # Escapes in the line's details are read as what they stand for.
    escaped = line.replace("café".encode(), b"caf\\u00e9")
    assert escaped != line and orjson.loads(escaped) == obj
    assert words(read_event(escaped)[1]) == words(text)
    for bad, reason in ((b"[1, 2]", "list"), (b"{not json", "not JSON"), (b"{}", "audit")):
        with pytest.raises(NotAnEvent, match=reason):
            read_event(bad)


def test_a_batch_larger_than_a_part_is_added_in_parts_with_matching_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "PART_EVENTS", 7)
    config = make_config(tmp_path)
    record_traffic(config, 60, START, END)
    lines = log_lines(config)
    path = tmp_path / "parts.sqlite"
    with EventIndex(path) as index:
        # Repeats inside a part and across parts: each event once, in log order.
        assert index.add(lines[:30] + lines[3:12] + lines[25:40]) == 40
        assert index.add(lines[35:] + lines[:5]) == 20
        assert index.count() == 60
        text_rows, event_rows = text_and_event_rows(index)
        assert sorted(text_rows) == event_rows
    search = IndexSearch(path)
    try:
        assert [h.line for h in reversed(search.search(Filter(), None))] == lines
        # The words of each row are its own event's: free text finds what a scan finds.
        scan = ScanSearch("parts", lambda: iter(lines))
        for i in (0, 13, 59):
            event = orjson.loads(lines[i])
            for query in (event["context"]["correlation_id"], event["actor"]["ip_address"]):
                found = [h.line for h in search.search(Filter(query=query), None)]
                assert found == [h.line for h in scan.search(Filter(query=query), None)]
                assert lines[i] in found
    finally:
        search.close()


def test_the_store_runner_reads_large_batches_unless_told_otherwise(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    record_traffic(config, 50, START, END)
    (runner,) = runners_for(config)
    try:
        assert runner.batch_max == StoreExporter.batch_max == 20_000
    finally:
        runner.close()
    exporter = _store_exporter(config)
    told = ExporterRunner(
        exporter, log_dir=config.log_dir, cursor=Cursor(tmp_path / "c.json"), batch_max=20
    )
    try:
        assert told.run_once() == 20
        assert told.drain() == 30
    finally:
        told.close()
    assert exporter.added == 50
    assert export(config) == {"store:<data_dir>/index.sqlite": 50}
    with EventIndex(index_path(config), readonly=True) as index:
        assert index.count() == 50


def test_the_cursor_waits_for_the_commit_of_the_last_part_it_handed_over(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path)
    record_traffic(config, 60, START, END)
    lines = log_lines(config)
    exporter = _store_exporter(config)
    cursor_path = tmp_path / "c.json"
    runner = ExporterRunner(
        exporter, log_dir=config.log_dir, cursor=Cursor(cursor_path), batch_max=20
    )
    # Hold the writer thread, as a slow commit of an earlier part would.
    release = threading.Event()
    held = exporter.index._writer.submit(release.wait)
    try:
        assert runner.run_once() == 20  # returns with the batch's commit still to come
        assert exporter.unsettled_since() is not None
        assert Cursor(cursor_path).load() is None  # not past uncommitted events
        release.set()
        held.result()
        assert runner.drain() == 40
        assert exporter.unsettled_since() is None
    finally:
        release.set()
        runner.close()
    assert exporter.added == 60
    saved = Cursor(cursor_path).load()
    assert saved is not None and saved.offset == sum(len(x) + 1 for x in lines)
    with EventIndex(index_path(config), readonly=True) as index:
        assert index.count() == 60


def test_a_part_whose_commit_failed_is_written_again_and_nothing_is_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path)
    record_traffic(config, 1500, START, END)
    lines = log_lines(config)
    exporter = _store_exporter(config)
    conn = exporter.index.conn
    cursor_path = tmp_path / "c.json"
    retries: list[float] = []

    def room_again(seconds: float) -> None:
        # The runner's back-off: meanwhile the disk got room again.
        retries.append(seconds)
        conn.execute("PRAGMA max_page_count = 1073741823")

    runner = ExporterRunner(
        exporter,
        log_dir=config.log_dir,
        cursor=Cursor(cursor_path),
        batch_max=500,
        sleep=room_again,
    )
    release = threading.Event()

    def disk_full_from_now() -> None:
        # On the writer thread, before the commit of the next batch: the file may not
        # grow by another page, so that commit fails (a full disk, as SQLite sees one).
        release.wait()
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")

    try:
        assert runner.run_once() == 500
        runner.settle(5.0)
        first_batch_end = Cursor(cursor_path).load()
        assert first_batch_end is not None and first_batch_end.offset > 0
        held = exporter.index._writer.submit(disk_full_from_now)
        assert runner.run_once() == 500  # its commit waits behind the held writer
        release.set()
        held.result()
        exporter.index._in_flight.future.exception(timeout=5.0)  # type: ignore[union-attr]
        # The failed part is kept, and the cursor stays before it.
        assert exporter.unsettled_since() is not None
        runner.settle(0.2)
        assert Cursor(cursor_path).load() == first_batch_end
        with caplog.at_level("WARNING", logger="kaudit.exporters"):
            assert runner.drain() == 500
    finally:
        release.set()
        runner.close()
    assert retries and runner.metrics.dead_lettered == 0
    assert "database or disk is full" in caplog.text
    assert exporter.added == 1500
    search = IndexSearch(index_path(config))
    try:
        # Every event once, in log order.
        assert [h.line for h in reversed(search.search(Filter(), None))] == lines
    finally:
        search.close()


def test_rows_written_by_the_writer_thread_keep_every_field_exactly(tmp_path: Path) -> None:
    """The writer thread adds a part's rows from one JSON array: quotes, backslashes,
    control and non-ASCII characters, missing clusters and sources, and large sequence
    numbers come back as the fields read from each line."""
    config = make_config(tmp_path)
    record_traffic(config, 40, START, END)
    lines = []
    for i, line in enumerate(log_lines(config)):
        event = orjson.loads(line)
        event["actor"]["id"] = f'User:\u00e9l\u00e8ve "{i}" \\ \t\u2603\U0001f600'
        event["resource"]["id"] = f"topic-{i}-\u00fc\u00df"
        if i % 3 == 0:
            event["context"]["cluster_id"] = None
            event["context"]["source"] = ""
        event["integrity"]["sequence_number"] = 2**62 + i if i % 2 else None
        lines.append(orjson.dumps(event))
    with EventIndex(tmp_path / "fields.sqlite") as index:
        assert index.add(lines) == 40
        stored = index.conn.execute(
            f"SELECT {index_module.FIELD_COLUMNS} FROM events ORDER BY id"
        ).fetchall()
    assert [tuple(row) for row in stored] == [tuple(read_event(line)[0]) for line in lines]
    assert {type(row[0]) for row in stored} == {int}
