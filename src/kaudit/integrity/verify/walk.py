"""Walking one stream of lines: the one walker every source is verified with.

A log directory's segments, a JSON Lines export, the objects of a copy (S3) and a Kafka
writer stream are all fed to `Walker` the same way (`feed_file`), in log order. The
walker reads sequence numbers without decoding JSON and classifies what was done to
the log: missing, inserted, reordered, modified. A chunk whose sequence numbers run on
from the expected one takes the fast path (its leaves are appended and compared at each
checkpoint boundary); any other chunk goes line by line with one line of lookahead.

The walker is built in three layers, one per module: `Tally` (tally.py, what was found),
`Intervals` (intervals.py, the Merkle tree against the checkpoints) and `Walker` (here:
where the stream is and what each line is).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import IO

from kaudit.integrity.merkle import MerkleTree
from kaudit.integrity.verify.checkpoints import Checkpoints
from kaudit.integrity.verify.findings import Finding, FindingKind
from kaudit.integrity.verify.intervals import Intervals
from kaudit.integrity.verify.lines import (
    SEGMENTS,
    HmacCheck,
    HmacResult,
    PartNames,
    chunks,
    leaf_hashes,
    seq_of,
    seqs_fast,
    seqs_search,
)
from kaudit.integrity.verify.tally import Line

_FLUSH_LEAVES = 1 << 20  # leaves buffered before a clean stretch is folded into the tree


class Walker(Intervals):
    """One pass over the lines in log order: the expected sequence number, the Merkle
    tree at the last checkpoint boundary and the leaves of the interval since.

    Lines come in chunks. A chunk whose sequence numbers run on from the expected one
    takes the fast path: leaves are appended and compared at each boundary. Any other
    chunk goes line by line with one line of lookahead, placing leaves by the sequence
    number they claim (`slots`), so swapped or duplicated events are put in order or
    tried in turn when the interval's checkpoint is reached.
    """

    def __init__(
        self,
        cps: Checkpoints | None,
        hmac_key: bytes | None,
        *,
        start: int | None,
        stop: int | None,
        jsonl: bool,
        tree: MerkleTree | None = None,
        parts: PartNames | None = None,
    ) -> None:
        super().__init__(
            cps, start=start, stop=stop, jsonl=jsonl, tree=tree, parts=parts or SEGMENTS
        )
        self.hmac = HmacCheck(hmac_key) if hmac_key else None
        self.started = start is not None  # a JSONL export starts wherever its first line does
        self.early: dict[int, tuple[int, Line]] = {}  # seq seen before its turn
        self.carry: Line | None = None
        self.done = False
        self.first_line: bytes | None = None
        self.last_line: bytes | None = None
        self._settle_boundaries()

    # -- classifying lines ----------------------------------------------------------------

    def _advance(self, s: int) -> None:
        self.expected = s + 1
        if s > self.max_seen:
            self.max_seen = s
        if self.early:
            for q in [q for q in self.early if q < self.expected]:
                del self.early[q]
        self._settle_boundaries()
        if self.stop is not None and self.expected >= self.stop:
            self.done = True

    def _one(self, line: Line, nxt: Line | None) -> None:
        """Classify one line from the expected sequence and the line after it."""
        if self.done:
            return
        if not self.started:
            self.expected = self.base = self.interval_lo = line.seq or 0
            self.started = True
        e, s = self.expected, line.seq
        nseq = nxt.seq if nxt is not None else None
        self.events += 1
        if self.first_seq is None:
            self.first_seq = e if s is None else s
        # Recorded under the sequence the line claims; a branch below that decides it
        # stands for another event takes the record back.
        self._note_hmac(line, e if s is None else s)
        if s is None:
            self.not_events += 1
            if nseq == e:
                self.hmac_bad.pop((line.file, line.offset), None)
                self.findings.append(
                    Finding(
                        FindingKind.INSERTED,
                        f"{line.where()}: a line that is not an audit event (no "
                        "integrity.sequence_number) was put between events",
                        e - 1 if e else e,
                        e,
                        line.file,
                    )
                )
                return
            self._modified_here(e, line, "it has no readable integrity.sequence_number")
            return
        if s == e:
            if s in self.early:
                _, earlier = self.early.pop(s)
                if not self.use_tree or self.broken:
                    self._second(s, earlier, line)
            self._place(s, line)
            self._advance(s)
            return
        if s > e:
            if nseq == e + 1:
                self._modified_here(e, line, f"its sequence number reads {s}")
                return
            if nseq == e and s not in self.early:
                # Ahead of its turn: moved, or inserted; settled when the log gets there.
                self.early[s] = (e, line)
                self._place(s, line)
                return
            lo = e
            for q in sorted(q for q in self.early if e <= q < s):
                if lo < q:
                    self._missing(lo, q - 1, line)
                self._reordered(self.early.pop(q)[0], q, line.file)
                lo = q + 1
            if lo < s:
                self._missing(lo, s - 1, line)
            if s in self.early:
                _, earlier = self.early.pop(s)
                if not self.use_tree or self.broken:
                    self._second(s, earlier, line)
            self._place(s, line)
            self._advance(s)
            return
        # s < e: an event that comes late, or a second line for a sequence already seen.
        if self._take_missing(s):
            self._reordered(s, self.max_seen, line.file)
            self._place(s, line)
            return
        if self.use_tree and not self.broken and s >= self.base:
            self._place(s, line)  # two lines for s: the checkpoint decides
        else:
            self._second(s, None, line)

    def _modified_here(self, e: int, line: Line, why: str) -> None:
        # This finding names the event; its failing HMAC would only repeat it.
        self.hmac_bad.pop((line.file, line.offset), None)
        self.exact.add(e)
        self.findings.append(
            Finding(
                FindingKind.MODIFIED,
                f"event {e} was changed ({line.where()}): {why}",
                e,
                e,
                line.file,
            )
        )
        self._place(e, line)
        self._advance(e)

    # -- feeding ------------------------------------------------------------------------

    def feed(self, lines: list[bytes], file: str, offset: int, file_start: bool) -> None:
        """Complete lines (newlines stripped) of `file`, the first at byte `offset`."""
        if self.done or not lines:
            return
        if not self.started and self.carry is None:
            first = seq_of(lines[0])
            if first is not None:
                self.expected = self.base = self.interval_lo = first
                self.started = True
        exp = self.expected
        n = len(lines)
        fast = False
        if self.carry is None and self.slots is None and not self.early and self.started:
            want = list(range(exp, exp + n))
            fast = seqs_fast(lines) == want or seqs_search(lines) == want
        if fast and self.stop is not None and exp + n > self.stop:
            lines = lines[: max(0, self.stop - exp)]
            n = len(lines)
            if not n:
                self.done = True
                return
        if self.first_line is None:
            self.first_line = lines[0]
        self.last_line = lines[-1]
        hm = self.hmac.check(lines) if self.hmac is not None else None
        want_leaves = self.use_tree and self._boundary() is not None
        leaves = leaf_hashes(lines) if want_leaves else None
        if fast:
            self._fast(lines, leaves, hm, file, offset)
        else:
            self._careful(lines, leaves, hm, file, offset, file_start)

    def _fast(
        self,
        lines: list[bytes],
        leaves: list[bytes] | None,
        hm: HmacResult | None,
        file: str,
        offset: int,
    ) -> None:
        n = len(lines)
        exp = self.expected
        if not n:
            return
        if self.first_seq is None:
            self.first_seq = exp
        self.events += n
        if hm is not None and any(hm):
            self._fast_hmac(hm, lines, exp, file, offset)
        pos = 0
        if leaves is not None:
            while (b := self._boundary()) is not None and b <= exp + n:
                k = b - exp - pos
                if not self.broken:
                    self.pending.extend(leaves[pos : pos + k])
                pos += k
                self.expected = b
                self._close(b)
            if pos < n and not self.broken and self._boundary() is not None:
                self.pending.extend(leaves[pos:])
                if len(self.pending) >= _FLUSH_LEAVES:
                    # A long clean stretch without checkpoints: fold it into the tree so
                    # memory stays bounded (a later mismatch still names interval_lo).
                    self.tree.extend(self.pending)
                    self.base += len(self.pending)
                    self.pending = []
        self.expected = exp + n
        self.max_seen = max(self.max_seen, exp + n - 1)
        if self.stop is not None and self.expected >= self.stop:
            self.done = True

    def _fast_hmac(
        self, hm: HmacResult, lines: list[bytes], exp: int, file: str, offset: int
    ) -> None:
        bad, unsigned, breaks, malformed = hm
        # Byte offsets of the lines, computed once: a wrong key fails every line.
        at = list(itertools.accumulate((len(ln) + 1 for ln in lines), initial=offset))
        for i in sorted({*bad, *malformed}):
            self.hmac_bad[(file, at[i])] = (exp + i, file)
            self.hmac_bad_at[exp + i] = (file, at[i])
            self.exact.add(exp + i)
        for i in unsigned:
            self.unsigned.append((exp + i, file, at[i]))
        for i in breaks:
            self.chain_breaks.append((exp + i, file, at[i]))

    def _careful(
        self,
        lines: list[bytes],
        leaves: list[bytes] | None,
        hm: HmacResult | None,
        file: str,
        offset: int,
        file_start: bool,
    ) -> None:
        bad: set[int] = set()
        unsigned: set[int] = set()
        breaks: set[int] = set()
        if hm is not None:
            bad = {*hm[0], *hm[3]}
            unsigned = set(hm[1])
            breaks = set(hm[2])
        pos = offset
        for i, ln in enumerate(lines):
            item = Line(
                seq_of(ln),
                leaves[i] if leaves is not None else b"",
                file,
                pos,
                None if hm is None else i not in bad,
                i in unsigned,
                i in breaks,
                file_start and i == 0,
            )
            pos += len(ln) + 1
            if self.carry is not None:
                self._one(self.carry, item)
            self.carry = item
            if self.done:
                self.carry = None
                return
        c = self.carry
        if c is not None and self.started and c.seq == self.expected and c.seq not in self.early:
            self._one(c, None)  # a line in order needs no lookahead
            self.carry = None
        self._try_fast()

    def _try_fast(self) -> None:
        """Back to the fast path once the interval holds one line per sequence, in order."""
        if self.carry is not None or self.early or self.slots is None:
            return
        keys = range(self.base, self.expected)
        slots = self.slots
        if len(slots) != len(keys) or any(len(slots.get(k, ())) != 1 for k in keys):
            return
        self.pending = [slots[k][0].leaf for k in keys]
        self.slots = None

    # -- the end --------------------------------------------------------------------------

    def finish(self) -> None:
        if self.carry is not None:
            self._one(self.carry, None)
            self.carry = None
        for q, (e, line) in sorted(self.early.items()):
            self.exact.add(e)  # where it stands: it explains the broken link there
            self._inserted(
                q,
                line,
                f"it stands where event {e} was due, and the log never "
                "reaches that sequence number",
            )
        self.early.clear()
        if self.slots is not None:
            # Lines after the last checkpoint: duplicates there have nothing to decide them.
            for s, cands in sorted(self.slots.items()):
                if len(cands) > 1:
                    self._resolve(s, cands, None)
            self.slots = None
        self._closing_findings()


def feed_file(
    walker: Walker,
    f: IO[bytes],
    name: str,
    offset: int,
    torn: list[int],
    progress: Callable[[int], None] | None,
    keep: Callable[[list[bytes]], list[bytes]] | None = None,
) -> None:
    """Feed the lines of `f` (named `name`, read from byte `offset`) to the walker until
    it is done, calling `progress` with the events read so far after each chunk. `keep`
    filters each chunk's lines first; a torn last line's length goes to `torn`."""
    for lines, at in chunks(f, offset, torn):
        if keep is None:
            walker.feed(lines, name, at, at == 0)
        else:
            first = lines[0] if at == 0 else None
            lines = keep(lines)
            walker.feed(lines, name, at, bool(lines) and lines[0] is first)
        if progress is not None:
            progress(walker.events)
        if walker.done:
            break
