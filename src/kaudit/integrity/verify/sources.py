"""Verifying local files: a log directory (`verify_log`) and one JSON Lines export
(`verify_jsonl`), each fed to the one walker in one streaming pass; and what every
entry point shares (parts.py is the other one, for a log kept as parts).

Each entry point checks what it was asked (`check_usage`), loads the checkpoints, finds
where `since` starts and `until` stops (`walker_until`), feeds its files to a `Walker`
and builds the report. They differ in how their files are found and opened and in what
a damaged file means.
"""

from __future__ import annotations

import gzip
import itertools
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kaudit.integrity.keys import KeyRing
from kaudit.integrity.merkle import MerkleTree
from kaudit.integrity.settings import recorded_unsigned
from kaudit.integrity.store import read_checkpoints
from kaudit.integrity.verify.checkpoints import (
    Checkpoints,
    Trusted,
    load_checkpoints,
    named_records,
    read_anchor,
    resume_point,
    stop_at,
)
from kaudit.integrity.verify.findings import (
    Finding,
    FindingKind,
    VerifyReport,
    VerifyUsageError,
    iso,
)
from kaudit.integrity.verify.lines import PartNames, seq_of
from kaudit.integrity.verify.report import build_report
from kaudit.integrity.verify.walk import Walker, feed_file
from kaudit.log.segments import list_segments, segment_name


def check_usage(
    verifiers: KeyRing | None,
    hmac_key: bytes | None,
    since: datetime | None,
    until: datetime | None,
    now: datetime | None,
) -> KeyRing | None:
    ring = verifiers if verifiers is not None and len(verifiers) else None
    if ring is None and not hmac_key:
        raise VerifyUsageError(
            "nothing to verify with: give the public key(s) of the checkpoint signer "
            "(PATH.pub from `kaudit keys generate`) and/or the HMAC key"
        )
    for name, when in (("since", since), ("until", until), ("now", now)):
        if when is not None and when.tzinfo is None:
            raise VerifyUsageError(f"{name} must be timezone-aware (e.g. UTC), got {when}")
    if since is not None and until is not None and since > until:
        raise VerifyUsageError(f"since ({since}) is after until ({until})")
    return ring


def checks_made(ring: KeyRing | None, hmac_key: bytes | None) -> tuple[str, ...]:
    """What is checked: the checkpoints with a public key, the HMAC chain with its key,
    and the sequence numbers always."""
    return (
        *(("checkpoints",) if ring is not None else ()),
        *(("hmac_chain",) if hmac_key else ()),
        "sequence",
    )


def since_note(since: datetime, start: int | None, skipped: str) -> str:
    """Where verifying from `since` started (None: at the beginning), and that the
    `skipped` (events, objects…) before were not read."""
    if start is None:
        return f"no trusted checkpoint before {iso(since)} to start from: read all"
    return (
        f"started at event {start}, the last checkpoint made before {iso(since)}; "
        f"earlier {skipped} were not read"
    )


def walker_until(
    cps: Checkpoints | None,
    hmac_key: bytes | None,
    until: datetime | None,
    *,
    start: int,
    tree: MerkleTree | None,
    parts: PartNames | None = None,
) -> tuple[Walker, Trusted | None]:
    """The walker of a log with checkpoints, stopping at the first trusted checkpoint
    made at or after `until` (returned too: the report's end)."""
    stop_cp = stop_at(cps, until) if cps is not None and until is not None else None
    walker = Walker(
        cps,
        hmac_key,
        start=start,
        stop=stop_cp.size if stop_cp is not None else None,
        jsonl=False,
        tree=tree,
        parts=parts,
    )
    return walker, stop_cp


# ---------------------------------------------------------------------- a log directory


def _segment_start(
    cps: Checkpoints, since: datetime, log_dir: Path, segments: list[int]
) -> tuple[int, int, int, MerkleTree] | None:
    """Where to start for `since`: the largest trusted checkpoint made no later than it,
    whose frontier folds to its root and whose stored position holds that event."""
    best = resume_point(cps, since)
    if best is None or best.segment not in segments:
        return None
    segment, offset = best.segment, best.offset
    path = log_dir / segment_name(segment)
    try:
        size = path.stat().st_size
        if offset >= size:
            later = [s for s in segments if s > segment]
            if offset != size or not later or later[0] != best.size:
                return None
            segment, offset = later[0], 0
            path = log_dir / segment_name(segment)
        with open(path, "rb") as f:
            if offset:
                f.seek(offset - 1)
                if f.read(1) != b"\n":
                    return None
            head = f.read(1 << 20)
    except OSError:
        return None
    if seq_of(head.split(b"\n", 1)[0]) != best.size:
        return None
    assert best.frontier is not None
    return best.size, segment, offset, MerkleTree.from_frontier(best.size, list(best.frontier))


