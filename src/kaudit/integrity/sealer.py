"""The writer's integrity step: the HMAC chain on each line and, over the same lines,
the RFC 6962 Merkle tree whose signed checkpoints are written beside the log.

Built from `audit.integrity`; the recorder calls it in sequence order on its single
writer thread, so it needs no locking. A checkpoint is written every `every_events`
events, every `every_seconds` while events come, as a heartbeat while idle (same tree,
new time) and on clean shutdown (marked `closed`).
"""

from __future__ import annotations

import hashlib
import math
import socket
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from kaudit.config.model import Integrity
from kaudit.errors import LogError
from kaudit.integrity.chain import HmacChain, key_from_env, split_sealed
from kaudit.integrity.checkpoint import Checkpoint, sign
from kaudit.integrity.keys import Signer, load_signer
from kaudit.integrity.merkle import MerkleTree, leaf_hash
from kaudit.integrity.store import LocalCheckpointStore, StoredCheckpoint, last_checkpoint
from kaudit.log.segments import LogReader, Position, SegmentLog

_LEAF_PREFIX = hashlib.sha256(b"\x00")  # RFC 6962 leaf domain separation


class Checkpointer:
    """Keeps the Merkle tree of one local log stream and writes its signed checkpoints."""

    def __init__(
        self,
        log: SegmentLog,
        signer: Signer,
        origin: str,
        *,
        every_events: int,
        every_seconds: float,
        anchor: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.log = log
        self.signer = signer
        self.origin = origin
        self.every_events = every_events
        self.every_seconds = every_seconds
        # The promise allows for the writer's half-second tick and whole-second times.
        self.heartbeat = max(1, math.ceil(every_seconds)) + 2
        self.store = LocalCheckpointStore(log.dir)
        self.anchor = None if anchor is None else LocalCheckpointStore(anchor.parent, anchor)
        self._clock = clock
        self.tree = self._resume()
        self._since = 0
        self._last_time = 0.0
        # A checkpoint at start says where this run begins (also after an unclean stop).
        self.checkpoint()

    def _resume(self) -> MerkleTree:
        """The tree at the log's end: from the last checkpoint's frontier plus the lines
        written after it (all of the log when it never had checkpoints)."""
        stored = last_checkpoint(self.log.dir)
        tree = MerkleTree()
        start: Position | None = None
        if stored is not None and stored.size <= self.log.next_sequence:
            tree = MerkleTree.from_frontier(stored.size, list(stored.frontier))
            start = Position(stored.segment, stored.offset)
        reader = LogReader(self.log.dir)
        batch: list[bytes] = []
        for _, line in reader.iter_lines(start):
            batch.append(leaf_hash(line.rstrip(b"\n")))
            if len(batch) >= 10_000:
                tree.extend(batch)
                batch.clear()
        tree.extend(batch)
        if tree.size != self.log.next_sequence:
            raise LogError(
                f"the audit log in {self.log.dir} holds {tree.size} events by its checkpoints "
                f"and segments but its next sequence number is {self.log.next_sequence}: "
                "run `kaudit verify` on it"
            )
        return tree

    def appended(self, lines: Sequence[bytes]) -> None:
        # Leaf hashes without copying each line: a hash already fed the 0x00 prefix,
        # copied per line and fed a view that leaves out the newline.
        prefix = _LEAF_PREFIX
        leaves = []
        for line in lines:
            h = prefix.copy()
            h.update(memoryview(line)[:-1] if line[-1:] == b"\n" else line)
            leaves.append(h.digest())
        self.tree.extend(leaves)
        self._since += len(lines)
        if self._since >= self.every_events or (
            self._clock() - self._last_time >= self.every_seconds
        ):
            self.checkpoint()

    def tick(self) -> None:
        if self._clock() - self._last_time >= self.every_seconds:
            self.checkpoint()  # a heartbeat when idle: the log is whole up to now

    def checkpoint(self, *, closed: bool = False) -> StoredCheckpoint:
        now = self._clock()
        size = self.tree.size
        head = Checkpoint.create(
            self.origin,
            size,
            self.tree.root(),
            time=datetime.fromtimestamp(now, UTC),
            heartbeat=None if closed else self.heartbeat,
            sequence=(0, size - 1) if size else None,
            closed=closed,
        )
        position = self.log.position
        stored = StoredCheckpoint(
            size=size,
            segment=position.segment,
            offset=position.offset,
            frontier=tuple(self.tree.frontier()),
            note=sign(head, self.signer),
        )
        self.store.write(stored)
        if self.anchor is not None:
            self.anchor.write(stored)
        self._since = 0
        self._last_time = now
        return stored


class IntegritySealer:
    """Seals lines with the HMAC chain and feeds durable lines to the checkpointer."""

    def __init__(self, chain: HmacChain | None, checkpointer: Checkpointer | None) -> None:
        self.chain = chain
        self.checkpointer = checkpointer

    def seal(self, line: bytes) -> bytes:
        return self.chain.seal(line) if self.chain is not None else line

    def appended(self, lines: Sequence[bytes]) -> None:
        if self.checkpointer is not None:
            self.checkpointer.appended(lines)

    def tick(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.tick()

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.checkpoint(closed=True)


def default_origin(cluster_id: str | None) -> str:
    return f"kaudit/{cluster_id or socket.gethostname()}"


def build_sealer(
    integrity: Integrity, sink: object, cluster_id: str | None = None
) -> IntegritySealer | None:
    """The sealer for this configuration, continuing the chain and tree of the log."""
    chain = None
    if integrity.signing.enabled:
        previous = None
        last_line = getattr(sink, "last_line", None)
        if last_line is not None and integrity.chain.enabled:
            try:
                _, previous, _ = split_sealed(last_line)
            except ValueError:
                previous = None  # the log so far was not signed: the chain starts here
        key = key_from_env(integrity.signing.key_env_var)
        chain = HmacChain(key, chained=integrity.chain.enabled, previous=previous)
    checkpointer = None
    settings = integrity.checkpoints
    if settings.enabled:
        if not isinstance(sink, SegmentLog):
            raise LogError(
                "integrity.checkpoints are kept beside the local log; with the Kafka log "
                "use the HMAC chain (checkpoints on a companion topic are not available yet)"
            )
        assert settings.key_file is not None  # the config model requires it
        checkpointer = Checkpointer(
            sink,
            load_signer(settings.key_file),
            settings.origin or default_origin(cluster_id),
            every_events=settings.every_events,
            every_seconds=settings.every_seconds,
            anchor=Path(settings.anchor_path).expanduser() if settings.anchor_path else None,
        )
    if chain is None and checkpointer is None:
        return None
    return IntegritySealer(chain, checkpointer)
