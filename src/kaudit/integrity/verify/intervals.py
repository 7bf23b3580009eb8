"""The Merkle side of the walk: the log's tree against the trusted checkpoints.

`Intervals` is the middle layer of the walker (walk.py), on top of `Tally`. It keeps
the tree at the last checkpoint boundary and the leaves of the interval since: in
order (`pending`) while lines come in order, else in one slot per sequence number
(`slots`), so swapped events are put back in order and, when a sequence number is
claimed twice, each candidate is tried against the checkpoint. At each trusted tree
size the roots are compared; a mismatch narrows a change down to that interval, and
after a mismatch or a gap the tree resumes from the frontier stored with the
checkpoint (once shown to fold to the signed root), so one change does not hide the
rest of the log.
"""

from __future__ import annotations

import bisect
import itertools
from datetime import datetime

from kaudit.integrity.merkle import MerkleTree
from kaudit.integrity.verify.checkpoints import Checkpoints
from kaudit.integrity.verify.findings import Finding, FindingKind
from kaudit.integrity.verify.lines import PartNames
from kaudit.integrity.verify.tally import Line, Tally

_MAX_TRIALS = 64  # combinations of duplicated events tried against one checkpoint


class Intervals(Tally):
    """The tree and the checkpoint interval the walk is in (see the module docstring);
    `expected` is the next sequence number the log should bring, `stop` a tree size
    the walk ends at (`until`)."""

    def __init__(
        self,
        cps: Checkpoints | None,
        *,
        start: int | None,
        stop: int | None,
        jsonl: bool,
        tree: MerkleTree | None,
        parts: PartNames,
    ) -> None:
        super().__init__(jsonl=jsonl, parts=parts)
        self.cps = cps
        self.stop = stop
        self.expected: int = start or 0
        self.tree = tree or MerkleTree()
        self.base = self.tree.size  # where the tree (and the interval) is
        self.interval_lo = self.base
        self.sizes = cps.sizes if cps is not None else []
        self.next_b = bisect.bisect_left(self.sizes, self.base)
        self.use_tree = bool(self.sizes)
        self.pending: list[bytes] = []
        self.slots: dict[int, list[Line]] | None = None
        self.broken = False  # the tree cannot continue until a trusted frontier resumes it
        self.unchecked: list[tuple[int, int]] = []  # intervals no checkpoint could vouch for
        self.checkpoints_checked = 0
        self.verified_through: int | None = None
        self.cp_times: list[datetime] = []

    # -- checkpoint boundaries ----------------------------------------------------------

    def _boundary(self) -> int | None:
        if self.next_b < len(self.sizes):
            b = self.sizes[self.next_b]
            if self.stop is None or b <= self.stop:
                return b
        return None

    def _settle_boundaries(self) -> None:
        while (b := self._boundary()) is not None and b <= self.expected:
            self._close(b)

    def _resume_from(self, size: int) -> None:
        """Continue the tree at `size` from a frontier that folds to a signed root."""
        assert self.cps is not None
        for t in self.cps.by_size.get(size, ()):
            if t.frontier is not None:
                self.tree = MerkleTree.from_frontier(size, list(t.frontier))
                self.broken = False
                return
        self.broken = True

    def _compare(self, size: int, root: bytes) -> bool:
        """Whether the log's root at `size` is the one the trusted checkpoints signed."""
        assert self.cps is not None
        checkpoints = self.cps.by_size[size]
        self.checkpoints_checked += len(checkpoints)
        self.cp_times.extend(t.time for t in checkpoints if t.time is not None)
        wrong = [t for t in checkpoints if t.root != root]
        if wrong and len(wrong) < len(checkpoints):
            # The key signed two different trees of one size, and the log is one of them.
            times = ", ".join(str(t.time) for t in wrong)
            self.findings.append(
                Finding(
                    FindingKind.MODIFIED,
                    f"two different trees of size {size} were signed: the log matches one; "
                    f"the checkpoint(s) made at {times} record another history of events "
                    f"{self.interval_lo}..{size - 1} (the log was rewritten)",
                    self.interval_lo,
                    size - 1,
                    wrong[0].file,
                )
            )
        if len(wrong) < len(checkpoints):
            self.verified_through = size - 1
            return True
        return False

    def _close(self, b: int) -> None:
        """The interval [interval_lo, b) is complete: compare with the checkpoints at b."""
        lo = self.interval_lo
        if self.slots is not None:
            self._close_slots(lo, b)
        elif self.broken or self.tree.size + len(self.pending) != b:
            self.unchecked.append((lo, b - 1))
            self._resume_from(b)
        else:
            self.tree.extend(self.pending)
            if not self._compare(b, self.tree.root()):
                self._mismatch(lo, b)
                self._resume_from(b)
        self.pending = []
        self.base = self.interval_lo = b
        self.next_b += 1

    def _mismatch(self, lo: int, b: int) -> None:
        exact = self.exact
        if b - lo < len(exact):
            named = any(s in exact for s in range(lo, b))
        else:
            named = any(lo <= s < b for s in exact)
        if named:
            return  # a finding already names the changed event
        t = self.cps.by_size[b][0] if self.cps is not None else None
        self.findings.append(
            Finding(
                FindingKind.MODIFIED,
                f"events {lo}..{b - 1} do not hash to the signed checkpoint of size {b}: at "
                "least one of them was changed (the public key narrows a change down to the "
                "events between two checkpoints; the HMAC key names the event)",
                lo,
                b - 1,
                t.file if t is not None else None,
            )
        )

    def _close_slots(self, lo: int, b: int) -> None:
        assert self.slots is not None
        slots = self.slots
        chosen: list[list[Line]] = []
        complete = True
        for s in range(self.base, b):
            cands = slots.pop(s, [])
            complete = complete and bool(cands)
            chosen.append(cands)
        self.slots = slots or None  # lines that came early for later sequences stay
        if self.broken or not complete:
            self.unchecked.append((lo, b - 1))
            for i, cands in enumerate(chosen):
                if len(cands) > 1:
                    self._resolve(self.base + i, cands, None)
            self._resume_from(b)
            return
        for i, cands in enumerate(chosen):
            if len(cands) > 1:
                forged = [c for c in cands if c.hmac is False]
                if forged and len(forged) < len(cands):
                    for c in forged:
                        self._inserted(self.base + i, c, "its HMAC signature does not verify")
                    chosen[i] = [c for c in cands if c.hmac is not False]
        multi = [i for i, cands in enumerate(chosen) if len(cands) > 1]
        size, frontier = self.tree.size, self.tree.frontier()
        assert self.cps is not None
        roots = {t.root for t in self.cps.by_size[b]}
        first: MerkleTree | None = None
        matched: tuple[MerkleTree, tuple[int, ...]] | None = None
        for pick in itertools.islice(
            itertools.product(*(range(len(chosen[i])) for i in multi)), _MAX_TRIALS
        ):
            leaves = [cands[0].leaf for cands in chosen]
            for i, k in zip(multi, pick, strict=True):
                leaves[i] = chosen[i][k].leaf
            tree = MerkleTree.from_frontier(size, frontier)
            tree.extend(leaves)
            first = first or tree
            if tree.root() in roots:
                matched = (tree, pick)
                break
        if matched is not None:
            self.tree = matched[0]
            self._compare(b, self.tree.root())
            for i, k in zip(multi, matched[1], strict=True):
                self._resolve(self.base + i, chosen[i], k)
            return
        assert first is not None
        self._compare(b, first.root())
        self._mismatch(lo, b)
        for i in multi:
            self._resolve(self.base + i, chosen[i], None)
        self._resume_from(b)

    # -- placing a line out of order --------------------------------------------------------

    def _place(self, s: int, line: Line) -> None:
        """Put a line's leaf in its sequence's slot (a second one: a duplicate)."""
        if not self.use_tree or self.broken or s < self.base:
            return  # no tree to check, or its interval was already compared
        if self.slots is None:
            self.slots = {
                self.base + i: [Line(self.base + i, h, None, -1)]
                for i, h in enumerate(self.pending)
            }
            self.pending = []
        self.slots.setdefault(s, []).append(line)
