"""The hourly rollups agree with the rows they count: after indexing, after retention
removes part of an hour, after the same events are delivered again, and in an index
rebuilt from the log; and an index made by the previous schema is upgraded in place
when it is opened, by the exporter or by a search."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from kaudit_store_data import (
    export,
    forget_cursors,
    index_path,
    log_lines,
    make_config,
    record_traffic,
)

from kaudit.store.index import EventIndex
from kaudit.store.query import Filter, IndexSearch, ScanSearch
from kaudit.store.schema import SCHEMA_VERSION

START = datetime(2026, 9, 1, tzinfo=UTC)
END = datetime(2026, 9, 4, tzinfo=UTC)

_ROW_GROUPS = (
    "SELECT ts / 3600000, event_type, actor, result, resource_type, ifnull(cluster, ''), "
    "ifnull(source, ''), count(*) FROM events GROUP BY 1, 2, 3, 4, 5, 6, 7"
)


def rollups_and_rows(path: Path) -> tuple[set[tuple[object, ...]], set[tuple[object, ...]]]:
    """The hourly rollups, and the same counted from the rows; checks on the way that
    the daily rollups are the hourly ones summed."""
    with EventIndex(path, readonly=True) as index:
        rollups = set(index.conn.execute("SELECT * FROM rollups").fetchall())
        rows = set(index.conn.execute(_ROW_GROUPS).fetchall())
        daily = set(index.conn.execute("SELECT * FROM rollups_daily").fetchall())
        summed = index.conn.execute(
            "SELECT hour / 24, event_type, actor, result, resource_type, cluster, source, "
            "sum(count) FROM rollups GROUP BY 1, 2, 3, 4, 5, 6, 7"
        ).fetchall()
    assert daily == set(summed)
    return rollups, rows


def assert_agree(path: Path) -> int:
    rollups, rows = rollups_and_rows(path)
    assert rollups == rows
    return sum(r[-1] for r in rows)  # type: ignore[misc]


def test_rollups_count_the_rows_after_indexing_retention_and_a_reindex(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    record_traffic(config, 900, START, END)
    export(config)
    path = index_path(config)
    assert assert_agree(path) == 900

    # The same events delivered again add nothing, to the rows or the counts.
    forget_cursors(config)
    export(config)
    assert assert_agree(path) == 900

    # A batch of which only some events are new counts only those.
    partial = tmp_path / "partial.sqlite"
    lines = log_lines(config)
    with EventIndex(partial) as index:
        index.add(lines[:300])
        assert index.add(lines[200:600]) == 300
    assert assert_agree(partial) == 600

    # Retention cuts an hour in two.
    cutoff = datetime(2026, 9, 2, 13, 17, 42, tzinfo=UTC)
    with EventIndex(path) as index:
        removed = index.delete_before(int(cutoff.timestamp() * 1000))
    assert 0 < removed < 900
    assert assert_agree(path) == 900 - removed

    # A new index built from the log counts the same as this one for what both hold.
    rebuilt = tmp_path / "rebuilt.sqlite"
    with EventIndex(rebuilt) as index:
        index.add(log_lines(config))
        index.delete_before(int(cutoff.timestamp() * 1000))
    assert rollups_and_rows(rebuilt)[0] == rollups_and_rows(path)[0]

    # Count-bys read from the rollups give what a scan of the log gives.
    search = IndexSearch(path)
    try:
        scan = ScanSearch(str(config.log_dir))
        for flt in (Filter(since=cutoff), Filter(since=cutoff, result="denied", actor="bob")):
            for keys in (("type",), ("actor", "result"), ("day",), ("source",), ("hour",)):
                assert search.count_by(flt, keys) == scan.count_by(flt, keys)
    finally:
        search.close()


def _as_version_2(path: Path) -> None:
    """Turn an index into what kaudit made before schema version 3: no source column,
    no block times, no rollups, no source terms."""
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("DROP TABLE rollups")
        conn.execute("DROP TABLE rollups_daily")
        conn.execute("DROP INDEX blocks_max_ts")
        conn.execute("ALTER TABLE blocks DROP COLUMN max_ts")
        conn.execute("ALTER TABLE events DROP COLUMN source")
        conn.execute("DELETE FROM terms WHERE kind = 'source'")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.close()


def test_an_index_of_schema_version_2_is_upgraded_when_opened(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    record_traffic(config, 600, START, END)
    export(config)
    path = index_path(config)
    search = IndexSearch(path)
    flt = Filter(source="sdk", since=datetime(2026, 9, 2, 5, 30, tzinfo=UTC))
    try:
        before = [h.line for h in search.search(flt, 50)], search.count_by(flt, ("type",))
        text = [h.line for h in search.search(Filter(query="orders", since=START), 20)]
    finally:
        search.close()
    before_rollups = rollups_and_rows(path)[0]

    # A search opening it first upgrades it (it would otherwise be read-only).
    _as_version_2(path)
    search = IndexSearch(path)
    try:
        assert ([h.line for h in search.search(flt, 50)], search.count_by(flt, ("type",))) == (
            before
        )
        assert [h.line for h in search.search(Filter(query="orders", since=START), 20)] == text
    finally:
        search.close()
    assert rollups_and_rows(path)[0] == before_rollups

    # So does the store destination, which then goes on adding events.
    _as_version_2(path)
    record_traffic(config, 100, END, datetime(2026, 9, 5, tzinfo=UTC), seed=2)
    assert export(config) == {"store:<data_dir>/index.sqlite": 100}
    assert assert_agree(path) == 700
    with EventIndex(path, readonly=True) as index:
        version = index.conn.execute("SELECT value FROM meta").fetchone()[0]
        assert int(version) == SCHEMA_VERSION
