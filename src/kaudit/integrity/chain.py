"""The OSO seed's HMAC-SHA256 chain: each event signed, each signature linked to the last.

`integrity.signature` is `sha256:<hex HMAC-SHA256>` over the event's canonical bytes with
`signature` null and `sequence_number` and `previous_signature` filled in;
`previous_signature` is the signature of the event before it in the stream (null for the
first, and always null when chaining is off). Checking needs the secret key, and an HMAC
chain alone cannot show a cut-off tail: the signed Merkle checkpoints cover that.

Sealing works on bytes the writer already made: the writer hands over each line's head
(its canonical bytes up to `"signature":`) and the sealed line is put together once;
a whole unsealed line (ending `"signature":null,"previous_signature":null}}`) is cut
back to its head, never re-serialised.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from binascii import hexlify
from collections.abc import Sequence
from typing import Any

from kaudit.config.integrity import Signing
from kaudit.config.secrets import register_secret
from kaudit.errors import KauditError
from kaudit.files import UnprotectedKeyError, check_private_key

UNSEALED_TAIL = b'"signature":null,"previous_signature":null}}'
HEAD_END = b'"signature":'  # where the head of a line, all but its signatures, ends
_SEALED_TAIL = re.compile(
    rb'"signature":(null|"sha256:[0-9a-f]{64}"),"previous_signature":(null|"sha256:[0-9a-f]{64}")\}\}$'
)
PREFIX = "sha256:"


class SigningKeyError(KauditError):
    """The signing key is missing or unusable."""


def key_from_env(var: str) -> bytes:
    value = os.environ.get(var)
    if not value:
        raise SigningKeyError(
            f"integrity.signing is enabled but the environment variable {var} (the HMAC "
            "key, integrity.signing.key_env_var) is not set"
        )
    return _long_enough(value.encode(), var)


def key_from_file(path: str) -> bytes:
    """The HMAC key in `path` (one trailing newline dropped); the file must be readable
    by its owner only."""
    try:
        check_private_key(path, "HMAC key file (integrity.signing.key_file)")
        with open(path, "rb") as f:
            key = f.read()
    except UnprotectedKeyError as exc:
        raise SigningKeyError(str(exc)) from exc
    except OSError as exc:
        raise SigningKeyError(
            f"{path}: cannot read the HMAC key file (integrity.signing.key_file): "
            f"{exc.strerror or exc}"
        ) from exc
    return _long_enough(key.removesuffix(b"\n"), path)


def signing_key(signing: Signing) -> bytes:
    """The HMAC key `integrity.signing` names: its key_file, else its key_env_var
    (masked, from now on, in whatever kaudit says)."""
    key = key_from_file(signing.key_file) if signing.key_file else key_from_env(signing.key_env_var)
    register_secret(key.decode(errors="replace"))
    return key


def _long_enough(key: bytes, where: str) -> bytes:
    if len(key) < 16:
        raise SigningKeyError(
            f"the HMAC key in {where} is {len(key)} bytes; use at least 16 (32 random bytes, "
            "e.g. `openssl rand -hex 32`)"
        )
    return key


def _sign(key: bytes, unsigned: bytes) -> bytes:
    return b'"' + PREFIX.encode() + hmac.digest(key, unsigned, "sha256").hex().encode() + b'"'


class _FastHmac:
    """HMAC-SHA256 (RFC 2104) key pads: hashes already fed the padded key, copied per
    message. Same digest as `hmac.digest` at about half its cost for messages this
    short, where its per-call set-up dominates (measured on the writer's hot path)."""

    __slots__ = ("pads",)

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self.pads: tuple[Any, Any] = (
            hashlib.sha256(bytes(b ^ 0x36 for b in key)),
            hashlib.sha256(bytes(b ^ 0x5C for b in key)),
        )


class HmacChain:
    """Seals lines in stream order; one per log stream, used by its writer only."""

    def __init__(self, key: bytes, *, chained: bool, previous: str | None = None) -> None:
        self._hmac = _FastHmac(key)
        self._chained = chained
        self._previous = b"null" if previous is None or not chained else f'"{previous}"'.encode()

    def seal_heads(self, heads: Sequence[bytes]) -> list[bytes]:
        """Sealed lines (each ending in a newline) from their heads: the canonical bytes of
        each event up to and including `"signature":`, as the writer builds them, so each
        line is put together once. The hot path of the writer: one loop, no calls of ours.
        """
        inner_pad, outer_pad = self._hmac.pads
        inner_copy, outer_copy = inner_pad.copy, outer_pad.copy
        chained = self._chained
        previous = self._previous
        signed_tail = b'null,"previous_signature":%s}}' % previous
        tail = b',"previous_signature":%s}}\n' % previous
        lines: list[bytes] = []
        append = lines.append
        join = b"".join
        for head in heads:
            inner = inner_copy()
            inner.update(head)
            inner.update(signed_tail)
            outer = outer_copy()
            outer.update(inner.digest())
            signature = b'"sha256:%s"' % hexlify(outer.digest())
            append(join((head, signature, tail)))
            if chained:
                signed_tail = b'null,"previous_signature":%s}}' % signature
                tail = b',"previous_signature":%s}}\n' % signature
                previous = signature
        self._previous = previous
        return lines

    def seal(self, line: bytes) -> bytes:
        """The sealed form of an unsealed line (with or without its newline)."""
        sealed = self.seal_heads([head_of(line)])[0]
        return sealed if line.endswith(b"\n") else sealed[:-1]


def head_of(line: bytes) -> bytes:
    """The head of an unsealed line (with or without its newline): all up to and
    including `"signature":`."""
    end = len(line) - 1 if line.endswith(b"\n") else len(line)
    start = end - len(UNSEALED_TAIL)
    if line[start:end] != UNSEALED_TAIL:
        raise ValueError("not an unsealed kaudit event line")
    return line[: start + len(HEAD_END)]


def split_sealed(line: bytes) -> tuple[bytes, str | None, str | None]:
    """(the bytes that were signed, signature, previous_signature) of a sealed line."""
    body = line.rstrip(b"\n")
    match = _SEALED_TAIL.search(body)
    if match is None:
        raise ValueError("the line does not end with kaudit integrity fields")
    sig, prev = match.group(1), match.group(2)
    head = body[: match.start()]
    unsigned = head + b'"signature":null,"previous_signature":' + prev + b"}}"
    return (
        unsigned,
        None if sig == b"null" else sig[1:-1].decode(),
        None if prev == b"null" else prev[1:-1].decode(),
    )


def verify_signature(key: bytes, line: bytes) -> bool:
    unsigned, signature, _ = split_sealed(line)
    if signature is None:
        return False
    return hmac.compare_digest(_sign(key, unsigned)[1:-1].decode(), signature)
