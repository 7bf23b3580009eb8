"""What the walk has found, line by line, and the findings it makes of that at the end.

`Tally` is the bottom layer of the walker (walk.py): the counts (events, lines that are
no event, repeats), the sequence numbers seen, the runs of missing and reordered
events, the lines whose HMAC failed, that are unsigned or break the chain, and the
sequence numbers some finding already names (`exact`, so a broken link or a root
mismatch there is not reported twice). It decides which of two lines claiming one
sequence number is the forgery when the HMAC or the leaves can tell, and turns the
runs into findings when the walk is done.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kaudit.integrity.verify.findings import Finding, FindingKind
from kaudit.integrity.verify.lines import PartNames


@dataclass(slots=True)
class Line:
    """A line the careful path looks at, and what the HMAC check found on it."""

    seq: int | None
    leaf: bytes
    file: str | None  # None: a line seen on the fast path, known only by its leaf
    offset: int
    hmac: bool | None = None  # True verified, False did not (or damaged fields), None unchecked
    unsigned: bool = False
    broke_chain: bool = False
    first_in_file: bool = False

    def where(self) -> str:
        return f"{self.file} byte {self.offset}" if self.file else "an earlier line"


@dataclass(slots=True)
class Run:
    lo: int
    hi: int
    file: str | None
    detail: str


def _lo(run: Run) -> int:
    return run.lo


def _hi(run: Run) -> int:
    return run.hi


class Tally:
    """What was found so far (see the module docstring); `jsonl` and `parts` say how
    to word it: an export may repeat events, and a gap at the start of a file is that
    file gone."""

    def __init__(self, *, jsonl: bool, parts: PartNames) -> None:
        self.jsonl = jsonl
        self.parts = parts
        self.events = 0
        self.first_seq: int | None = None
        self.max_seen = -1
        self.findings: list[Finding] = []
        self.missing: list[Run] = []
        self.reordered: list[Run] = []
        self.exact: set[int] = set()  # sequences with a finding that names the event
        self.hmac_bad: dict[tuple[str | None, int], tuple[int, str | None]] = {}
        self.hmac_bad_at: dict[int, tuple[str | None, int]] = {}  # seq -> line, to look up
        self.unsigned: list[tuple[int | None, str, int]] = []
        self.chain_breaks: list[tuple[int | None, str, int]] = []
        self.not_events = 0
        self.repeats = 0

    # -- lines that claim a sequence number already held -------------------------------

    def _inserted(self, seq: int, line: Line, why: str) -> None:
        self.hmac_bad.pop((line.file, line.offset), None)
        self.exact.add(seq)
        self.findings.append(
            Finding(
                FindingKind.INSERTED,
                f"a forged or replayed line claims sequence {seq} ({line.where()}): {why}",
                seq,
                seq,
                line.file,
            )
        )

    def _resolve(self, seq: int, cands: list[Line], genuine: int | None) -> None:
        """Report the lines that are not the genuine event `seq` among `cands`."""
        if genuine is not None:
            for k, c in enumerate(cands):
                if k != genuine:
                    why = (
                        "a replayed copy of the event"
                        if c.leaf == cands[genuine].leaf
                        else "the signed checkpoint matches the other line"
                    )
                    self._inserted(seq, c, why)
            return
        for c in cands[1:]:
            self._second(seq, cands[0], c)

    def _second(self, seq: int, earlier: Line | None, line: Line) -> None:
        """A line claims `seq`, already held by `earlier` (None: a line seen on the fast
        path); no checkpoint decides between them, so the HMAC does if it can."""
        if line.hmac is False:
            self._inserted(seq, line, "its HMAC signature does not verify")
            return
        if earlier is not None and earlier.hmac is False:
            self._inserted(seq, earlier, "its HMAC signature does not verify")
            return
        if line.hmac is True:
            key = self.hmac_bad_at.get(seq)
            if key is not None and self.hmac_bad.get(key, (None,))[0] == seq:
                # The line seen first was the forged one.
                self._inserted(seq, Line(seq, b"", key[0], key[1]), "its HMAC does not verify")
                return
            if self.jsonl:
                self.repeats += 1  # delivery is at-least-once: an export may repeat events
                self.exact.add(seq)  # which also explains the chain break at the repeat
                return
            self._inserted(seq, line, "a replayed copy of a genuine event")
            return
        if self.jsonl:
            self.repeats += 1
            return
        if earlier is not None and earlier.leaf and earlier.leaf == line.leaf:
            self._inserted(seq, line, "a replayed copy of the event")
            return
        self.exact.add(seq)
        self.findings.append(
            Finding(
                FindingKind.INSERTED,
                f"sequence {seq} is claimed by more than one line ({line.where()} is not the "
                "first); no checkpoint covers it to tell which one is genuine",
                seq,
                seq,
                line.file,
            )
        )

    # -- what each line showed ------------------------------------------------------------

    def _note_hmac(self, line: Line, seq: int) -> None:
        if line.hmac is False:
            self.hmac_bad[(line.file, line.offset)] = (seq, line.file)
            self.hmac_bad_at[seq] = (line.file, line.offset)
            self.exact.add(seq)
        if line.unsigned:
            self.unsigned.append((seq, line.file or "", line.offset))
        if line.broke_chain:
            self.chain_breaks.append((seq, line.file or "", line.offset))

    def _missing(self, lo: int, hi: int, line: Line) -> None:
        base = None if self.jsonl or line.file is None else self.parts.first_of(line.file)
        if line.first_in_file and base is not None and base == line.seq:
            gone = self.parts.gone(lo, hi)
            detail = f"the {self.parts.noun} holding them ({gone}) is gone"
            if lo == 0:
                detail += " (deleted, or removed by retention)"
            self.missing.append(Run(lo, hi, gone, detail))
            return
        where = "the export" if self.jsonl else line.file
        self.missing.append(Run(lo, hi, line.file, f"deleted from {where} before {line.where()}"))

    def _take_missing(self, s: int) -> bool:
        """Whether `s` was counted missing; if so it is not any more (it came late).
        Missing runs are found in log order, so the list stays sorted by `lo`."""
        missing = self.missing
        i = bisect.bisect_right(missing, s, key=_lo) - 1
        if i < 0 or s > missing[i].hi:
            return False
        run = missing[i]
        parts = []
        if run.lo < s:
            parts.append(Run(run.lo, s - 1, run.file, run.detail))
        if s < run.hi:
            parts.append(Run(s + 1, run.hi, run.file, run.detail))
        missing[i : i + 1] = parts
        return True

    def _reordered(self, lo: int, hi: int, file: str | None) -> None:
        """Add [lo, hi] to the sorted, disjoint reordered runs, merging what touches."""
        lo, hi = min(lo, hi), max(lo, hi)
        runs = self.reordered
        start = bisect.bisect_left(runs, lo - 1, key=_hi)
        end = bisect.bisect_right(runs, hi + 1, key=_lo)
        if start < end:
            lo, hi = min(lo, runs[start].lo), max(hi, runs[end - 1].hi)
            file = runs[start].file
        runs[start:end] = [Run(lo, hi, file, "")]

    # -- the end --------------------------------------------------------------------------

    def _closing_findings(self) -> None:
        """The missing and reordered runs, and the HMAC results, as findings."""
        for run in self.missing:
            what = f"events {run.lo}..{run.hi} are" if run.hi > run.lo else f"event {run.lo} is"
            self.findings.append(
                Finding(
                    FindingKind.MISSING, f"{what} missing: {run.detail}", run.lo, run.hi, run.file
                )
            )
        for run in self.reordered:
            self.findings.append(
                Finding(
                    FindingKind.REORDERED,
                    f"events {run.lo}..{run.hi} are out of sequence order (moved or swapped)",
                    run.lo,
                    run.hi,
                    run.file,
                )
            )
        self._hmac_findings()

    def _hmac_findings(self) -> None:
        bad = [(s, f or "", o) for (f, o), (s, _) in self.hmac_bad.items()]
        checked = self.events - len(self.unsigned) - self.not_events
        if len(bad) > 1 and len(bad) >= checked:
            self.findings.append(
                Finding(
                    FindingKind.BAD_SIGNATURE,
                    f"none of the {len(bad)} signed events verifies with the given HMAC key: "
                    "the key is wrong (or every event was rewritten)",
                    self.first_seq,
                    self.max_seen if self.max_seen >= 0 else None,
                )
            )
        else:
            for lo, hi, file, off in _runs(bad):
                self.findings.append(
                    Finding(
                        FindingKind.MODIFIED,
                        f"event {lo} was changed: its HMAC signature does not verify "
                        f"({file} byte {off})"
                        if lo == hi
                        else f"events {lo}..{hi} were changed: their HMAC signatures do not "
                        f"verify (from {file} byte {off})",
                        lo,
                        hi,
                        file or None,
                    )
                )
        for lo, hi, file, off in _runs(self.unsigned):
            self.findings.append(
                Finding(
                    FindingKind.BAD_SIGNATURE,
                    (f"events {lo}..{hi} carry" if hi > lo else f"event {lo} carries")
                    + f" no HMAC signature ({file} byte {off})",
                    lo,
                    hi,
                    file or None,
                )
            )
        # A broken link is news only where no other finding already explains it.
        spans = [
            (f.sequence_from, f.sequence_to)
            for f in self.findings
            if f.sequence_from is not None and f.sequence_to is not None
        ]
        spans.extend((s, s) for s in self.exact)
        near = Spans(spans, margin=1)
        loose = [(s, f, o) for s, f, o in self.chain_breaks if s is not None and s not in near]
        for lo, hi, file, off in _runs(loose):
            self.findings.append(
                Finding(
                    FindingKind.CHAIN_BROKEN,
                    (
                        f"event {lo}'s previous_signature is not the signature of the event "
                        "before it"
                        if lo == hi
                        else f"events {lo}..{hi} do not link to the events before them"
                    )
                    + f" ({file} byte {off}): events were removed, replaced or re-signed",
                    lo,
                    hi,
                    file or None,
                )
            )


class Spans:
    """Sequence ranges (widened by `margin`), merged and sorted for bisecting."""

    def __init__(self, spans: Iterable[tuple[int, int]], margin: int = 0) -> None:
        merged: list[list[int]] = []
        for lo, hi in sorted((lo - margin, hi + margin) for lo, hi in spans):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self._los = [m[0] for m in merged]
        self._his = [m[1] for m in merged]

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._los, self._his, strict=True))

    def __contains__(self, seq: object) -> bool:
        if not isinstance(seq, int):
            return False
        i = bisect.bisect_right(self._los, seq) - 1
        return i >= 0 and seq <= self._his[i]


def _runs(items: Iterable[tuple[int | None, str, int]]) -> Iterator[tuple[int, int, str, int]]:
    """Consecutive sequence numbers in one file merged: (lo, hi, file, first offset)."""
    run: list[Any] | None = None
    known = [(s, name, offset) for s, name, offset in items if s is not None]
    for s, name, offset in sorted(known, key=lambda x: x[0]):
        if run is not None and s == run[1] + 1 and name == run[2]:
            run[1] = s
            continue
        if run is not None:
            yield run[0], run[1], run[2], run[3]
        run = [s, s, name, offset]
    if run is not None:
        yield run[0], run[1], run[2], run[3]
