"""Ed25519 checkpoint keys: generating the key files, loading signers and verifiers.

This module owns kaudit's key files and the C2SP signed-note key identity
(https://c2sp.org/signed-note, signature type 0x01, Ed25519):

- ``PATH.key`` holds the private key as PKCS#8 PEM, created with mode 0600 before a
  single byte is written, preceded by one line of RFC 7468 explanatory text that
  carries the key name (PEM readers such as OpenSSL skip text before the ``-----BEGIN``
  line)::

      kaudit-key-name: audit.example.com/prod
      -----BEGIN PRIVATE KEY-----
      MC4CAQAwBQYDK2VwBCIEI...
      -----END PRIVATE KEY-----

- ``PATH.pub`` holds one line, the verifier key in the note format, so it can be
  handed to any signed-note implementation (Go's ``golang.org/x/mod/sumdb/note``
  among them)::

      <name>+<8 hex digits of the key id>+<base64(0x01 || 32-byte public key)>

- the key id is ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``, and every
  signature line carries it, so a verifier holding several public keys (old ones kept
  after a rotation) checks each signature with the key whose name and id both match.

A key name must be non-empty and hold no whitespace, no ``+`` and no control
characters; kaudit uses the checkpoint origin (a schema-less URL) as the name.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from kaudit.errors import KauditError
from kaudit.files import UnprotectedKeyError, check_private_key

__all__ = [
    "ED25519",
    "KEY_ID_SIZE",
    "IntegrityKeyError",
    "KeyFiles",
    "KeyRing",
    "Signer",
    "Verifier",
    "check_key_name",
    "generate",
    "key_id",
    "load_signer",
    "load_verifier",
    "load_verifiers",
    "parse_verifier",
]

ED25519 = 0x01  # the signed-note signature type byte for Ed25519
KEY_ID_SIZE = 4
_SIGNATURE_SIZE = 64
_PUBLIC_KEY_SIZE = 32
_NAME_HEADER = "kaudit-key-name:"
_PRIVATE_MODE = 0o600
_PUBLIC_MODE = 0o644
_VERIFIER_TEXT = re.compile(r"[^+\s]+\+[0-9a-fA-F]{8}\+[A-Za-z0-9+/]+={0,2}")


class IntegrityKeyError(KauditError):
    """A checkpoint key is missing, unreadable, malformed or of the wrong type.

    The message names the file (or the text) and what is wrong with it. Retrying does
    not help: the key has to be fixed.
    """


def check_key_name(name: str) -> str:
    """`name` if it is a valid signed-note key name; IntegrityKeyError says why not."""
    if not name:
        raise IntegrityKeyError("a key name must not be empty")
    for ch in name:
        if ch.isspace() or ch == "+" or ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise IntegrityKeyError(
                f"key name {name!r} contains {ch!r}; a key name holds no whitespace, no '+' "
                "and no control characters (use the log origin, e.g. audit.example.com/prod)"
            )
    return name


def key_id(name: str, public_key: bytes) -> bytes:
    """The C2SP key id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[
        :KEY_ID_SIZE
    ]


class Verifier:
    """An Ed25519 public key with its note name and key id; checks signatures."""

    __slots__ = ("_key", "_key_id", "_name", "_public_key")

    def __init__(self, name: str, public_key: bytes) -> None:
        check_key_name(name)
        if len(public_key) != _PUBLIC_KEY_SIZE:
            raise IntegrityKeyError(
                f"an Ed25519 public key is {_PUBLIC_KEY_SIZE} bytes, got {len(public_key)}"
            )
        self._name = name
        self._public_key = bytes(public_key)
        self._key_id = key_id(name, self._public_key)
        self._key = Ed25519PublicKey.from_public_bytes(self._public_key)

    # Read-only: a key ring files verifiers by (name, key id), which must not change.
    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._public_key

    @property
    def key_id(self) -> bytes:
        """The 4-byte signed-note key id."""
        return self._key_id

    @property
    def key_id_hex(self) -> str:
        return self.key_id.hex()

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether `signature` (64 bytes, without the key id) is this key's over `message`."""
        if len(signature) != _SIGNATURE_SIZE:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def text(self) -> str:
        """The one-line verifier key: ``name+hexkeyid+base64(0x01 || public key)``."""
        encoded = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Verifier)
            and self.name == other.name
            and self.public_key == other.public_key
        )

    def __hash__(self) -> int:
        return hash((self.name, self.public_key))

    def __repr__(self) -> str:
        return f"Verifier({self.text()!r})"


