"""Checkpoints: signed statements of a log's Merkle tree head, as C2SP signed notes.

This module owns the checkpoint text and its signatures: building the body, signing it
with one or more Ed25519 keys (`kaudit.integrity.keys`), and parsing a signed checkpoint
strictly, reporting which signatures verified, which came from keys the verifier does
not know and which failed. Deciding what to do about a finding belongs to the caller.

The format is c2sp.org/tlog-checkpoint inside c2sp.org/signed-note, byte for byte
compatible with Go's ``golang.org/x/mod/sumdb/note`` and transparency-dev tooling::

    audit.example.com/prod                                 origin (the log stream)
    1000                                                   tree size, decimal
    3q2+7w8vN7C0i4rWb0bVcRbz1zFOxdVMaLNnM6s1b2s=           base64 of the RFC 6962 root
    time 2026-11-22T10:15:30Z                              extension lines (below)
    heartbeat 60
    sequence 1-1000
    closed
                                                           blank line
    — audit.example.com/prod AAAAAA…base64(key id || signature)…=

Every line ends with a newline (U+000A); the signed note text is everything up to and
including the newline before the blank line. Signature lines are an em dash (U+2014),
a space, the key name, a space and the standard base64 of the 4-byte key id followed
by the 64-byte Ed25519 signature of the note text. A note may carry several signature
lines (the old and new key during a rotation, or witnesses).

Extension lines kaudit writes and understands, in this order when it writes them:

``time YYYY-MM-DDTHH:MM:SSZ``
    When the writer made the checkpoint, UTC to the second. Writers re-sign the head
    on a heartbeat while idle, so the newest checkpoint's time says how recently the log
    was known to be whole; a log whose checkpoints stop early shows it.
``heartbeat SECONDS``
    The writer's promise: while it runs, another checkpoint follows within this many
    seconds. A verifier that finds none later than ``time + SECONDS`` (and no ``closed``)
    knows checkpoints stopped, whether by a crash or by someone cutting the log.
``sequence FIRST-LAST``
    The ``integrity.sequence_number`` of the first and the last event in the tree; so
    ``LAST - FIRST + 1`` equals the tree size. Present only when the size is not 0.
``closed``
    The writer closed the stream cleanly after this checkpoint; no heartbeat follows
    until it reopens the stream.

Numbers are ASCII decimal without leading zeros. Each known keyword appears at most
once and a malformed known line is a format error; other extension lines are kept and
passed through unread, as the checkpoint spec asks. Parsing is strict everywhere a
lenient reader could accept two spellings of one signed text: valid UTF-8 without
control characters other than newline, canonical base64 (no stray low bits), no empty
body lines, at most 100 signature lines.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kaudit.errors import KauditError
from kaudit.integrity.keys import (
    KEY_ID_SIZE,
    IntegrityKeyError,
    KeyRing,
    Signer,
    Verifier,
    check_key_name,
)
from kaudit.integrity.merkle import HASH_SIZE

__all__ = [
    "MAX_SIGNATURES",
    "Checkpoint",
    "CheckpointError",
    "CheckpointFormatError",
    "CheckpointSignatureError",
    "NoteSignature",
    "SignedCheckpoint",
    "SignedNote",
    "format_time",
    "open_note",
    "parse_signed",
    "sign",
    "sign_note",
]

MAX_SIGNATURES = 100  # what Go's note.Open accepts; the spec asks for at least 16
_SIG_PREFIX = "\u2014 "
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_SEQUENCE = re.compile(r"(0|[1-9][0-9]*)-(0|[1-9][0-9]*)")
_MAX_SIZE = (1 << 64) - 1
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")


class CheckpointError(KauditError):
    """A checkpoint or signed note is unusable; retrying does not help."""


class CheckpointFormatError(CheckpointError, ValueError):
    """Text that is not a well-formed checkpoint or signed note (says where and why)."""


class CheckpointSignatureError(CheckpointError):
    """A checkpoint whose signatures do not show that a trusted key signed it."""


def _check_chars(text: str, what: str) -> None:
    bad = _CONTROL.search(text)
    if bad:
        raise CheckpointFormatError(
            f"{what} contains the control character U+{ord(bad[0]):04X} at character {bad.start()}"
        )


def _decode(data: bytes | str, what: str) -> str:
    if isinstance(data, str):
        text = data
    else:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckpointFormatError(f"{what} is not valid UTF-8 (byte {exc.start})") from exc
    _check_chars(text, what)
    return text


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointFormatError(f"{what} is not valid base64: {text!r}") from exc
    # A base64 string whose unused low bits are set decodes to the same bytes as the
    # canonical one; accepting both would let a flipped character go unnoticed.
    if base64.b64encode(raw).decode() != text:
        raise CheckpointFormatError(f"{what} is not canonical base64: {text!r}")
    return raw


@dataclass(frozen=True, slots=True)
class _Extensions:
    time: datetime | None = None
    heartbeat: int | None = None
    sequence: tuple[int, int] | None = None
    closed: bool = False


def _parse_extensions(lines: Sequence[str], size: int) -> _Extensions:
    seen: set[str] = set()
    time: datetime | None = None
    heartbeat: int | None = None
    sequence: tuple[int, int] | None = None
    closed = False
    for line in lines:
        keyword, _, value = line.partition(" ")
        if keyword not in ("time", "heartbeat", "sequence", "closed"):
            continue
        if keyword in seen:
            raise CheckpointFormatError(f"extension {keyword!r} appears more than once")
        seen.add(keyword)
        if keyword == "time":
            if not _TIME.fullmatch(value):
                raise CheckpointFormatError(
                    f"extension line {line!r}: expected 'time YYYY-MM-DDTHH:MM:SSZ' (UTC)"
                )
            try:
                time = datetime.strptime(value, _TIME_FORMAT).replace(tzinfo=UTC)
            except ValueError as exc:
                raise CheckpointFormatError(
                    f"extension line {line!r}: {value} is not a valid date and time"
                ) from exc
        elif keyword == "heartbeat":
            if not _DECIMAL.fullmatch(value) or value == "0":
                raise CheckpointFormatError(
                    f"extension line {line!r}: expected 'heartbeat SECONDS', SECONDS a "
                    "positive whole number without leading zeros"
                )
            heartbeat = int(value)
        elif keyword == "sequence":
            match = _SEQUENCE.fullmatch(value)
            if not match:
                raise CheckpointFormatError(
                    f"extension line {line!r}: expected 'sequence FIRST-LAST', decimal "
                    "numbers without leading zeros"
                )
            first, last = int(match[1]), int(match[2])
            if first > last:
                raise CheckpointFormatError(
                    f"extension line {line!r}: the first sequence number is after the last "
                    "(an empty tree has no sequence line)"
                )
            if last - first + 1 != size:
                raise CheckpointFormatError(
                    f"extension line {line!r}: {last - first + 1} sequence numbers for a "
                    f"tree of {size} leaves"
                )
            sequence = (first, last)
        else:
            if value or line != "closed":
                raise CheckpointFormatError(f"extension line {line!r}: expected 'closed'")
            closed = True
    return _Extensions(time, heartbeat, sequence, closed)


def format_time(when: datetime) -> str:
    """`when` as a checkpoint ``time`` value: UTC, whole seconds, ``Z`` suffix."""
    if when.tzinfo is None:
        raise ValueError("a checkpoint time must be timezone-aware (e.g. datetime.now(UTC))")
    return when.astimezone(UTC).strftime(_TIME_FORMAT)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A Merkle tree head of one log stream: origin, size, root hash, extension lines.

    Construction validates every field, so a Checkpoint always has a well-formed
    `body()`; parse one with `from_body`, make one with the kaudit extensions with
    `create`.
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin:
            raise CheckpointFormatError("the checkpoint origin must be a non-empty string")
        _check_chars(self.origin, "the checkpoint origin")
        if "\n" in self.origin:
            raise CheckpointFormatError("the checkpoint origin must be a single line")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise CheckpointFormatError(f"the tree size must be an int, got {self.size!r}")
        if not 0 <= self.size <= _MAX_SIZE:
            raise CheckpointFormatError(f"the tree size {self.size} is out of range")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise CheckpointFormatError(
                f"the root hash must be {HASH_SIZE} bytes, got {self.root!r}"
            )
        extensions = tuple(self.extensions)
        for line in extensions:
            if not isinstance(line, str) or not line:
                raise CheckpointFormatError(
                    f"extension lines must be non-empty strings, got {line!r}"
                )
            _check_chars(line, f"extension line {line!r}")
            if "\n" in line:
                raise CheckpointFormatError(f"extension line {line!r} spans several lines")
        object.__setattr__(self, "extensions", extensions)
        _parse_extensions(extensions, self.size)

    @classmethod
    def create(
        cls,
        origin: str,
        size: int,
        root: bytes,
        *,
        time: datetime,
        heartbeat: int | None = None,
        sequence: tuple[int, int] | None = None,
        closed: bool = False,
        extra: Iterable[str] = (),
    ) -> Checkpoint:
        """A checkpoint carrying kaudit's extension lines, in their canonical order."""
        lines = [f"time {format_time(time)}"]
        if heartbeat is not None:
            lines.append(f"heartbeat {heartbeat}")
        if sequence is not None:
            lines.append(f"sequence {sequence[0]}-{sequence[1]}")
        if closed:
            lines.append("closed")
        lines.extend(extra)
        return cls(origin, size, root, tuple(lines))

    def body(self) -> bytes:
        """The checkpoint note text: origin, size, base64 root, extensions; each + newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        lines.extend(self.extensions)
        return ("\n".join(lines) + "\n").encode()

    @classmethod
    def from_body(cls, body: bytes | str) -> Checkpoint:
        """The checkpoint in a note text, checked strictly (see the module docstring)."""
        text = _decode(body, "the checkpoint")
        if not text.endswith("\n"):
            raise CheckpointFormatError("the checkpoint text does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointFormatError(
                f"a checkpoint has at least 3 lines (origin, size, root hash), got {len(lines)}"
            )
        for number, line in enumerate(lines, 1):
            if not line:
                raise CheckpointFormatError(f"line {number} of the checkpoint is empty")
        origin, size_text, root_text = lines[:3]
        if not _DECIMAL.fullmatch(size_text):
            raise CheckpointFormatError(
                f"line 2: the tree size {size_text!r} is not a decimal number without leading zeros"
            )
        size = int(size_text)
        if size > _MAX_SIZE:
            raise CheckpointFormatError(f"line 2: the tree size {size} is out of range")
        root = _b64decode(root_text, "line 3: the root hash")
        if len(root) != HASH_SIZE:
            raise CheckpointFormatError(
                f"line 3: the root hash is {len(root)} bytes, not {HASH_SIZE}"
            )
        return cls(origin, size, root, tuple(lines[3:]))

    @property
    def time(self) -> datetime | None:
        """When the checkpoint was made (the ``time`` extension), or None."""
        return _parse_extensions(self.extensions, self.size).time

    @property
    def heartbeat(self) -> int | None:
        """The promised maximum seconds until the next checkpoint, or None."""
        return _parse_extensions(self.extensions, self.size).heartbeat

    @property
    def sequence(self) -> tuple[int, int] | None:
        """The sequence numbers of the first and last event in the tree, or None."""
        return _parse_extensions(self.extensions, self.size).sequence

    @property
    def closed(self) -> bool:
        """Whether the writer closed the stream cleanly after this checkpoint."""
        return _parse_extensions(self.extensions, self.size).closed


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a note: key name, 4-byte key id and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes = field(repr=False)

    @property
    def key_id_hex(self) -> str:
        return self.key_id.hex()

    def line(self) -> str:
        """The signature line as it appears in the note, without the newline."""
        encoded = base64.b64encode(self.key_id + self.signature).decode()
        return f"{_SIG_PREFIX}{self.name} {encoded}"


@dataclass(frozen=True, slots=True)
class SignedNote:
    """A parsed signed note: its text and its signatures, sorted by what checking found."""

    text: bytes
    verified: tuple[NoteSignature, ...]
    unknown: tuple[NoteSignature, ...]
    bad: tuple[NoteSignature, ...]


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A parsed checkpoint and what its signatures showed.

    `verified`: signatures by a trusted key (name and key id match) that check out;
    `unknown`: signatures by keys the verifier was not given (ignored, as the spec
    says, but worth reporting); `bad`: signatures by a trusted key that do not verify,
    meaning the text or the signature was changed.
    """

    checkpoint: Checkpoint
    verified: tuple[NoteSignature, ...]
    unknown: tuple[NoteSignature, ...]
    bad: tuple[NoteSignature, ...]

    @property
    def trusted(self) -> bool:
        """At least one trusted key's signature verified and none failed."""
        return bool(self.verified) and not self.bad

    def require_trusted(self) -> Checkpoint:
        """The checkpoint if `trusted`; CheckpointSignatureError saying why not otherwise."""
        if self.trusted:
            return self.checkpoint
        cp = self.checkpoint
        where = f"checkpoint of {cp.origin} at size {cp.size}"
        if self.bad:
            keys = ", ".join(f"{s.name} ({s.key_id.hex()})" for s in self.bad)
            raise CheckpointSignatureError(f"{where}: bad signature by {keys}")
        if self.unknown:
            keys = ", ".join(f"{s.name} ({s.key_id.hex()})" for s in self.unknown)
            raise CheckpointSignatureError(
                f"{where}: signed only by unknown keys: {keys}; give their public keys if "
                "they are to be trusted"
            )
        raise CheckpointSignatureError(f"{where}: no signature")


