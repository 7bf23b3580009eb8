"""What a verification finds and reports: the kinds of finding, a finding, the time
range asked for and the one covered, and the report itself (with its JSON form).

The walk (walk.py) makes findings; report.py puts them into a `VerifyReport`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from kaudit.errors import UsageError


class VerifyUsageError(UsageError):
    """Verification was asked for in a way that cannot work (no key, bad source)."""


class FindingKind(StrEnum):
    MODIFIED = "modified"
    MISSING = "missing"
    INSERTED = "inserted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    CHAIN_BROKEN = "chain_broken"
    UNREADABLE = "unreadable"
    NO_CHECKPOINT = "no_checkpoint"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong with the log: its kind, in words, the sequence numbers it
    concerns (inclusive; None when it has none) and the file it was found in."""

    kind: FindingKind
    message: str
    sequence_from: int | None = None
    sequence_to: int | None = None
    segment: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "message": self.message,
            "sequence_from": self.sequence_from,
            "sequence_to": self.sequence_to,
            "segment": self.segment,
        }


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime | None = None
    end: datetime | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"start": iso(self.start), "end": iso(self.end)}


@dataclass(frozen=True, slots=True)
class Coverage:
    """What the verified log covers: its first and last event's timestamps and the
    times of the first and last trusted checkpoint checked against it, and the last
    sequence number a trusted checkpoint vouches for."""

    first_event: datetime | None = None
    last_event: datetime | None = None
    first_checkpoint: datetime | None = None
    last_checkpoint: datetime | None = None
    verified_through: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_event": iso(self.first_event),
            "last_event": iso(self.last_event),
            "first_checkpoint": iso(self.first_checkpoint),
            "last_checkpoint": iso(self.last_checkpoint),
            "verified_through": self.verified_through,
        }


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome: `ok` when there is no finding. `notes` say what was not checked or
    what was seen that is no tampering (a writer restart, events newer than the last
    checkpoint); they never change `ok`."""

    source: str
    checks: tuple[str, ...]
    ok: bool
    events: int
    first_sequence: int | None
    last_sequence: int | None
    requested: TimeRange
    covered: Coverage
    checkpoints_checked: int
    findings: tuple[Finding, ...]
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    def by_kind(self, kind: FindingKind | str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "checks": list(self.checks),
            "ok": self.ok,
            "events": self.events,
            "first_sequence": self.first_sequence,
            "last_sequence": self.last_sequence,
            "requested": self.requested.to_dict(),
            "covered": self.covered.to_dict(),
            "checkpoints_checked": self.checkpoints_checked,
            "findings": [f.to_dict() for f in self.findings],
            "notes": list(self.notes),
            "seconds": round(self.seconds, 3),
        }


def iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).isoformat().replace("+00:00", "Z")
