"""Loading the checkpoints a log is verified against.

Every stored checkpoint record (beside the log, in an anchor file, in the objects of a
copy, on a Kafka companion topic) is read first. A note must verify with a given public
key; the trusted ones, of the log's origin, give the tree sizes at which the log's
Merkle root is compared, with the stored frontier to resume the tree from after a gap
(used only when it folds to the signed root). Notes that do not verify, are signed by
unknown keys or belong to another log are findings already here.

Also here: which trusted checkpoint a verification starts from (`since`) and stops at
(`until`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from kaudit.integrity.checkpoint import CheckpointFormatError, parse_signed
from kaudit.integrity.keys import KeyRing
from kaudit.integrity.merkle import MerkleTree
from kaudit.integrity.store import StoredCheckpoint, read_checkpoint_file
from kaudit.integrity.verify.findings import Finding, FindingKind


@dataclass(slots=True)
class Trusted:
    """A checkpoint whose note verified with a given key, and where it was stored."""

    size: int
    root: bytes
    time: datetime | None
    heartbeat: int | None
    closed: bool
    frontier: tuple[bytes, ...] | None  # None unless it folds to the signed root
    segment: int
    offset: int
    file: str


@dataclass(slots=True)
class Checkpoints:
    by_size: dict[int, list[Trusted]] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    total: int = 0
    referenced_segments: dict[int, str] = field(default_factory=dict)

    def all(self) -> Iterator[Trusted]:
        for size in self.sizes:
            yield from self.by_size[size]


def _frontier_ok(stored: StoredCheckpoint, size: int, root: bytes) -> tuple[bytes, ...] | None:
    # The frontier is not signed; it is usable only when it folds to the signed root.
    if stored.size != size:
        return None
    try:
        tree = MerkleTree.from_frontier(size, list(stored.frontier))
    except ValueError:
        return None
    return stored.frontier if tree.root() == root else None


CheckpointRecords = Iterable[tuple[str, int, StoredCheckpoint | str]]
"""Stored checkpoint records as (file name, line number, record or why it is unreadable)."""


def named_records(records: Iterable[tuple[Path, int, StoredCheckpoint | str]]) -> CheckpointRecords:
    return ((path.name, number, item) for path, number, item in records)


def read_anchor(path: Path) -> CheckpointRecords:
    """The checkpoint records of an external anchor file (`integrity.checkpoints.
    anchor_path`): the same records as beside the log, all in one file."""
    try:
        yield from named_records(read_checkpoint_file(path))
    except OSError as exc:
        yield path.name, 0, f"cannot read the anchor file: {exc.strerror}"


def load_checkpoints(records: CheckpointRecords, ring: KeyRing, origin: str | None) -> Checkpoints:
    out = Checkpoints()
    unknown: dict[tuple[str, str], list[int]] = {}
    trusted: list[tuple[str, Trusted]] = []
    seen: set[bytes] = set()
    for name, number, item in records:
        if not isinstance(item, str):
            if item.note in seen:
                continue  # the same checkpoint stored twice (beside the log, an anchor)
            seen.add(item.note)
        out.total += 1
        where = f"{name} line {number}"
        if isinstance(item, str):
            out.findings.append(Finding(FindingKind.UNREADABLE, f"{where}: {item}", segment=name))
            continue
        try:
            signed = parse_signed(item.note, ring)
        except CheckpointFormatError as exc:
            out.findings.append(
                Finding(
                    FindingKind.UNREADABLE,
                    f"{where}: not a checkpoint note: {exc}",
                    segment=name,
                )
            )
            continue
        cp = signed.checkpoint
        if signed.bad:
            keys = ", ".join(f"{s.name} ({s.key_id.hex()})" for s in signed.bad)
            out.findings.append(
                Finding(
                    FindingKind.BAD_SIGNATURE,
                    f"{where}: the checkpoint of size {cp.size} does not verify with the key "
                    f"{keys}: its text or signature was changed",
                    cp.size - 1 if cp.size else None,
                    cp.size - 1 if cp.size else None,
                    name,
                )
            )
            continue
        if not signed.verified:
            if not signed.unknown:
                out.findings.append(
                    Finding(
                        FindingKind.BAD_SIGNATURE,
                        f"{where}: the checkpoint of size {cp.size} has no signature",
                        segment=name,
                    )
                )
            for sig in signed.unknown:
                unknown.setdefault((sig.name, sig.key_id.hex()), []).append(cp.size)
            continue
        sequence = cp.sequence
        if sequence is not None and sequence[0] != 0:
            out.findings.append(
                Finding(
                    FindingKind.UNREADABLE,
                    f"{where}: the checkpoint says its tree starts at sequence "
                    f"{sequence[0]}, but a kaudit log's tree starts at 0",
                    segment=name,
                )
            )
            continue
        frontier = _frontier_ok(item, cp.size, cp.root)
        if frontier is None and cp.size:
            out.notes.append(
                f"{where}: the stored tree frontier does not match the signed root; "
                "verification cannot resume from this checkpoint after a gap"
            )
        trusted.append(
            (
                cp.origin,
                Trusted(
                    cp.size,
                    cp.root,
                    cp.time,
                    cp.heartbeat,
                    cp.closed,
                    frontier,
                    item.segment,
                    item.offset,
                    name,
                ),
            )
        )
        out.referenced_segments.setdefault(item.segment, name)
    for (name, key_id), sizes in unknown.items():
        out.findings.append(
            Finding(
                FindingKind.UNKNOWN_KEY,
                f"{len(sizes)} checkpoint(s) (tree sizes {min(sizes)}..{max(sizes)}) are "
                f"signed only by {name} (key id {key_id}), a key not given to verify with",
                None,
                None,
                None,
            )
        )
    if trusted:
        if origin is None:
            # The log's name is the one most of its trusted checkpoints carry.
            counts: dict[str, int] = {}
            for name, _ in trusted:
                counts[name] = counts.get(name, 0) + 1
            origin = max(counts, key=lambda n: counts[n])
        for name, t in trusted:
            if name != origin:
                out.findings.append(
                    Finding(
                        FindingKind.INSERTED,
                        f"{t.file}: a checkpoint of another log ({name!r}, not {origin!r}) "
                        "was put among this log's checkpoints",
                        segment=t.file,
                    )
                )
                continue
            out.by_size.setdefault(t.size, []).append(t)
        out.sizes = sorted(out.by_size)
    return out


def resume_point(cps: Checkpoints, since: datetime) -> Trusted | None:
    """The largest trusted checkpoint made no later than `since` that the tree can be
    continued from (its frontier folds to its signed root)."""
    best: Trusted | None = None
    for t in cps.all():
        usable = t.size and t.frontier is not None and t.time is not None and t.time <= since
        if usable and (best is None or t.size > best.size):
            best = t
    return best


def stop_at(cps: Checkpoints, until: datetime) -> Trusted | None:
    """The first trusted checkpoint made at or after `until`: verification ends there."""
    for t in cps.all():
        if t.time is not None and t.time >= until:
            return t
    return None
