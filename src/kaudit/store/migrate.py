"""Upgrading a search index made by an earlier kaudit in place, so that whoever upgrades
keeps searching with nothing to rebuild and no error.

This module owns the steps from each older schema version to `schema.SCHEMA_VERSION`.
From version 2: events get their source (read again from the stored lines, which the
index keeps byte for byte), an empty cluster becomes none, blocks get `max_ts`, the
rollups are counted, the source is listed among the terms, and the full-text index
merges less often. It is one transaction: an upgrade that fails (a full disk, say)
leaves the index as it was and the next open tries again; another process opening the
index meanwhile waits for it and then finds the index upgraded.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

from kaudit.store import rollups
from kaudit.store.schema import FTS_AUTOMERGE, SCHEMA_VERSION, NotAnEvent, read_event

log = logging.getLogger("kaudit.store")

UPGRADABLE = frozenset({2})
"""Schema versions `upgrade` brings to the current one."""

_UPDATE_EVERY = 20_000


def _version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0])


def upgrade(conn: sqlite3.Connection, path: Path, decompress: Callable[[bytes], bytes]) -> None:
    """Bring the index on `conn` (outside any transaction) to SCHEMA_VERSION."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _version(conn)  # again: another process may have upgraded it meanwhile
        if version in UPGRADABLE:
            log.warning(
                "search index %s: upgrading from schema version %d to %d, once "
                "(it reads every stored event again)",
                path,
                version,
                SCHEMA_VERSION,
            )
            _from_2(conn, decompress)
            conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
            )
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _from_2(conn: sqlite3.Connection, decompress: Callable[[bytes], bytes]) -> None:
    conn.execute("ALTER TABLE events ADD COLUMN source TEXT")
    conn.execute("ALTER TABLE blocks ADD COLUMN max_ts INTEGER NOT NULL DEFAULT 0")
    conn.execute("UPDATE events SET cluster = NULL WHERE cluster = ''")
    conn.execute("DELETE FROM terms WHERE kind = 'cluster' AND value = ''")
    sources: list[tuple[str, int]] = []
    block_max: list[tuple[int, int]] = []
    running: int | None = None
    for first, data in conn.execute("SELECT first_id, data FROM blocks ORDER BY first_id"):
        for offset, line in enumerate(decompress(data).split(b"\n")):
            try:
                fields, _ = read_event(line)
            except NotAnEvent:
                continue  # never indexed
            running = fields.ts if running is None else max(running, fields.ts)
            if fields.source is not None:
                sources.append((fields.source, first + offset))
        if running is not None:
            block_max.append((running, first))
        if len(sources) >= _UPDATE_EVERY:
            conn.executemany("UPDATE events SET source = ? WHERE id = ?", sources)
            sources.clear()
    conn.executemany("UPDATE events SET source = ? WHERE id = ?", sources)
    conn.executemany("UPDATE blocks SET max_ts = ? WHERE first_id = ?", block_max)
    conn.execute("CREATE INDEX IF NOT EXISTS blocks_max_ts ON blocks (max_ts)")
    conn.execute(
        "INSERT OR IGNORE INTO terms SELECT DISTINCT 'source', source FROM events "
        "WHERE source IS NOT NULL"
    )
    # One statement at a time: `executescript` would commit the transaction first.
    for statement in rollups.ROLLUPS_DDL.split(";"):
        if statement.strip():
            conn.execute(statement)
    rollups.rebuild(conn)
    conn.execute(
        "INSERT INTO events_text (events_text, rank) VALUES ('automerge', ?)", (FTS_AUTOMERGE,)
    )
