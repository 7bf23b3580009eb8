"""Verifying a log kept as parts named by sequence range (`verify_parts`): the objects of
a destination's copy (S3), or a Kafka writer stream read as one part. One part is open
at a time, in the order of the ranges, fed to the one walker as a log directory's
segments are; a part delivered again (at-least-once) is read once.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO

from kaudit.integrity.keys import KeyRing
from kaudit.integrity.merkle import MerkleTree
from kaudit.integrity.verify.checkpoints import CheckpointRecords, load_checkpoints, resume_point
from kaudit.integrity.verify.findings import Finding, FindingKind, VerifyReport
from kaudit.integrity.verify.lines import PartNames, seq_of
from kaudit.integrity.verify.report import build_report
from kaudit.integrity.verify.sources import check_usage, checks_made, since_note, walker_until
from kaudit.integrity.verify.walk import feed_file

_sha256 = hashlib.sha256


@dataclass(frozen=True, slots=True)
class LogPart:
    """One stored piece of a log kept outside a log directory (an object in S3): its
    name, the sequence numbers its name says it holds, and how to open its decompressed
    bytes (reading raises OSError, EOFError or zlib.error when it cannot)."""

    name: str
    first: int
    last: int
    open: Callable[[], AbstractContextManager[IO[bytes]]]


def _overlaps(parts: Sequence[LogPart]) -> list[int | None]:
    """For each part (sorted by range), the first sequence number a later part also
    claims (None when none does): its lines from there on may be delivered again."""
    out: list[int | None] = [None] * len(parts)
    later: int | None = None
    for i in range(len(parts) - 1, -1, -1):
        if later is not None and later <= parts[i].last:
            out[i] = later
        later = parts[i].first if later is None else min(later, parts[i].first)
    return out


class _Redelivered:
    """Lines of parts whose ranges overlap (a batch delivered again): the lines a later
    part may repeat are remembered by digest, and a repeat byte for byte is dropped and
    counted. Lines before `start` (where `since` began) are dropped too."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.remembered: dict[int, bytes] = {}  # seq -> digest of lines a later part repeats
        self.repeats = 0

    def forget_before(self, first: int) -> None:
        for old in [q for q in self.remembered if q < first]:
            del self.remembered[old]

    def keep(self, again: bool, keep: int | None) -> Callable[[list[bytes]], list[bytes]]:
        """The filter of one part's lines: `again` when a part read before claims some
        of its range, `keep` the first sequence number a later part also claims."""
        start_seq, remembered = self.start, self.remembered

        def kept(lines: list[bytes]) -> list[bytes]:
            kept = []
            for ln in lines:
                seq = seq_of(ln)
                if seq is not None and seq < start_seq:
                    continue
                if seq is not None and (again or keep is not None):
                    digest = _sha256(ln).digest()
                    if again and remembered.get(seq) == digest:
                        self.repeats += 1
                        continue
                    if keep is not None and seq >= keep:
                        remembered[seq] = digest
                kept.append(ln)
            return kept

        return kept


def verify_parts(
    source: str,
    parts: Iterable[LogPart],
    checkpoints: CheckpointRecords,
    *,
    verifiers: KeyRing | None,
    hmac_key: bytes | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    origin: str | None = None,
    heartbeat_grace: timedelta = timedelta(seconds=10),
    noun: str = "object",
    gone_name: Callable[[int, int], str] = lambda lo, hi: f"events {lo}..{hi}",
    notes: Sequence[str] = (),
) -> VerifyReport:
    """Verify a log kept as parts named by sequence range (a destination's copy, like the
    S3 objects) against the checkpoints stored with it, as `verify_log` checks a log
    directory: one streaming pass, one part open at a time, in the order of the ranges.

    A part whose range overlaps one read before is a batch delivered again (delivery is
    at-least-once): its lines that are byte for byte ones read before are skipped and
    counted in a note; any other line in it is checked like every line. `since` starts
    at the last trusted checkpoint made before it (parts before are not read); `until`
    stops at the first one made after it. `gone_name(lo, hi)` names a part found missing.
    """
    started = time.perf_counter()
    ring = check_usage(verifiers, hmac_key, since, until, now)
    now = now or datetime.now(UTC)
    ordered = sorted(parts, key=lambda p: (p.first, p.last, p.name))
    cps = load_checkpoints(checkpoints, ring, origin) if ring is not None else None
    report_notes = list(notes)
    start_seq, tree = 0, None
    if since is not None:
        resume = resume_point(cps, since) if cps is not None else None
        if resume is not None and resume.frontier is not None:
            start_seq = resume.size
            tree = MerkleTree.from_frontier(resume.size, list(resume.frontier))
            report_notes.append(since_note(since, start_seq, f"{noun}s"))
        else:
            report_notes.append(since_note(since, None, f"{noun}s"))
    firsts = {p.name: p.first for p in ordered}
    walker, stop_cp = walker_until(
        cps,
        hmac_key,
        until,
        start=start_seq,
        tree=tree,
        parts=PartNames(noun, firsts.get, gone_name),
    )
    io_findings: list[Finding] = []
    redelivered = _Redelivered(start_seq)
    read_through = -1  # the highest sequence number the parts read so far claim
    for part, keep in zip(ordered, _overlaps(ordered), strict=True):
        if part.last < start_seq:
            continue
        redelivered.forget_before(part.first)
        again = part.first <= read_through
        read_through = max(read_through, part.last)
        filtering = again or keep is not None or part.first < start_seq
        torn: list[int] = []
        try:
            with part.open() as f:
                kept = redelivered.keep(again, keep) if filtering else None
                feed_file(walker, f, part.name, 0, torn, progress, kept)
        except (OSError, EOFError, zlib.error) as exc:
            io_findings.append(
                Finding(
                    FindingKind.UNREADABLE,
                    f"{part.name}: cannot read: {exc}",
                    part.first,
                    part.last,
                    part.name,
                )
            )
            continue
        if torn:
            io_findings.append(
                Finding(
                    FindingKind.UNREADABLE,
                    f"{part.name} ends in a partial line of {torn[0]} bytes: a {noun} is "
                    "written whole, so its end was changed",
                    segment=part.name,
                )
            )
        if walker.done:
            break
    walker.finish()
    if redelivered.repeats:
        report_notes.append(
            f"{redelivered.repeats} line(s) repeat events of an earlier {noun} byte for byte "
            "(a batch delivered again: delivery is at-least-once); each was checked once"
        )
    if ring is None:
        report_notes.append(
            f"checked with the HMAC key only: events cut off the end (a deleted last {noun}) "
            "cannot be seen without the checkpoints (give the public key)"
        )
    return build_report(
        source,
        checks_made(ring, hmac_key),
        walker,
        cps,
        io_findings,
        report_notes,
        since,
        until,
        now,
        heartbeat_grace,
        stop_cp,
        started,
    )
