"""Verifying an audit log: does it hold exactly what its writer sealed, and all of it?

This module owns the verifier: one streaming pass over a local log directory (or one
JSON Lines export) that checks the signed Merkle checkpoints with only the public key
and, given the secret, the HMAC chain of every event, and reports every finding with
its sequence numbers and kind, and the time range it covered against the one asked for
(as CloudTrail's ``validate-logs`` does).

How it checks, in one pass and O(log n + checkpoint interval) memory:

- All checkpoint files are read first, with any external anchor file (a deleted
  segment's later checkpoints still tell how many events there were). Every note must
  verify with a given public key; the trusted ones give tree sizes at which the log's
  Merkle root is compared.
- Each event line's leaf hash (RFC 6962 over the line's bytes without the newline)
  goes into the tree in sequence order; at every trusted tree size the roots must be
  equal. Between two such sizes the leaves are kept, so events that are swapped or
  duplicated are put in sequence order (or each copy tried) before the comparison,
  and a mismatch narrows a change down to that interval.
- After a mismatch or a gap the tree resumes from the frontier stored with the
  checkpoint, once the frontier is shown to fold to the signed root, so one change
  does not hide the rest of the log.
- Sequence numbers are read without decoding JSON (the integrity object is the last
  field of a canonical line) and classify what was done: missing, inserted,
  reordered, modified.
- With the HMAC key every event's signature and its link to the previous one are
  checked, which pins a modification to one sequence number.
- A trusted checkpoint larger than the log, or checkpoints that stop before their
  heartbeat promised the next one (and no ``closed`` line), show a cut-off tail.

What it cannot see from the log directory alone: a log cut back to an earlier clean
close, or to within a heartbeat of the newest checkpoint left, together with the
checkpoints after that point, looks like a shorter, intact log. Checkpoints kept
elsewhere (`anchors`, a witness) show that.

Kinds of finding, and what detects them: `modified` (a root mismatch between two
checkpoints, an HMAC that does not verify, a line whose sequence number or integrity
fields were changed); `missing` (a gap in sequence numbers, a whole segment when the
gap starts a segment); `inserted` (a second line for one sequence number, resolved by
the checkpoint or the HMAC, a line that is no event, events after a `closed`
checkpoint that nothing covers); `reordered` (a sequence number that comes late or
early); `truncated` (a trusted checkpoint beyond the log's end, or checkpoints that
stop before their heartbeat); `bad_signature` (a checkpoint note that does not verify
with a given key, events without an HMAC signature, or an HMAC key that verifies no
event); `unknown_key` (checkpoints signed only by keys not given); `chain_broken` (a
previous_signature link that no other finding explains); `unreadable` (a file or a
checkpoint record that cannot be read); `no_checkpoint` (nothing signed by a given key).
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import itertools
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import orjson

from kaudit.errors import UsageError
from kaudit.integrity.checkpoint import CheckpointFormatError, parse_signed
from kaudit.integrity.keys import KeyRing
from kaudit.integrity.merkle import MerkleTree
from kaudit.integrity.store import StoredCheckpoint, read_checkpoint_file, read_checkpoints
from kaudit.log.segments import list_segments, segment_name

__all__ = [
    "CheckpointRecords",
    "Coverage",
    "Finding",
    "FindingKind",
    "LogPart",
    "TimeRange",
    "VerifyReport",
    "VerifyUsageError",
    "sequence_of",
    "verify_jsonl",
    "verify_log",
    "verify_parts",
]

_CHUNK = 2 << 20
_SEQ_KEY = b'"sequence_number":'
_SEQ_KEY_LEN = len(_SEQ_KEY)
_LEAF = b"\x00"
_sha256 = hashlib.sha256
_LEAF_HASH = _sha256(_LEAF)
_MAX_TRIALS = 64  # combinations of duplicated events tried against one checkpoint
_FLUSH_LEAVES = 1 << 20  # leaves buffered before a clean stretch is folded into the tree


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
        return {"start": _iso(self.start), "end": _iso(self.end)}


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
            "first_event": _iso(self.first_event),
            "last_event": _iso(self.last_event),
            "first_checkpoint": _iso(self.first_checkpoint),
            "last_checkpoint": _iso(self.last_checkpoint),
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


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------------- checkpoints


@dataclass(slots=True)
class _Trusted:
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
class _Checkpoints:
    by_size: dict[int, list[_Trusted]] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    total: int = 0
    referenced_segments: dict[int, str] = field(default_factory=dict)

    def all(self) -> Iterator[_Trusted]:
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


def _named(records: Iterable[tuple[Path, int, StoredCheckpoint | str]]) -> CheckpointRecords:
    return ((path.name, number, item) for path, number, item in records)


def _read_anchor(path: Path) -> CheckpointRecords:
    """The checkpoint records of an external anchor file (`integrity.checkpoints.
    anchor_path`): the same records as beside the log, all in one file."""
    try:
        yield from _named(read_checkpoint_file(path))
    except OSError as exc:
        yield path.name, 0, f"cannot read the anchor file: {exc.strerror}"


def _load_checkpoints(
    records: CheckpointRecords, ring: KeyRing, origin: str | None
) -> _Checkpoints:
    out = _Checkpoints()
    unknown: dict[tuple[str, str], list[int]] = {}
    trusted: list[tuple[str, _Trusted]] = []
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
                _Trusted(
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


# ---------------------------------------------------------------------------- the HMAC


_SIG_KEY = b'"signature":'
_PREV_KEY = b',"previous_signature":'
_HEX_PREFIX = b'"sha256:'
_QUOTED = len(_HEX_PREFIX) + 64 + 1  # "sha256:<64 hex>"
_UNKNOWN = b"?"  # a previous signature nobody can match: the chain is not checked there


class _Hmac:
    """Checks each line's HMAC-SHA256 signature and its link to the line before.

    The integrity fields end every sealed line in a fixed layout, so the signed bytes
    are rebuilt by slicing instead of a regular expression, and HMAC (RFC 2104) is
    computed from copies of hashes already fed the padded key: nearly half the cost of
    `hmac.digest` per line, whose set-up dominates for messages this short (measured).
    """

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = _sha256(key).digest()
        key = key.ljust(64, b"\0")
        self.inner = _sha256(bytes(b ^ 0x36 for b in key))
        self.outer = _sha256(bytes(b ^ 0x5C for b in key))
        # The signature of the line before (file order); unknown before the first line,
        # whose link points outside what is being verified.
        self.previous: bytes | None = _UNKNOWN

    def check(self, lines: Sequence[bytes]) -> tuple[list[int], list[int], list[int], list[int]]:
        """(lines whose signature is wrong, unsigned lines, lines whose
        previous_signature is not the signature of the line before, malformed lines)."""
        inner, outer = self.inner.copy, self.outer.copy
        bad: list[int] = []
        unsigned: list[int] = []
        breaks: list[int] = []
        malformed: list[int] = []
        previous = self.previous
        q = _QUOTED
        for i, b in enumerate(lines):
            n = len(b)
            if b.endswith(b'"}}'):
                prev_start = n - 2 - q
                prev: bytes | None = b[prev_start + 8 : n - 3]
                if b[prev_start : prev_start + 8] != _HEX_PREFIX:
                    malformed.append(i)
                    previous = _UNKNOWN
                    continue
            elif b.endswith(b"null}}"):
                prev_start = n - 6
                prev = None
            else:
                malformed.append(i)
                previous = _UNKNOWN
                continue
            sig_end = prev_start - 22
            if b[sig_end:prev_start] != _PREV_KEY:
                malformed.append(i)
                previous = _UNKNOWN
                continue
            if b[sig_end - 1 : sig_end] == b'"':
                sig_start = sig_end - q
                sig: bytes | None = b[sig_start + 8 : sig_end - 1]
                ok_prefix = b[sig_start : sig_start + 8] == _HEX_PREFIX
            elif b[sig_end - 4 : sig_end] == b"null":
                sig_start = sig_end - 4
                sig = None
                ok_prefix = True
            else:
                ok_prefix = False
                sig_start = sig_end
                sig = None
            if not ok_prefix or b[sig_start - 12 : sig_start] != _SIG_KEY:
                malformed.append(i)
                previous = _UNKNOWN
                continue
            if sig is None:
                unsigned.append(i)
            else:
                h = inner()
                h.update(b[:sig_start])
                h.update(b"null")
                h.update(b[sig_end:])
                mac = outer()
                mac.update(h.digest())
                if mac.hexdigest().encode() != sig:
                    bad.append(i)
            # A null previous_signature means the chain is not in use for this line
            # (chaining off, or it starts here); anything else must match.
            if prev is not None and prev != previous and previous is not _UNKNOWN:
                breaks.append(i)
            previous = sig
        self.previous = previous
        return bad, unsigned, breaks, malformed


# ------------------------------------------------------------------------------ lines


def _seq_of(line: bytes) -> int | None:
    """The integrity sequence number of an event line, without decoding the JSON: the
    integrity object is the last field of a canonical line, so its key is the last one
    of that name. None when the line has no well-formed one."""
    p = line.rfind(_SEQ_KEY)
    if p < 0:
        return None
    start = end = p + _SEQ_KEY_LEN
    n = len(line)
    while end < n and 48 <= line[end] <= 57:
        end += 1
    if end == start or end - start > 20 or (line[start] == 48 and end > start + 1):
        return None
    if end >= n or line[end] not in b",}":
        return None
    return int(line[start:end])


sequence_of = _seq_of
"""The integrity sequence number of a native event line, read without decoding it."""


# After the sequence number's digits a sealed line ends in one of three fixed layouts:
# ,"signature":S,"previous_signature":P}} with S and P each null or "sha256:<64 hex>".
_TAILS = (13 + 4 + 22 + 4 + 2, 13 + _QUOTED + 22 + 4 + 2, 13 + _QUOTED + 22 + _QUOTED + 2)


def _seqs_fast(lines: list[bytes]) -> list[int] | None:
    """Every line's sequence number, or None when some line needs the careful parser.

    Tries the first line's tail layout for all lines (a slice at a fixed distance from
    the end), then a search per line. What either accepts beyond `_seq_of` can only
    pass the caller's check by being the expected number, and the Merkle tree or the
    HMAC still sees the bytes.
    """
    first = lines[0]
    p = first.rfind(_SEQ_KEY)
    tail = len(first) - first.find(b",", p) if p >= 0 else -1
    if tail in _TAILS:
        try:
            return [int(ln[-tail - 20 : -tail].rpartition(b":")[2]) for ln in lines]
        except ValueError:
            pass
    return _seqs_search(lines)


def _seqs_search(lines: list[bytes]) -> list[int] | None:
    k, kl = _SEQ_KEY, _SEQ_KEY_LEN
    try:
        return [int(ln[(p := ln.rfind(k) + kl) : ln.index(b",", p)]) for ln in lines]
    except ValueError:
        return None


def _leaf_hashes(lines: list[bytes]) -> list[bytes]:
    """RFC 6962 leaf hashes: copying a hash already fed the 0x00 prefix is cheaper than
    concatenating the prefix to each line and starting a new hash (measured)."""
    out: list[bytes] = []
    append = out.append
    start = _LEAF_HASH.copy
    for ln in lines:
        h = start()
        h.update(ln)
        append(h.digest())
    return out


def _timestamp(line: bytes | None) -> datetime | None:
    if line is None:
        return None
    try:
        value = orjson.loads(line).get("timestamp")
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except (orjson.JSONDecodeError, AttributeError, ValueError, TypeError):
        return None


def _base_of(name: str) -> int | None:
    head = name.split(".", 1)[0]
    return int(head) if len(head) == 20 and head.isdigit() else None


@dataclass(frozen=True, slots=True)
class _PartNames:
    """How the files a log is stored in are named: what one is called, the first
    sequence number a file's name says it holds, and a name for the one holding a range
    that is gone (so a gap at the start of a file can be reported as a deleted file)."""

    noun: str
    first_of: Callable[[str], int | None]
    gone: Callable[[int, int], str]


def _segment_gone(lo: int, _hi: int) -> str:
    return segment_name(lo)


_SEGMENTS = _PartNames("segment", _base_of, _segment_gone)


@dataclass(slots=True)
class _Line:
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
class _Run:
    lo: int
    hi: int
    file: str | None
    detail: str


def _lo(run: _Run) -> int:
    return run.lo


def _hi(run: _Run) -> int:
    return run.hi


_HmacResult = tuple[list[int], list[int], list[int], list[int]]


# ------------------------------------------------------------------------------ walker


class _Walker:
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
        cps: _Checkpoints | None,
        hmac: _Hmac | None,
        *,
        start: int | None,
        stop: int | None,
        jsonl: bool,
        tree: MerkleTree | None = None,
        parts: _PartNames | None = None,
    ) -> None:
        self.cps = cps
        self.parts = parts or _SEGMENTS
        self.hmac = hmac
        self.jsonl = jsonl
        self.stop = stop
        self.expected: int = start or 0
        self.started = start is not None  # a JSONL export starts wherever its first line does
        self.tree = tree or MerkleTree()
        self.base = self.tree.size  # where the tree (and the interval) is
        self.interval_lo = self.base
        self.sizes = cps.sizes if cps is not None else []
        self.next_b = bisect.bisect_left(self.sizes, self.base)
        self.use_tree = bool(self.sizes)
        self.pending: list[bytes] = []
        self.slots: dict[int, list[_Line]] | None = None
        self.early: dict[int, tuple[int, _Line]] = {}  # seq seen before its turn
        self.broken = False  # the tree cannot continue until a trusted frontier resumes it
        self.carry: _Line | None = None
        self.done = False
        self.events = 0
        self.first_seq: int | None = None
        self.max_seen = -1
        self.first_line: bytes | None = None
        self.last_line: bytes | None = None
        self.findings: list[Finding] = []
        self.unchecked: list[tuple[int, int]] = []  # intervals no checkpoint could vouch for
        self.missing: list[_Run] = []
        self.reordered: list[_Run] = []
        self.exact: set[int] = set()  # sequences with a finding that names the event
        self.hmac_bad: dict[tuple[str | None, int], tuple[int, str | None]] = {}
        self.hmac_bad_at: dict[int, tuple[str | None, int]] = {}  # seq -> line, to look up
        self.unsigned: list[tuple[int | None, str, int]] = []
        self.chain_breaks: list[tuple[int | None, str, int]] = []
        self.not_events = 0
        self.repeats = 0
        self.checkpoints_checked = 0
        self.verified_through: int | None = None
        self.cp_times: list[datetime] = []
        self._settle_boundaries()

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
        chosen: list[list[_Line]] = []
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

    # -- classifying lines ----------------------------------------------------------------

    def _inserted(self, seq: int, line: _Line, why: str) -> None:
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

    def _resolve(self, seq: int, cands: list[_Line], genuine: int | None) -> None:
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

    def _second(self, seq: int, earlier: _Line | None, line: _Line) -> None:
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
                self._inserted(seq, _Line(seq, b"", key[0], key[1]), "its HMAC does not verify")
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

    def _place(self, s: int, line: _Line) -> None:
        """Put a line's leaf in its sequence's slot (a second one: a duplicate)."""
        if not self.use_tree or self.broken or s < self.base:
            return  # no tree to check, or its interval was already compared
        if self.slots is None:
            self.slots = {
                self.base + i: [_Line(self.base + i, h, None, -1)]
                for i, h in enumerate(self.pending)
            }
            self.pending = []
        self.slots.setdefault(s, []).append(line)

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

    def _note_hmac(self, line: _Line, seq: int) -> None:
        if line.hmac is False:
            self.hmac_bad[(line.file, line.offset)] = (seq, line.file)
            self.hmac_bad_at[seq] = (line.file, line.offset)
            self.exact.add(seq)
        if line.unsigned:
            self.unsigned.append((seq, line.file or "", line.offset))
        if line.broke_chain:
            self.chain_breaks.append((seq, line.file or "", line.offset))

    def _one(self, line: _Line, nxt: _Line | None) -> None:
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

    def _modified_here(self, e: int, line: _Line, why: str) -> None:
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

    def _missing(self, lo: int, hi: int, line: _Line) -> None:
        base = None if self.jsonl or line.file is None else self.parts.first_of(line.file)
        if line.first_in_file and base is not None and base == line.seq:
            gone = self.parts.gone(lo, hi)
            detail = f"the {self.parts.noun} holding them ({gone}) is gone"
            if lo == 0:
                detail += " (deleted, or removed by retention)"
            self.missing.append(_Run(lo, hi, gone, detail))
            return
        where = "the export" if self.jsonl else line.file
        self.missing.append(_Run(lo, hi, line.file, f"deleted from {where} before {line.where()}"))

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
            parts.append(_Run(run.lo, s - 1, run.file, run.detail))
        if s < run.hi:
            parts.append(_Run(s + 1, run.hi, run.file, run.detail))
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
        runs[start:end] = [_Run(lo, hi, file, "")]

    # -- feeding ------------------------------------------------------------------------

    def feed(self, lines: list[bytes], file: str, offset: int, file_start: bool) -> None:
        """Complete lines (newlines stripped) of `file`, the first at byte `offset`."""
        if self.done or not lines:
            return
        if not self.started and self.carry is None:
            first = _seq_of(lines[0])
            if first is not None:
                self.expected = self.base = self.interval_lo = first
                self.started = True
        exp = self.expected
        n = len(lines)
        fast = False
        if self.carry is None and self.slots is None and not self.early and self.started:
            want = list(range(exp, exp + n))
            fast = _seqs_fast(lines) == want or _seqs_search(lines) == want
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
        leaves = _leaf_hashes(lines) if want_leaves else None
        if fast:
            self._fast(lines, leaves, hm, file, offset)
        else:
            self._careful(lines, leaves, hm, file, offset, file_start)

    def _fast(
        self,
        lines: list[bytes],
        leaves: list[bytes] | None,
        hm: _HmacResult | None,
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
        self, hm: _HmacResult, lines: list[bytes], exp: int, file: str, offset: int
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
        hm: _HmacResult | None,
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
            item = _Line(
                _seq_of(ln),
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
        near = _Spans(spans, margin=1)
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


class _Spans:
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


# ------------------------------------------------------------------------------ reading


def _chunks(f: Any, offset: int, torn: list[int]) -> Iterator[tuple[list[bytes], int]]:
    """(complete lines without newlines, byte offset of the first) from `f`, in large
    reads; the length of a last line without a newline is appended to `torn`."""
    carry = b""
    pos = offset
    while True:
        block = f.read(_CHUNK)
        if not block:
            break
        lines = block.split(b"\n")
        if carry:
            # Joining only the split line: prepending it to the block copies megabytes.
            lines[0] = carry + lines[0]
        size = len(block) + len(carry)
        carry = lines.pop()
        if lines:
            yield lines, pos
            pos += size - len(carry)
    if carry:
        torn.append(len(carry))


def _check_usage(
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


def _anchor(
    cps: _Checkpoints, since: datetime, log_dir: Path, segments: list[int]
) -> tuple[int, int, int, MerkleTree] | None:
    """Where to start for `since`: the largest trusted checkpoint made no later than it,
    whose frontier folds to its root and whose stored position holds that event."""
    best: _Trusted | None = None
    for t in cps.all():
        usable = t.size and t.frontier is not None and t.time is not None and t.time <= since
        if usable and (best is None or t.size > best.size):
            best = t
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
    if _seq_of(head.split(b"\n", 1)[0]) != best.size:
        return None
    assert best.frontier is not None
    return best.size, segment, offset, MerkleTree.from_frontier(best.size, list(best.frontier))


def _stop_at(cps: _Checkpoints, until: datetime) -> _Trusted | None:
    """The first trusted checkpoint made at or after `until`: verification ends there."""
    for t in cps.all():
        if t.time is not None and t.time >= until:
            return t
    return None


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
    ring = _check_usage(verifiers, hmac_key, since, until, now)
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
            _named(read_checkpoints(log_dir)), *(_read_anchor(a) for a in anchor_paths)
        )
        cps = _load_checkpoints(records, ring, origin)
    segments = list_segments(log_dir)
    notes: list[str] = []
    start_seq, start_segment, start_offset, tree = 0, -1, 0, None
    if since is not None:
        anchor = _anchor(cps, since, log_dir, segments) if cps is not None else None
        if anchor is not None:
            start_seq, start_segment, start_offset, tree = anchor
            notes.append(
                f"started at event {start_seq}, the last checkpoint made before {_iso(since)}; "
                "earlier events were not read"
            )
        else:
            notes.append(f"no trusted checkpoint before {_iso(since)} to start from: read all")
    stop_cp = _stop_at(cps, until) if cps is not None and until is not None else None
    walker = _Walker(
        cps,
        _Hmac(hmac_key) if hmac_key else None,
        start=start_seq,
        stop=stop_cp.size if stop_cp is not None else None,
        jsonl=False,
        tree=tree,
    )
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
                for lines, at in _chunks(f, offset, torn):
                    walker.feed(lines, name, at, at == 0)
                    if progress is not None:
                        progress(walker.events)
                    if walker.done:
                        break
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
    checks = (
        *(("checkpoints",) if ring is not None else ()),
        *(("hmac_chain",) if hmac_key else ()),
        "sequence",
    )
    if ring is None:
        notes.append(
            "checked with the HMAC key only: events cut off the end of the log cannot be "
            "seen without the checkpoints (give the public key)"
        )
    return _report(
        str(log_dir),
        checks,
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
    _check_usage(verifiers, hmac_key, since, until, now)
    path = Path(path)
    if not path.is_file():
        raise VerifyUsageError(f"{path}: no such file")
    now = now or datetime.now(UTC)
    walker = _Walker(None, _Hmac(hmac_key) if hmac_key else None, start=None, stop=None, jsonl=True)
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
            for lines, at in _chunks(f, 0, torn):
                walker.feed(lines, path.name, at, at == 0)
                if progress is not None:
                    progress(walker.events)
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
    checks = (*(("hmac_chain",) if hmac_key else ()), "sequence")
    return _report(
        str(path),
        checks,
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


@dataclass(frozen=True, slots=True)
class LogPart:
    """One stored piece of a log kept outside a log directory (an object in S3): its
    name, the sequence numbers its name says it holds, and how to open its decompressed
    bytes (reading raises OSError, EOFError or zlib.error when it cannot)."""

    name: str
    first: int
    last: int
    open: Callable[[], AbstractContextManager[IO[bytes]]]


def _resume_point(cps: _Checkpoints, since: datetime) -> _Trusted | None:
    """The largest trusted checkpoint made no later than `since` that the tree can be
    continued from (its frontier folds to its signed root)."""
    best: _Trusted | None = None
    for t in cps.all():
        usable = t.size and t.frontier is not None and t.time is not None and t.time <= since
        if usable and (best is None or t.size > best.size):
            best = t
    return best


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
    ring = _check_usage(verifiers, hmac_key, since, until, now)
    now = now or datetime.now(UTC)
    ordered = sorted(parts, key=lambda p: (p.first, p.last, p.name))
    cps = _load_checkpoints(checkpoints, ring, origin) if ring is not None else None
    report_notes = list(notes)
    start_seq, tree = 0, None
    if since is not None:
        resume = _resume_point(cps, since) if cps is not None else None
        if resume is not None and resume.frontier is not None:
            start_seq = resume.size
            tree = MerkleTree.from_frontier(resume.size, list(resume.frontier))
            report_notes.append(
                f"started at event {start_seq}, the last checkpoint made before "
                f"{_iso(since)}; earlier {noun}s were not read"
            )
        else:
            report_notes.append(
                f"no trusted checkpoint before {_iso(since)} to start from: read all"
            )
    stop_cp = _stop_at(cps, until) if cps is not None and until is not None else None
    firsts = {p.name: p.first for p in ordered}
    walker = _Walker(
        cps,
        _Hmac(hmac_key) if hmac_key else None,
        start=start_seq,
        stop=stop_cp.size if stop_cp is not None else None,
        jsonl=False,
        tree=tree,
        parts=_PartNames(noun, firsts.get, gone_name),
    )
    io_findings: list[Finding] = []
    keep_from = _overlaps(ordered)
    remembered: dict[int, bytes] = {}  # seq -> digest of lines a later part repeats
    repeats = 0
    read_through = -1  # the highest sequence number the parts read so far claim
    for part, keep in zip(ordered, keep_from, strict=True):
        if part.last < start_seq:
            continue
        for old in [q for q in remembered if q < part.first]:
            del remembered[old]
        again = part.first <= read_through
        read_through = max(read_through, part.last)
        filtering = again or keep is not None or part.first < start_seq
        torn: list[int] = []
        try:
            with part.open() as f:
                for lines, at in _chunks(f, 0, torn):
                    first_line = lines[0] if at == 0 else None
                    if filtering:
                        kept = []
                        for ln in lines:
                            seq = _seq_of(ln)
                            if seq is not None and seq < start_seq:
                                continue
                            if seq is not None and (again or keep is not None):
                                digest = _sha256(ln).digest()
                                if again and remembered.get(seq) == digest:
                                    repeats += 1
                                    continue
                                if keep is not None and seq >= keep:
                                    remembered[seq] = digest
                            kept.append(ln)
                        lines = kept
                    walker.feed(lines, part.name, at, bool(lines) and lines[0] is first_line)
                    if progress is not None:
                        progress(walker.events)
                    if walker.done:
                        break
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
    if repeats:
        report_notes.append(
            f"{repeats} line(s) repeat events of an earlier {noun} byte for byte (a batch "
            "delivered again: delivery is at-least-once); each was checked once"
        )
    checks = (
        *(("checkpoints",) if ring is not None else ()),
        *(("hmac_chain",) if hmac_key else ()),
        "sequence",
    )
    if ring is None:
        report_notes.append(
            f"checked with the HMAC key only: events cut off the end (a deleted last {noun}) "
            "cannot be seen without the checkpoints (give the public key)"
        )
    return _report(
        source,
        checks,
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


def _report(
    source: str,
    checks: tuple[str, ...],
    walker: _Walker,
    cps: _Checkpoints | None,
    io_findings: list[Finding],
    notes: list[str],
    since: datetime | None,
    until: datetime | None,
    now: datetime,
    grace: timedelta,
    stop_cp: _Trusted | None,
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
        spans = _Spans(walker.unchecked)
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
    walker: _Walker,
    cps: _Checkpoints,
    until: datetime | None,
    now: datetime,
    grace: timedelta,
    stop_cp: _Trusted | None,
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
                f"the signed checkpoint of size {top.size} (made {_iso(top.time)}) covers "
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
                    f"({_iso(largest.time)}) and no checkpoint covers them: appended after "
                    "the writer closed it (or written with checkpoints off)",
                    lo,
                    hi,
                    largest.file,
                )
            )
        else:
            notes.append(
                f"events {lo}..{hi} are newer than the newest checkpoint "
                f"({_iso(largest.time)}): no checkpoint covers them yet"
            )
    if not newest.closed and newest.heartbeat is not None and newest.time is not None:
        due = newest.time + timedelta(seconds=newest.heartbeat)
        ref = min(now, until) if until is not None else now
        if ref > due + grace:
            out.append(
                Finding(
                    FindingKind.TRUNCATED,
                    f"checkpoints stopped at {_iso(newest.time)} though the heartbeat "
                    f"promised one by {_iso(due)} (checked at {_iso(ref)}): events after "
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
            gaps.append(f"{_iso(a.time)} (size {a.size}) until {_iso(b.time)}")
    if gaps:
        shown = "; ".join(gaps[:5]) + (f"; and {len(gaps) - 5} more" if len(gaps) > 5 else "")
        notes.append(f"the writer stopped without closing and came back later: {shown}")
    return out
