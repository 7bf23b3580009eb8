"""Inclusion proofs of one event at a time, fast enough for a web page, and their check.

`kaudit prove` reads the whole local log for each proof. `LogProver` reads it once and
keeps, in memory, every leaf hash and the root of every aligned perfect subtree (about
64 bytes an event), then only reads what was appended since: a proof is then O(log n)
lookups. The document is the one `kaudit prove` writes (`proof.inclusion_document`'s
fields) and it is checked with `proof.verify_proof`, exactly as `kaudit verify-proof`
checks it, with the public key.

The event's own line is read from the log again for every proof, so an event changed in
the log after it was read still fails; other events changed after the first read are
found by `kaudit verify` (a changed length moves the lines after it, which also fails).
"""

from __future__ import annotations

import hashlib
import os
import threading
from array import array
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any, Literal

import orjson

from kaudit.integrity.keys import KeyRing
from kaudit.integrity.merkle import HASH_SIZE, leaf_hashes, node_hash
from kaudit.integrity.proof import ProofError, inclusion_path_document, verify_proof
from kaudit.integrity.store import StoredCheckpoint, checkpoint_files, read_checkpoints
from kaudit.log.segments import LogReader, Position, list_segments, segment_name

__all__ = ["InclusionCheck", "LogProver", "Status"]

Status = Literal["verified", "pending", "failed", "unchecked"]
"""verified: the proof holds under a trusted key; pending: not yet in a checkpoint;
failed: the proof, or the event's bytes, do not hold; unchecked: it cannot be checked
here (no checkpoints, no public key), which is never shown as verified."""

_NODE = b"\x01"
_sha256 = hashlib.sha256


@dataclass(frozen=True)
class InclusionCheck:
    status: Status
    message: str
    index: int | None = None
    """The event's leaf index in the log's tree (its position in the log)."""
    checkpoint: StoredCheckpoint | None = None
    document: dict[str, Any] | None = None
    """The inclusion proof, as `kaudit prove` writes it, when one could be made."""


