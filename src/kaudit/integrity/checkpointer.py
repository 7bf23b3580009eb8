"""The Merkle tree of one log stream and when its signed checkpoints are written.

A `Checkpointer` knows nothing of where the stream lives or where checkpoints go: it is
fed leaf hashes in stream order and hands each signed checkpoint (tree size, frontier,
signed note) to a `publish` callback — the local log's follower process writes them
beside the segments, the Kafka log produces them to its companion topic. A checkpoint is
due every `every_events` events, every `every_seconds` while events come, as a heartbeat
while idle (same tree, new time), and once more, marked `closed`, on clean shutdown.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from kaudit.integrity.checkpoint import Checkpoint, parse_signed, sign
from kaudit.integrity.keys import Signer
from kaudit.integrity.merkle import MerkleTree

# (tree size, frontier, signed note) of one checkpoint, to be stored by the caller.
Publish = Callable[[int, tuple[bytes, ...], bytes], None]


def heartbeat_promise(every_seconds: float) -> int:
    """The `heartbeat` a checkpoint promises (seconds until the next one at the latest):
    it allows for the writer's half-second tick and whole-second times."""
    return max(1, math.ceil(every_seconds)) + 2


def resumable_tree(size: int, frontier: Sequence[bytes], note: bytes) -> bool:
    """Whether a stored frontier folds to the root its own signed note holds: a frontier
    damaged on disk must not be built on (the writer rebuilds the tree from the log).
    The note's signature is not checked here (it may be an older key's): `kaudit verify`
    does that."""
    try:
        tree = MerkleTree.from_frontier(size, list(frontier))
        head = parse_signed(note, []).checkpoint
    except ValueError:
        return False
    return head.size == size and head.root == tree.root()


class Checkpointer:
    """Keeps one stream's Merkle tree and publishes its signed checkpoints when due."""

    def __init__(
        self,
        tree: MerkleTree,
        signer: Signer,
        origin: str,
        publish: Publish,
        *,
        every_events: int,
        every_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tree = tree
        self.signer = signer
        self.origin = origin
        self.every_events = every_events
        self.every_seconds = every_seconds
        self.heartbeat = heartbeat_promise(every_seconds)
        self._publish = publish
        self._clock = clock
        self._since = 0
        self._last_time = 0.0
        self.published_size = -1  # tree size of the last checkpoint published

    def extend(self, leaves: Sequence[bytes]) -> None:
        """Add the leaf hashes of events that are now durable, in stream order."""
        self.tree.extend(leaves)
        self._since += len(leaves)

    @property
    def due(self) -> bool:
        return self._since >= self.every_events or (
            self._clock() - self._last_time >= self.every_seconds
        )

    @property
    def uncovered(self) -> bool:
        """Whether the tree holds events no published checkpoint covers yet."""
        return self.tree.size != self.published_size

    def tick(self) -> None:
        """A heartbeat when idle: the stream is whole up to now."""
        if self._clock() - self._last_time >= self.every_seconds:
            self.checkpoint()

    def checkpoint(self, *, closed: bool = False) -> bytes:
        """Sign and publish the tree head now; returns the signed note."""
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
        note = sign(head, self.signer)
        self._publish(size, tuple(self.tree.frontier()), note)
        self._since = 0
        self._last_time = now
        self.published_size = size
        return note