class Signer:
    """An Ed25519 private key with its note name and key id; signs note texts."""

    __slots__ = ("_key", "_verifier")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._verifier = Verifier(name, public)
        self._key = private_key

    @property
    def verifier(self) -> Verifier:
        """The matching public key, to publish or check this signer's signatures with."""
        return self._verifier

    @property
    def name(self) -> str:
        return self._verifier.name

    @property
    def key_id(self) -> bytes:
        """The 4-byte signed-note key id."""
        return self._verifier.key_id

    @property
    def key_id_hex(self) -> str:
        return self.key_id.hex()

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `message` (the key id is not included)."""
        return self._key.sign(message)

    def __repr__(self) -> str:
        # Never the private key: a repr ends up in logs and tracebacks.
        return f"Signer(name={self.name!r}, key_id={self.key_id.hex()!r})"


class KeyRing:
    """The public keys a verifier trusts, found by (name, key id) as signed notes demand.

    Several keys may share a name (a rotated key and its successor); two different keys
    with the same name and key id make signatures ambiguous and are refused.
    """

    __slots__ = ("_by_id",)

    def __init__(self, verifiers: Iterable[Verifier] = ()) -> None:
        self._by_id: dict[tuple[str, bytes], Verifier] = {}
        for verifier in verifiers:
            self.add(verifier)

    def add(self, verifier: Verifier) -> None:
        slot = (verifier.name, verifier.key_id)
        known = self._by_id.get(slot)
        if known is not None and known != verifier:
            raise IntegrityKeyError(
                f"two different public keys share the name {verifier.name!r} and key id "
                f"{verifier.key_id.hex()}: {known.text()} and {verifier.text()}; "
                "signatures would be ambiguous, keep only the right one"
            )
        self._by_id[slot] = verifier

    def find(self, name: str, key_id: bytes) -> Verifier | None:
        """The key with this name and key id, or None when it is not trusted here."""
        return self._by_id.get((name, bytes(key_id)))

    def __iter__(self) -> Iterator[Verifier]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __repr__(self) -> str:
        return f"KeyRing({[v.text() for v in self]!r})"


@dataclass(frozen=True, slots=True)
class KeyFiles:
    """What `generate` wrote: the private and public key files and the verifier."""

    private: Path
    public: Path
    verifier: Verifier


def _key_paths(out: Path) -> tuple[Path, Path]:
    # Appended, not with_suffix: a name such as "audit.prod" must keep its dot.
    return out.with_name(out.name + ".key"), out.with_name(out.name + ".pub")


def generate(out: Path, name: str, *, force: bool = False) -> KeyFiles:
    """Write a new Ed25519 key pair to ``out.key`` (mode 0600) and ``out.pub``.

    Each file is written to a temporary file in the same directory, created with its
    final mode (the private key is never readable by others, not even while being
    written), synced, then linked into place, so a crash leaves either no file or a
    complete one. Refuses to replace existing files unless `force` is true; the check
    is the link itself, so a concurrent writer cannot be clobbered either.
    """
    check_key_name(name)
    out = Path(out)
    key_path, pub_path = _key_paths(out)
    if not force:
        for path in (key_path, pub_path):
            if path.exists() or path.is_symlink():
                raise IntegrityKeyError(
                    f"{path}: already exists; refusing to overwrite a key (use --force "
                    "to replace it, and keep the old .pub to verify what it signed)"
                )
    private_key = Ed25519PrivateKey.generate()
    signer = Signer(name, private_key)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_text = f"{_NAME_HEADER} {name}\n".encode() + pem
    pub_text = (signer.verifier.text() + "\n").encode()
    try:
        out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise IntegrityKeyError(
            f"{out.parent}: cannot create the key directory: {exc.strerror or exc}"
        ) from exc
    _write_file(key_path, key_text, _PRIVATE_MODE, replace=force)
    try:
        _write_file(pub_path, pub_text, _PUBLIC_MODE, replace=force)
    except BaseException:
        # A private key without its public half is useless and confusing.
        with contextlib.suppress(OSError):
            key_path.unlink()
        raise
    _sync_dir(out.parent)
    return KeyFiles(private=key_path, public=pub_path, verifier=signer.verifier)


def _write_file(path: Path, data: bytes, mode: int, *, replace: bool) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags | getattr(os, "O_CLOEXEC", 0), mode)
        try:
            # The umask can only have removed bits; set exactly what we mean.
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            # link() fails when the target exists, so no check-then-write race.
            os.link(tmp, path)
    except FileExistsError as exc:
        raise IntegrityKeyError(f"{path}: already exists; refusing to overwrite a key") from exc
    except OSError as exc:
        raise IntegrityKeyError(
            f"{path}: cannot write the key file: {exc.strerror or exc}"
        ) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _sync_dir(directory: Path) -> None:
    # Without this a crash right after generate() could lose the new directory entries.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise IntegrityKeyError(f"{path}: no such {what} file") from exc
    except IsADirectoryError as exc:
        raise IntegrityKeyError(f"{path}: is a directory, not a {what} file") from exc
    except PermissionError as exc:
        raise IntegrityKeyError(f"{path}: cannot read the {what} file (permission denied)") from exc
    except OSError as exc:
        raise IntegrityKeyError(
            f"{path}: cannot read the {what} file: {exc.strerror or exc}"
        ) from exc


def load_signer(path: Path | str, name: str | None = None) -> Signer:
    """The signer in a ``.key`` file written by `generate`.

    A plain PKCS#8 Ed25519 PEM (``openssl genpkey -algorithm ed25519``) works too when
    `name` is given. When both the file and `name` carry a name they must agree, since a
    signature under another name would not match the published ``.pub``.
    """
    path = Path(path)
    raw = _read(path, "private key")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise IntegrityKeyError(
            f"{path}: not a PEM private key (binary data); expected the .key file written "
            "by `kaudit keys generate`"
        ) from exc
    begin = text.find("-----BEGIN ")
    if begin < 0:
        if _VERIFIER_TEXT.fullmatch(text.strip()):
            raise IntegrityKeyError(
                f"{path}: holds a public verifier key; signing needs the private .key file"
            )
        raise IntegrityKeyError(
            f"{path}: not a PEM private key (no -----BEGIN line); expected the .key file "
            "written by `kaudit keys generate`"
        )
    file_name: str | None = None
    for line in text[:begin].splitlines():
        if line.startswith(_NAME_HEADER):
            file_name = line[len(_NAME_HEADER) :].strip()
    label = text[begin:].split("\n", 1)[0].strip()
    if label == "-----BEGIN PUBLIC KEY-----":
        raise IntegrityKeyError(f"{path}: holds a public key; signing needs the private key")
    if label == "-----BEGIN ENCRYPTED PRIVATE KEY-----":
        raise IntegrityKeyError(
            f"{path}: the private key is encrypted; kaudit reads unencrypted PKCS#8 keys "
            "protected by file permissions (mode 0600)"
        )
    try:
        key = serialization.load_pem_private_key(text[begin:].encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise IntegrityKeyError(f"{path}: malformed PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise IntegrityKeyError(
            f"{path}: is {_key_kind(key)} private key; checkpoints are signed with Ed25519 "
            "(create one with `kaudit keys generate`)"
        )
    # Once it is clear the file is the key (not a .pub given by mistake), as ssh does.
    try:
        check_private_key(path, "checkpoint signing key")
    except UnprotectedKeyError as exc:
        raise IntegrityKeyError(str(exc)) from exc
    if file_name is not None and name is not None and file_name != name:
        raise IntegrityKeyError(f"{path}: the key is named {file_name!r} in the file, not {name!r}")
    chosen = file_name if file_name is not None else name
    if chosen is None:
        raise IntegrityKeyError(
            f"{path}: the key has no name (no '{_NAME_HEADER}' line); give the name explicitly"
        )
    try:
        return Signer(chosen, key)
    except IntegrityKeyError as exc:
        raise IntegrityKeyError(f"{path}: {exc}") from exc


def _key_kind(key: object) -> str:
    kinds: tuple[tuple[type, str], ...] = (
        (rsa.RSAPrivateKey, "an RSA"),
        (ec.EllipticCurvePrivateKey, "an ECDSA"),
        (dsa.DSAPrivateKey, "a DSA"),
        (ed448.Ed448PrivateKey, "an Ed448"),
        (x25519.X25519PrivateKey, "an X25519"),
        (x448.X448PrivateKey, "an X448"),
    )
    for cls, kind in kinds:
        if isinstance(key, cls):
            return kind
    return f"a {type(key).__name__}"


def parse_verifier(text: str, source: str = "<verifier key>") -> Verifier:
    """The verifier in a note verifier key ``name+hexkeyid+base64(0x01 || key)``.

    Checks that the key id matches the name and key, as signed-note verifiers must.
    """
    text = text.strip()
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise IntegrityKeyError(
            f"{source}: not a verifier key; expected name+keyid+base64key on one line"
        )
    name, id_hex, key_b64 = parts
    try:
        check_key_name(name)
    except IntegrityKeyError as exc:
        raise IntegrityKeyError(f"{source}: {exc}") from exc
    if not re.fullmatch(r"[0-9a-fA-F]{8}", id_hex):
        raise IntegrityKeyError(f"{source}: the key id {id_hex!r} is not 8 hexadecimal digits")
    try:
        blob = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise IntegrityKeyError(f"{source}: the key is not valid base64") from exc
    if not blob:
        raise IntegrityKeyError(f"{source}: the key is empty")
    if blob[0] != ED25519:
        raise IntegrityKeyError(
            f"{source}: signature type 0x{blob[0]:02x} is not supported; kaudit verifies "
            f"Ed25519 keys (type 0x{ED25519:02x})"
        )
    if len(blob) != 1 + _PUBLIC_KEY_SIZE:
        raise IntegrityKeyError(
            f"{source}: an Ed25519 key is {_PUBLIC_KEY_SIZE} bytes after the type byte, "
            f"got {len(blob) - 1}"
        )
    try:
        verifier = Verifier(name, blob[1:])
    except ValueError as exc:
        raise IntegrityKeyError(f"{source}: not a valid Ed25519 public key: {exc}") from exc
    if verifier.key_id != bytes.fromhex(id_hex):
        raise IntegrityKeyError(
            f"{source}: the key id {id_hex} does not match the name and key (they give "
            f"{verifier.key_id.hex()}); the verifier key is damaged"
        )
    return verifier


def load_verifier(source: Path | str) -> Verifier:
    """The verifier in a ``.pub`` file, or in verifier key text given directly.

    A `str` that looks like ``name+keyid+key`` is parsed as such; any other `str`, and
    every `Path`, is read as a file holding exactly one verifier key line.
    """
    if isinstance(source, str) and _VERIFIER_TEXT.fullmatch(source.strip()):
        return parse_verifier(source)
    path = Path(source)
    raw = _read(path, "public key")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IntegrityKeyError(f"{path}: not a verifier key (not UTF-8 text)") from exc
    if "PRIVATE KEY-----" in text:
        raise IntegrityKeyError(
            f"{path}: holds a private key; verifying needs only the public .pub file "
            "(and private keys should not be handed to verifiers)"
        )
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise IntegrityKeyError(
            f"{path}: expected one verifier key line (name+keyid+base64key), "
            f"found {len(lines)} lines"
        )
    return parse_verifier(lines[0], str(path))


def load_verifiers(sources: Iterable[Path | str]) -> KeyRing:
    """A key ring of every verifier in `sources` (see `load_verifier`)."""
    return KeyRing(load_verifier(source) for source in sources)
