"""Reading sealed event lines without decoding them, as fast as the walk needs.

A canonical line ends in its integrity object, so its sequence number and its HMAC
fields sit at known places from the end; they are sliced out instead of parsing the
JSON. Here: reading a file in large chunks of whole lines, a line's sequence number
(one line, or a whole chunk at once), RFC 6962 leaf hashes, checking each line's
HMAC-SHA256 signature and its link to the line before, and how the files a log is
stored in are named.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kaudit.log.segments import segment_name

_CHUNK = 2 << 20
_SEQ_KEY = b'"sequence_number":'
_SEQ_KEY_LEN = len(_SEQ_KEY)
_LEAF = b"\x00"
_sha256 = hashlib.sha256
_LEAF_HASH = _sha256(_LEAF)
_SIG_KEY = b'"signature":'
_PREV_KEY = b',"previous_signature":'
_HEX_PREFIX = b'"sha256:'
_QUOTED = len(_HEX_PREFIX) + 64 + 1  # "sha256:<64 hex>"
_UNKNOWN = b"?"  # a previous signature nobody can match: the chain is not checked there


def chunks(f: Any, offset: int, torn: list[int]) -> Iterator[tuple[list[bytes], int]]:
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


def seq_of(line: bytes) -> int | None:
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


sequence_of = seq_of
"""The integrity sequence number of a native event line, read without decoding it."""


# After the sequence number's digits a sealed line ends in one of three fixed layouts:
# ,"signature":S,"previous_signature":P}} with S and P each null or "sha256:<64 hex>".
_TAILS = (13 + 4 + 22 + 4 + 2, 13 + _QUOTED + 22 + 4 + 2, 13 + _QUOTED + 22 + _QUOTED + 2)


def seqs_fast(lines: list[bytes]) -> list[int] | None:
    """Every line's sequence number, or None when some line needs the careful parser.

    Tries the first line's tail layout for all lines (a slice at a fixed distance from
    the end), then a search per line. What either accepts beyond `seq_of` can only
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
    return seqs_search(lines)


def seqs_search(lines: list[bytes]) -> list[int] | None:
    k, kl = _SEQ_KEY, _SEQ_KEY_LEN
    try:
        return [int(ln[(p := ln.rfind(k) + kl) : ln.index(b",", p)]) for ln in lines]
    except ValueError:
        return None


def leaf_hashes(lines: list[bytes]) -> list[bytes]:
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


class HmacCheck:
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


HmacResult = tuple[list[int], list[int], list[int], list[int]]


def _base_of(name: str) -> int | None:
    head = name.split(".", 1)[0]
    return int(head) if len(head) == 20 and head.isdigit() else None


@dataclass(frozen=True, slots=True)
class PartNames:
    """How the files a log is stored in are named: what one is called, the first
    sequence number a file's name says it holds, and a name for the one holding a range
    that is gone (so a gap at the start of a file can be reported as a deleted file)."""

    noun: str
    first_of: Callable[[str], int | None]
    gone: Callable[[int, int], str]


def _segment_gone(lo: int, _hi: int) -> str:
    return segment_name(lo)


SEGMENTS = PartNames("segment", _base_of, _segment_gone)