class LogProver:
    """Proofs for the events of one local log directory (thread-safe)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._lock = threading.Lock()
        self._reset()
        self._checkpoint_stamp: tuple[tuple[str, int, int], ...] = ()
        self._checkpoint: StoredCheckpoint | None = None

    def _reset(self) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._offsets = array("q")
        self._segments: list[tuple[int, int]] = []  # (first leaf index, segment base)
        self._position: Position | None = None

    @property
    def size(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    # -- reading the log -------------------------------------------------------------------

    def _stale(self) -> bool:
        """Whether what was read no longer matches the log (segments removed, cut back)."""
        if not self._segments:
            return False
        on_disk = list_segments(self.log_dir)
        if not on_disk or on_disk[0] != self._segments[0][1]:
            return True
        assert self._position is not None
        try:
            size = os.stat(self.log_dir / segment_name(self._position.segment)).st_size
        except FileNotFoundError:
            return True
        return size < self._position.offset

    def catch_up(self) -> int:
        """Read what was appended since the last call; the number of events now known."""
        with self._lock:
            self._catch_up()
            return self.size

    def _catch_up(self) -> None:
        if self._stale():
            self._reset()
        reader = LogReader(self.log_dir)
        position = self._position or reader.start()
        while True:
            lines, after = reader.read(position, max_lines=20_000)
            if not lines:
                break
            if after.segment != position.segment or not self._segments:
                self._segments.append((self.size, after.segment))
                offset = 0 if after.segment != position.segment else position.offset
            else:
                offset = position.offset
            self._offsets.extend(accumulate(map(len, lines[:-1]), initial=offset))
            self._levels[0] += b"".join(leaf_hashes([x.rstrip(b"\n") for x in lines]))
            position = after
        self._position = position
        self._grow_levels()

    def _grow_levels(self) -> None:
        """Hash the new pairs of each level into the next one."""
        levels, sha, prefix, h = self._levels, _sha256, _NODE, HASH_SIZE
        j = 0
        while len(levels[j]) >= 2 * h:
            if len(levels) == j + 1:
                levels.append(bytearray())
            below, above = levels[j], levels[j + 1]
            have, want = len(above) // h, len(below) // (2 * h)
            view = memoryview(below)
            above += b"".join(
                sha(prefix + view[2 * p * h : (2 * p + 2) * h]).digest() for p in range(have, want)
            )
            j += 1

    def _range_root(self, lo: int, hi: int) -> bytes:
        """The root of leaves [lo, hi), `lo` aligned as RFC 6962's splits keep it."""
        n = hi - lo
        if n & (n - 1) == 0:
            j = n.bit_length() - 1
            at = (lo >> j) * HASH_SIZE
            return bytes(self._levels[j][at : at + HASH_SIZE])
        k = 1 << ((n - 1).bit_length() - 1)
        return node_hash(self._range_root(lo, lo + k), self._range_root(lo + k, hi))

    def _path(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 PATH(index, D[size]), as `merkle.inclusion_proof` makes it."""
        path: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = 1 << ((hi - lo - 1).bit_length() - 1)
            if index < lo + k:
                path.append(self._range_root(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._range_root(lo, lo + k))
                lo += k
        path.reverse()
        return path

    def index_of(self, sequence: int) -> int | None:
        """The leaf index of the event with this sequence number, if the log holds it."""
        found = None
        for first, base in self._segments:
            if base <= sequence:
                found = first + (sequence - base)
        return found if found is not None and found < self.size else None

    def line_at(self, index: int) -> bytes:
        """The log's line at leaf `index`, as it is in the log now (no newline)."""
        base = next(b for first, b in reversed(self._segments) if first <= index)
        with open(self.log_dir / segment_name(base), "rb") as f:
            f.seek(self._offsets[index])
            return f.readline().rstrip(b"\n")

    # -- checkpoints -----------------------------------------------------------------------

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The newest checkpoint stored beside the log (read again when its files change)."""
        stamp = tuple(
            (p.name, s.st_size, s.st_mtime_ns)
            for p in checkpoint_files(self.log_dir)
            for s in (p.stat(),)
        )
        if stamp != self._checkpoint_stamp:
            latest = None
            for _, _, item in read_checkpoints(self.log_dir):
                if isinstance(item, StoredCheckpoint):
                    latest = item
            self._checkpoint, self._checkpoint_stamp = latest, stamp
        return self._checkpoint

    # -- proving ---------------------------------------------------------------------------

    def check(
        self,
        event_id: str,
        sequence: int | None,
        line: bytes,
        verifiers: KeyRing | None,
        wait: float = 5.0,
    ) -> InclusionCheck:
        """Whether the event `line` (as the index holds it) is in the signed log. While
        the log is still being read (the first time, a large log takes a while) for
        longer than `wait` seconds, it says so instead of keeping the caller waiting."""
        if not self._lock.acquire(timeout=wait):
            return InclusionCheck(
                "unchecked",
                f"the log is still being read for proofs ({self.size:,} events so far); "
                "reload in a moment",
            )
        try:
            return self._check(event_id, sequence, line, verifiers)
        finally:
            self._lock.release()

    def _check(
        self, event_id: str, sequence: int | None, line: bytes, verifiers: KeyRing | None
    ) -> InclusionCheck:
        self._catch_up()
        checkpoint = self.latest_checkpoint()
        index = self.index_of(sequence) if sequence is not None else None
        if index is None:
            return InclusionCheck(
                "failed" if checkpoint is not None else "unchecked",
                f"the log in {self.log_dir} holds no event with sequence number {sequence}",
            )
        in_log = self.line_at(index)
        if checkpoint is None:
            return InclusionCheck(
                "unchecked",
                "the log has no signed checkpoint to prove it against "
                "(audit.integrity.checkpoints is off, or none was written yet)",
                index,
            )
        if index >= checkpoint.size:
            return InclusionCheck(
                "pending",
                f"not yet checkpointed: the latest checkpoint covers {checkpoint.size} "
                f"events, this is event {index}",
                index,
                checkpoint,
            )
        if checkpoint.size > self.size:
            return InclusionCheck(
                "failed",
                f"the log holds {self.size} events but its checkpoint covers "
                f"{checkpoint.size}: events were removed",
                index,
                checkpoint,
            )
        path = self._path(index, checkpoint.size)
        document = inclusion_path_document(event_id, index, in_log, path, checkpoint)
        if in_log != line:
            return InclusionCheck(
                "failed",
                "the event in the log differs from the event as it was indexed",
                index,
                checkpoint,
                document,
            )
        if verifiers is None or not len(verifiers):
            return InclusionCheck(
                "unchecked",
                "no public key is configured to check the checkpoint's signature with",
                index,
                checkpoint,
                document,
            )
        try:
            said = verify_proof(orjson.dumps(document), verifiers)
        except ProofError as exc:
            return InclusionCheck("failed", str(exc), index, checkpoint, document)
        return InclusionCheck("verified", said, index, checkpoint, document)