def sign_note(text: bytes, signers: Iterable[Signer]) -> bytes:
    """A signed note: `text` (ending in a newline), a blank line, one line per signer."""
    decoded = _decode(text, "the note text")
    if not decoded.endswith("\n"):
        raise CheckpointFormatError("a note text must end with a newline")
    lines = []
    for signer in signers:
        sig = NoteSignature(signer.name, signer.key_id, signer.sign(text))
        lines.append(sig.line() + "\n")
    if not lines:
        raise ValueError("a signed note needs at least one signer")
    return text + b"\n" + "".join(lines).encode()


def sign(checkpoint: Checkpoint, signer: Signer, *more: Signer) -> bytes:
    """The checkpoint as a signed note, signed by `signer` and any `more` (rotation)."""
    return sign_note(checkpoint.body(), (signer, *more))


def _key_ring(verifiers: KeyRing | Iterable[Verifier]) -> KeyRing:
    if isinstance(verifiers, KeyRing):
        return verifiers
    return KeyRing(verifiers)


def open_note(note: bytes | str, verifiers: KeyRing | Iterable[Verifier]) -> SignedNote:
    """Split a signed note into text and signatures and check each signature.

    Raises CheckpointFormatError when the note is malformed; signature outcomes are
    returned, not raised, so a verifier can report all of them.
    """
    ring = _key_ring(verifiers)
    text = _decode(note, "the signed note")
    split = text.rfind("\n\n")
    if split < 0:
        raise CheckpointFormatError(
            "the signed note has no blank line between its text and its signatures"
        )
    body, sig_block = text[: split + 1], text[split + 2 :]
    if not sig_block:
        raise CheckpointFormatError("the signed note has no signature lines")
    if not sig_block.endswith("\n"):
        raise CheckpointFormatError("the signed note does not end with a newline")
    sig_lines = sig_block[:-1].split("\n")
    if len(sig_lines) > MAX_SIGNATURES:
        raise CheckpointFormatError(
            f"the signed note has {len(sig_lines)} signature lines; at most "
            f"{MAX_SIGNATURES} are accepted"
        )
    body_bytes = body.encode()
    verified: list[NoteSignature] = []
    unknown: list[NoteSignature] = []
    bad: list[NoteSignature] = []
    seen: set[str] = set()
    for number, line in enumerate(sig_lines, 1):
        sig = _parse_signature_line(line, number)
        if line in seen:
            continue  # an exact repeat says nothing new
        seen.add(line)
        verifier = ring.find(sig.name, sig.key_id)
        if verifier is None:
            unknown.append(sig)
        elif verifier.verify(body_bytes, sig.signature):
            verified.append(sig)
        else:
            bad.append(sig)
    return SignedNote(body_bytes, tuple(verified), tuple(unknown), tuple(bad))


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    where = f"signature line {number}"
    if not line.startswith(_SIG_PREFIX):
        raise CheckpointFormatError(
            f"{where} does not start with an em dash (U+2014) and a space: {line!r}"
        )
    name, space, encoded = line[len(_SIG_PREFIX) :].partition(" ")
    if not space or not encoded:
        raise CheckpointFormatError(f"{where} has no signature after the key name: {line!r}")
    try:
        check_key_name(name)
    except IntegrityKeyError as exc:
        raise CheckpointFormatError(f"{where}: {exc}") from exc
    raw = _b64decode(encoded, where)
    if len(raw) <= KEY_ID_SIZE:
        raise CheckpointFormatError(
            f"{where} holds {len(raw)} bytes: too short for a key id and a signature"
        )
    return NoteSignature(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:])


def parse_signed(note: bytes | str, verifiers: KeyRing | Iterable[Verifier]) -> SignedCheckpoint:
    """Parse a signed checkpoint strictly and check its signatures against `verifiers`.

    Raises CheckpointFormatError for a malformed note or checkpoint body. The result
    lists verified, unknown-key and bad signatures; `trusted` / `require_trusted()`
    apply the signed-note rule (a trusted key's signature verified, none failed).
    """
    opened = open_note(note, verifiers)
    checkpoint = Checkpoint.from_body(opened.text)
    return SignedCheckpoint(checkpoint, opened.verified, opened.unknown, opened.bad)