def verify_log(
    log_dir: Path | str,
    *,
    verifiers: KeyRing | None,
    hmac_key: bytes | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    origin: str | None = None,
    anchors: Sequence[Path | str] = (),
    heartbeat_grace: timedelta = timedelta(seconds=10),
) -> VerifyReport:
    """Verify a local log directory with the checkpoint public keys and/or the HMAC key.

    `anchors` are checkpoint files kept apart from the log (the writer's
    `integrity.checkpoints.anchor_path`); their checkpoints count like the log's own, so
    a log cut back together with the checkpoints beside it still shows as truncated.

    `since` starts at the last trusted checkpoint made before it (events before are not
    read); `until` stops at the first one made after it. `now` (default: the clock) is
    what a heartbeat promise is held against; `heartbeat_grace` allows for the writer's
    tick and for clocks that differ. `progress` is called with the number of events
    read so far after each chunk. Raises VerifyUsageError when neither key is given or
    the directory does not exist.
    """
    started = time.perf_counter()
    ring = check_usage(verifiers, hmac_key, since, until, now)
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        raise VerifyUsageError(f"{log_dir}: no such log directory")
    now = now or datetime.now(UTC)
    anchor_paths = [Path(a) for a in anchors]
    for path in anchor_paths:
        if not path.is_file():
            raise VerifyUsageError(f"{path}: no such checkpoint anchor file")
    if anchor_paths and ring is None:
        raise VerifyUsageError("checkpoint anchors need the public key(s) to check them")
    cps = None
    if ring is not None:
        records = itertools.chain(
            named_records(read_checkpoints(log_dir)), *(read_anchor(a) for a in anchor_paths)
        )
        cps = load_checkpoints(records, ring, origin)
    segments = list_segments(log_dir)
    notes: list[str] = []
    start_seq, start_segment, start_offset, tree = 0, -1, 0, None
    if since is not None:
        start = _segment_start(cps, since, log_dir, segments) if cps is not None else None
        if start is not None:
            start_seq, start_segment, start_offset, tree = start
        notes.append(since_note(since, None if start is None else start_seq, "events"))
    walker, stop_cp = walker_until(cps, hmac_key, until, start=start_seq, tree=tree)
    io_findings: list[Finding] = []
    for base in segments:
        if base < start_segment:
            continue
        name = segment_name(base)
        offset = start_offset if base == start_segment else 0
        torn: list[int] = []
        try:
            with open(log_dir / name, "rb") as f:
                f.seek(offset)
                feed_file(walker, f, name, offset, torn, progress)
        except OSError as exc:
            io_findings.append(
                Finding(
                    FindingKind.UNREADABLE, f"{name}: cannot read: {exc.strerror}", segment=name
                )
            )
            continue
        if torn and not walker.done:
            if base == segments[-1]:
                notes.append(
                    f"{name} ends in a partial line of {torn[0]} bytes (the writer stopped "
                    "mid-write; reopening the log cuts it and records audit.degraded)"
                )
            else:
                io_findings.append(
                    Finding(
                        FindingKind.UNREADABLE,
                        f"{name} ends in a partial line of {torn[0]} bytes, yet later "
                        "segments follow: its end was damaged",
                        segment=name,
                    )
                )
        if walker.done:
            break
    walker.finish()
    if ring is None:
        notes.append(
            "checked with the HMAC key only: events cut off the end of the log cannot be "
            "seen without the checkpoints (give the public key)"
        )
    else:
        _excuse_recorded_unsigned(log_dir, walker.findings, notes)
    return build_report(
        str(log_dir),
        checks_made(ring, hmac_key),
        walker,
        cps,
        io_findings,
        notes,
        since,
        until,
        now,
        heartbeat_grace,
        stop_cp,
        started,
    )


def _excuse_recorded_unsigned(log_dir: Path, findings: list[Finding], notes: list[str]) -> None:
    """Events without HMAC signatures in a range that `kaudit rotate-integrity` recorded
    as written with signing off are a note, not a finding. Only with the checkpoints
    checked: they still cover those events, and the record itself is not signed."""
    spans = recorded_unsigned(log_dir)
    if not spans:
        return
    for finding in list(findings):
        lo, hi = finding.sequence_from, finding.sequence_to
        if finding.kind != FindingKind.BAD_SIGNATURE or lo is None or hi is None:
            continue
        if "no HMAC signature" not in finding.message:
            continue
        for first, last, why in spans:
            if first <= lo and (last is None or hi <= last):
                findings.remove(finding)
                notes.append(
                    f"events {lo}..{hi} carry no HMAC signature, as recorded in "
                    f"{log_dir / 'integrity.json'} ({why}); the signed checkpoints protect them"
                )
                break


# ---------------------------------------------------------------------- a JSON Lines file


def verify_jsonl(
    path: Path | str,
    *,
    verifiers: KeyRing | None = None,
    hmac_key: bytes | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Verify one JSON Lines file of native events (a `file` destination's export, plain
    or gzipped). It carries no checkpoints, so this checks the HMAC chain when the key
    is given and the sequence numbers (gaps, order, forged repeats) always; the report
    says what could not be checked. A repeated identical event is no finding here:
    delivery to a destination is at-least-once."""
    started = time.perf_counter()
    check_usage(verifiers, hmac_key, since, until, now)
    path = Path(path)
    if not path.is_file():
        raise VerifyUsageError(f"{path}: no such file")
    now = now or datetime.now(UTC)
    walker = Walker(None, hmac_key, start=None, stop=None, jsonl=True)
    notes = [
        "a JSON Lines export carries no checkpoints: the public key cannot check it, and "
        "events cut off its end cannot be seen"
    ]
    if not hmac_key:
        notes.append("no HMAC key: only the sequence numbers were checked, not the contents")
    io_findings: list[Finding] = []
    torn: list[int] = []
    opener: Callable[[Path, str], Any] = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            feed_file(walker, f, path.name, 0, torn, progress)
    except (OSError, EOFError) as exc:
        io_findings.append(
            Finding(FindingKind.UNREADABLE, f"{path.name}: cannot read: {exc}", segment=path.name)
        )
    if torn:
        notes.append(f"{path.name} ends in a partial line of {torn[0]} bytes (not counted)")
    walker.finish()
    if walker.repeats:
        notes.append(
            f"{walker.repeats} line(s) repeat an event already in the file (delivery is "
            "at-least-once; event_id tells them apart)"
        )
    return build_report(
        str(path),
        checks_made(None, hmac_key),
        walker,
        None,
        io_findings,
        notes,
        since,
        until,
        now,
        timedelta(0),
        None,
        started,
    )
