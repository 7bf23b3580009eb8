"""Building the report of a finished walk.

The findings of the checkpoints, of reading the files and of the walk, sorted by
sequence number; what the newest checkpoints say about the end of the log (cut off, not
covered yet, or a writer that stopped without closing); what could not be compared with
a checkpoint; and the time range the log and its checkpoints cover against the one
asked for (as CloudTrail's ``validate-logs`` reports it).
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

import orjson

from kaudit.integrity.verify.checkpoints import Checkpoints, Trusted
from kaudit.integrity.verify.findings import (
    Coverage,
    Finding,
    FindingKind,
    TimeRange,
    VerifyReport,
    iso,
)
from kaudit.integrity.verify.tally import Spans
from kaudit.integrity.verify.walk import Walker


def _timestamp(line: bytes | None) -> datetime | None:
    if line is None:
        return None
    try:
        value = orjson.loads(line).get("timestamp")
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except (orjson.JSONDecodeError, AttributeError, ValueError, TypeError):
        return None


def build_report(
    source: str,
    checks: tuple[str, ...],
    walker: Walker,
    cps: Checkpoints | None,
    io_findings: list[Finding],
    notes: list[str],
    since: datetime | None,
    until: datetime | None,
    now: datetime,
    grace: timedelta,
    stop_cp: Trusted | None,
    started: float,
) -> VerifyReport:
    findings: list[Finding] = [*(cps.findings if cps is not None else ()), *io_findings]
    if walker.events and walker.not_events == walker.events:
        findings.append(
            Finding(
                FindingKind.UNREADABLE,
                f"none of the {walker.events} lines carries integrity.sequence_number: "
                "not kaudit's native JSON events",
                segment=None,
            )
        )
    else:
        findings.extend(walker.findings)
    if walker.unchecked:
        spans = Spans(walker.unchecked)
        shown = ", ".join(f"{lo}..{hi}" for lo, hi in spans.ranges()[:10])
        notes.append(
            f"events {shown} could not be compared with a checkpoint: a gap or a "
            "damaged line among them, or no stored frontier to resume the tree from"
            + ("" if walker.hmac is None else " (their HMAC signatures were checked)")
        )
    if cps is not None:
        notes.extend(cps.notes)
        findings.extend(_tail(walker, cps, until, now, grace, stop_cp, notes))
    findings.sort(key=lambda f: (f.sequence_from is None, f.sequence_from or 0, f.kind))
    times = walker.cp_times
    covered = Coverage(
        first_event=_timestamp(walker.first_line),
        last_event=_timestamp(walker.last_line),
        first_checkpoint=min(times) if times else None,
        last_checkpoint=max(times) if times else None,
        verified_through=walker.verified_through,
    )
    return VerifyReport(
        source=source,
        checks=checks,
        ok=not findings,
        events=walker.events,
        first_sequence=walker.first_seq,
        last_sequence=walker.max_seen if walker.max_seen >= 0 else None,
        requested=TimeRange(since, until),
        covered=covered,
        checkpoints_checked=walker.checkpoints_checked,
        findings=tuple(findings),
        notes=tuple(notes),
        seconds=time.perf_counter() - started,
    )


def _tail(
    walker: Walker,
    cps: Checkpoints,
    until: datetime | None,
    now: datetime,
    grace: timedelta,
    stop_cp: Trusted | None,
    notes: list[str],
) -> list[Finding]:
    """What the newest checkpoints say about the end of the log: cut off, or not yet
    covered; and where the writer stopped without closing and came back."""
    out: list[Finding] = []
    trusted = list(cps.all())
    if not trusted:
        if not any(f.kind is FindingKind.UNKNOWN_KEY for f in cps.findings):
            out.append(
                Finding(
                    FindingKind.NO_CHECKPOINT,
                    "no checkpoint signed by a given key was found: the public key cannot "
                    "vouch for any event (checkpoints off, or their files deleted)",
                )
            )
        return out
    end = walker.expected  # the first sequence number after the log
    limit = stop_cp.size if stop_cp is not None else None
    beyond = [t for t in trusted if t.size > end and (limit is None or t.size <= limit)]
    if beyond:
        top = max(beyond, key=lambda t: t.size)
        out.append(
            Finding(
                FindingKind.TRUNCATED,
                f"the signed checkpoint of size {top.size} (made {iso(top.time)}) covers "
                f"events up to {top.size - 1}, but the log ends at {end - 1}: events "
                f"{end}..{top.size - 1} were cut off",
                end,
                top.size - 1,
                top.file,
            )
        )
        walker.cp_times.extend(t.time for t in beyond if t.time is not None)
    if stop_cp is not None:
        return out
    newest = max(
        trusted, key=lambda t: (t.time or datetime.min.replace(tzinfo=UTC), t.size, t.closed)
    )
    largest = max(
        trusted, key=lambda t: (t.size, t.time or datetime.min.replace(tzinfo=UTC), t.closed)
    )
    if walker.max_seen >= largest.size and not beyond:
        lo, hi = largest.size, walker.max_seen
        if largest.closed:
            out.append(
                Finding(
                    FindingKind.INSERTED,
                    f"events {lo}..{hi} follow the checkpoint that closed the log "
                    f"({iso(largest.time)}) and no checkpoint covers them: appended after "
                    "the writer closed it (or written with checkpoints off)",
                    lo,
                    hi,
                    largest.file,
                )
            )
        else:
            notes.append(
                f"events {lo}..{hi} are newer than the newest checkpoint "
                f"({iso(largest.time)}): no checkpoint covers them yet"
            )
    if not newest.closed and newest.heartbeat is not None and newest.time is not None:
        due = newest.time + timedelta(seconds=newest.heartbeat)
        ref = min(now, until) if until is not None else now
        if ref > due + grace:
            out.append(
                Finding(
                    FindingKind.TRUNCATED,
                    f"checkpoints stopped at {iso(newest.time)} though the heartbeat "
                    f"promised one by {iso(due)} (checked at {iso(ref)}): events after "
                    f"{newest.size - 1} may have been cut off, or the writer stopped "
                    "without closing and was not restarted",
                    newest.size,
                    None,
                    newest.file,
                )
            )
    # Restarts after an unclean stop are no tampering (later checkpoints cover what came
    # before), but worth knowing.
    by_time = sorted(
        (t for t in trusted if t.time is not None), key=lambda t: (t.time, t.size, t.closed)
    )
    gaps = []
    for a, b in itertools.pairwise(by_time):
        assert a.time is not None and b.time is not None
        if (
            not a.closed
            and a.heartbeat
            and b.time - a.time > timedelta(seconds=a.heartbeat) + grace
        ):
            gaps.append(f"{iso(a.time)} (size {a.size}) until {iso(b.time)}")
    if gaps:
        shown = "; ".join(gaps[:5]) + (f"; and {len(gaps) - 5} more" if len(gaps) > 5 else "")
        notes.append(f"the writer stopped without closing and came back later: {shown}")
    return out
