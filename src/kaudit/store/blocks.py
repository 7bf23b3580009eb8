"""The native lines the index keeps: consecutive events compressed together in blocks.

This module owns the `blocks` table's rows: how a part's lines become blocks (`pack`),
how they are written with the latest timestamp up to each (`insert`), and how lines are
read back by event row id (`read`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import zstandard

from kaudit.store.schema import Fields

BLOCK_EVENTS = 32
"""Lines compressed together: enough for zstd to find the repetition between events
(to about an eighth of their size), few enough that fetching one event decompresses
little (about 25 KiB). A search's hits are often one to a block: 64 made reading them
back half the time of a filtered search at a million events."""
_ZSTD_LEVEL = 1

Packed = tuple[int, int, bytes, int]
"""(offset of the first line in the part, count, compressed lines, latest timestamp)."""


class MissingLine(LookupError):
    """An event row whose line is in no block (a damaged index)."""


class LineBlocks:
    """Packs and reads blocks (one per index: zstd contexts are reused)."""

    def __init__(self) -> None:
        self._compress = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress
        self._decompress = zstandard.ZstdDecompressor().decompress

    def decompress(self, data: bytes) -> bytes:
        return self._decompress(data)

    def pack(self, lines: list[bytes], rows: list[Fields]) -> list[Packed]:
        """The blocks of a part's lines (and of their fields, in the same order)."""
        stamps = [f.ts for f in rows]
        return [
            (
                at,
                len(block),
                self._compress(b"\n".join(block)),
                max(stamps[at : at + BLOCK_EVENTS]),
            )
            for at in range(0, len(lines), BLOCK_EVENTS)
            for block in (lines[at : at + BLOCK_EVENTS],)
        ]

    @staticmethod
    def insert(conn: sqlite3.Connection, first: int, packed: list[Packed]) -> None:
        """Write a part's blocks, its first event having row id `first`; each block's
        `max_ts` is the latest timestamp of its events and of every block before it."""
        latest = conn.execute("SELECT max_ts FROM blocks ORDER BY first_id DESC LIMIT 1").fetchone()
        running = latest[0] if latest else None
        rows = []
        for at, count, data, block_max in packed:
            running = block_max if running is None else max(running, block_max)
            rows.append((first + at, count, data, running))
        conn.executemany("INSERT INTO blocks VALUES (?, ?, ?, ?)", rows)

    def read(
        self, conn: sqlite3.Connection, ids: Sequence[int]
    ) -> tuple[dict[int, bytes], list[tuple[int, int]]]:
        """The lines of `ids`, and the blocks (first id, count) they were read from;
        MissingLine naming the first id without one.

        A block's lines are found by walking its newlines up to the last one wanted,
        not by splitting it: a search's hits are often one or two to a block."""
        out: dict[int, bytes] = {}
        blocks: list[tuple[int, int]] = []
        text = b""
        first = count = -1
        at = line = 0  # `text[at:]` starts with line number `line` of the block
        for i in sorted(ids):
            if not first <= i < first + count:
                row = conn.execute(
                    "SELECT first_id, count, data FROM blocks WHERE first_id <= ? "
                    "ORDER BY first_id DESC LIMIT 1",
                    (i,),
                ).fetchone()
                if row is None or not row[0] <= i < row[0] + row[1]:
                    raise MissingLine(i)
                first, count = row[0], row[1]
                text = self._decompress(row[2])
                at = line = 0
                blocks.append((first, count))
            while line < i - first:
                at = text.index(b"\n", at) + 1
                line += 1
            end = text.find(b"\n", at)
            out[i] = text[at:] if end < 0 else text[at:end]
        return out, blocks
