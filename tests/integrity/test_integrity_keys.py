"""Ed25519 checkpoint keys: files written safely, loaded back, and every bad key named clearly.

The Go vectors (golang.org/x/mod/sumdb/note, note_test.go) check that kaudit's key ids
and verifier keys are the signed-note ones, so other note tools accept kaudit's keys.
"""

from __future__ import annotations

import base64
import os
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kaudit.errors import KauditError
from kaudit.integrity import keys
from kaudit.integrity.keys import (
    IntegrityKeyError,
    KeyRing,
    Signer,
    Verifier,
    check_key_name,
    generate,
    key_id,
    load_signer,
    load_verifier,
    load_verifiers,
    parse_verifier,
)

# golang.org/x/mod/sumdb/note note_test.go
PETER_SKEY = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"  # base64(0x01 || seed)
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
NAME = "audit.example.com/prod"


def peter() -> Signer:
    seed = base64.b64decode(PETER_SKEY)[1:]
    return Signer("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- key ids and verifier keys ---------------------------------------------------------


def test_key_id_and_verifier_key_match_the_go_signed_note_vectors() -> None:
    signer = peter()
    assert signer.key_id.hex() == "c74f20a3"
    assert signer.verifier.text() == PETER_VKEY
    assert key_id("PeterNeumann", signer.verifier.public_key).hex() == "c74f20a3"
    enoch = parse_verifier(ENOCH_VKEY)
    assert (enoch.name, enoch.key_id_hex) == ("EnochRoot", "af0cfe78")
    assert enoch.text() == ENOCH_VKEY


def test_a_signature_verifies_only_for_its_message_and_key() -> None:
    signer = peter()
    sig = signer.sign(b"hello\n")
    assert len(sig) == 64
    assert signer.verifier.verify(b"hello\n", sig)
    assert not signer.verifier.verify(b"hello!\n", sig)
    assert not signer.verifier.verify(b"hello\n", sig[:-1])
    assert not parse_verifier(ENOCH_VKEY).verify(b"hello\n", sig)


@pytest.mark.parametrize("name", ["", "has space", "plus+sign", "tab\there", "nl\nx", "\u2003em"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(IntegrityKeyError, match="key name"):
        check_key_name(name)


def test_key_errors_belong_to_the_kaudit_error_tree_and_are_not_retryable() -> None:
    assert issubclass(IntegrityKeyError, KauditError)
    assert IntegrityKeyError.retryable is False


# --- generate --------------------------------------------------------------------------


def test_generate_writes_a_0600_private_key_and_a_one_line_public_key(tmp_path: Path) -> None:
    files = generate(tmp_path / "audit", NAME)
    assert files.private == tmp_path / "audit.key"
    assert files.public == tmp_path / "audit.pub"
    assert mode(files.private) == 0o600
    assert mode(files.public) == 0o644
    key_text = files.private.read_text()
    assert key_text.startswith(f"kaudit-key-name: {NAME}\n-----BEGIN PRIVATE KEY-----\n")
    pub_text = files.public.read_text()
    assert pub_text.endswith("\n") and pub_text.count("\n") == 1
    name, hex_id, b64 = pub_text.strip().split("+", 2)
    assert name == NAME and len(hex_id) == 8
    assert base64.b64decode(b64)[0] == 0x01 and len(base64.b64decode(b64)) == 33
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []

    signer, verifier = load_signer(files.private), load_verifier(files.public)
    assert (
        (signer.name, signer.key_id)
        == (verifier.name, verifier.key_id)
        == (NAME, files.verifier.key_id)
    )
    assert verifier.verify(b"m\n", signer.sign(b"m\n"))


def test_the_private_key_file_is_created_with_mode_0600_even_under_umask_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[tuple[str, int, int]] = []
    real_open = os.open

    def spy(path: os.PathLike[str] | str, flags: int, mode: int = 0o777, *a: object) -> int:
        if flags & os.O_CREAT:
            created.append((os.fspath(path), flags, mode))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", spy)
    old_umask = os.umask(0)
    try:
        files = generate(tmp_path / "k", NAME)
    finally:
        os.umask(old_umask)
    key_creations = [c for c in created if Path(c[0]).name.startswith(".k.key.")]
    assert len(key_creations) == 1
    _, flags, create_mode = key_creations[0]
    # The file never exists with wider permissions: the mode is set by the create call.
    assert create_mode == 0o600
    assert flags & os.O_EXCL
    assert mode(files.private) == 0o600


def test_generate_refuses_to_overwrite_either_file_unless_forced(tmp_path: Path) -> None:
    first = generate(tmp_path / "audit", NAME)
    key_before = first.private.read_bytes()
    with pytest.raises(IntegrityKeyError, match=r"audit\.key: already exists"):
        generate(tmp_path / "audit", NAME)
    first.private.unlink()
    with pytest.raises(IntegrityKeyError, match=r"audit\.pub: already exists"):
        generate(tmp_path / "audit", NAME)
    assert not first.private.exists()  # nothing half-written

    first.private.write_bytes(key_before)
    second = generate(tmp_path / "audit", NAME, force=True)
    assert second.verifier.key_id != first.verifier.key_id
    assert load_signer(second.private).key_id == load_verifier(second.public).key_id
    assert mode(second.private) == 0o600


def test_generate_keeps_dots_in_the_name_and_creates_the_directory(tmp_path: Path) -> None:
    files = generate(tmp_path / "keys" / "audit.2026", NAME)
    assert files.private.name == "audit.2026.key"
    assert files.public.name == "audit.2026.pub"
    assert files.private.exists()


def test_generate_names_a_directory_it_cannot_create(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("x")
    with pytest.raises(IntegrityKeyError, match=r"plain-file: cannot create the key directory"):
        generate(tmp_path / "plain-file" / "audit", NAME)


def test_generate_refuses_an_invalid_name_before_writing(tmp_path: Path) -> None:
    with pytest.raises(IntegrityKeyError, match="key name"):
        generate(tmp_path / "audit", "bad name")
    assert list(tmp_path.iterdir()) == []


# --- load_signer -------------------------------------------------------------------------


def test_load_signer_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(IntegrityKeyError, match=r"nope\.key: no such private key file"):
        load_signer(tmp_path / "nope.key")


def test_load_signer_names_a_directory(tmp_path: Path) -> None:
    with pytest.raises(IntegrityKeyError, match="is a directory"):
        load_signer(tmp_path)


def test_load_signer_names_an_unreadable_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = generate(tmp_path / "audit", NAME)
    files.private.chmod(0)
    if os.geteuid() == 0:
        # root reads files whatever their mode, so the refusal the kernel would give
        # any other user is simulated here.
        def denied(self: Path) -> bytes:
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(IntegrityKeyError, match=r"audit\.key: cannot read .*permission denied"):
        load_signer(files.private)


def test_load_signer_refuses_garbage_and_public_keys(tmp_path: Path) -> None:
    files = generate(tmp_path / "audit", NAME)
    with pytest.raises(IntegrityKeyError, match="holds a public verifier key"):
        load_signer(files.public)
    junk = tmp_path / "junk.key"
    junk.write_text("hello\n")
    with pytest.raises(IntegrityKeyError, match=r"junk\.key: not a PEM private key"):
        load_signer(junk)
    junk.write_bytes(b"\x00\xff\xfe")
    with pytest.raises(IntegrityKeyError, match="binary data"):
        load_signer(junk)
    broken = tmp_path / "broken.key"
    text = files.private.read_text().splitlines()
    text[2] = text[2][:10] + "!!" + text[2][12:]
    broken.write_text("\n".join(text) + "\n")
    with pytest.raises(IntegrityKeyError, match=r"broken\.key: malformed PEM private key"):
        load_signer(broken)
    spki = tmp_path / "spki.pem"
    spki.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(IntegrityKeyError, match="holds a public key"):
        load_signer(spki)


def test_load_signer_refuses_a_key_of_another_type(tmp_path: Path) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "ec.key"
    path.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(IntegrityKeyError, match=r"ec\.key: is an ECDSA private key; .*Ed25519"):
        load_signer(path, NAME)


def test_load_signer_refuses_an_encrypted_key(tmp_path: Path) -> None:
    path = tmp_path / "enc.key"
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(IntegrityKeyError, match="encrypted"):
        load_signer(path, NAME)


def test_a_plain_pkcs8_key_needs_a_name_and_names_must_agree(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    plain = tmp_path / "plain.pem"
    plain.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    plain.chmod(0o600)  # a private key others can read is refused
    with pytest.raises(IntegrityKeyError, match="has no name"):
        load_signer(plain)
    assert load_signer(plain, NAME).name == NAME
    files = generate(tmp_path / "audit", NAME)
    assert load_signer(files.private, NAME).name == NAME
    with pytest.raises(IntegrityKeyError, match=re.escape(f"named {NAME!r} in the file")):
        load_signer(files.private, "other.example/log")


def test_signer_repr_shows_no_key_material() -> None:
    text = repr(peter())
    assert text == "Signer(name='PeterNeumann', key_id='c74f20a3')"


# --- load_verifier ----------------------------------------------------------------------


def test_load_verifier_takes_a_path_a_path_string_or_the_key_text(tmp_path: Path) -> None:
    pub = tmp_path / "peter.pub"
    pub.write_text(PETER_VKEY + "\n")
    assert load_verifier(pub) == load_verifier(str(pub)) == load_verifier(PETER_VKEY)
    assert load_verifier(PETER_VKEY + "\n").text() == PETER_VKEY


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("PeterNeumanm+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TX", "does not match"),
        ("PeterNeumann+c74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hexadecimal"),
        (f"PeterNeumann+c74f20a3+{base64.b64encode(bytes([2]) + bytes(32)).decode()}", "0x02"),
        (f"PeterNeumann+c74f20a3+{base64.b64encode(bytes([1]) + bytes(31)).decode()}", "got 31"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy1*TW", "not valid base64"),
        ("PeterNeumann c74f20a3", "not a verifier key"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "must not be empty"),
    ],
)
def test_parse_verifier_rejects_damaged_keys(text: str, message: str) -> None:
    with pytest.raises(IntegrityKeyError, match=message):
        parse_verifier(text)


def test_load_verifier_names_the_file_and_the_problem(tmp_path: Path) -> None:
    with pytest.raises(IntegrityKeyError, match=r"missing\.pub: no such public key file"):
        load_verifier(tmp_path / "missing.pub")
    two = tmp_path / "two.pub"
    two.write_text(PETER_VKEY + "\n" + ENOCH_VKEY + "\n")
    with pytest.raises(IntegrityKeyError, match=r"two\.pub: expected one verifier key line"):
        load_verifier(two)
    files = generate(tmp_path / "audit", NAME)
    with pytest.raises(IntegrityKeyError, match="holds a private key"):
        load_verifier(files.private)
    bad = tmp_path / "bad.pub"
    bad.write_text(PETER_VKEY.replace("c74f20a3", "00000000"))
    with pytest.raises(IntegrityKeyError, match=r"bad\.pub: the key id 00000000 does not match"):
        load_verifier(bad)
    binary = tmp_path / "bin.pub"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(IntegrityKeyError, match="not UTF-8"):
        load_verifier(binary)


# --- rotation ---------------------------------------------------------------------------


def test_a_key_ring_holds_old_and_new_keys_of_one_name(tmp_path: Path) -> None:
    old = generate(tmp_path / "old", NAME)
    new = generate(tmp_path / "new", NAME)
    ring = load_verifiers([old.public, new.public])
    assert len(ring) == 2
    assert ring.find(NAME, old.verifier.key_id) == old.verifier
    assert ring.find(NAME, new.verifier.key_id) == new.verifier
    assert ring.find("other", new.verifier.key_id) is None
    assert ring.find(NAME, b"\x00\x00\x00\x00") is None
    assert set(ring) == {old.verifier, new.verifier}
    ring.add(old.verifier)  # the same key twice is harmless
    assert len(ring) == 2


def test_two_different_keys_with_the_same_name_and_id_are_refused() -> None:
    a = Verifier(NAME, Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    b = Verifier(NAME, Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    b._key_id = a.key_id  # a key id collision, which only a deliberate attacker produces
    with pytest.raises(IntegrityKeyError, match="ambiguous"):
        KeyRing([a, b])


def test_a_verifier_s_identity_cannot_be_reassigned() -> None:
    verifier = parse_verifier(PETER_VKEY)
    with pytest.raises(AttributeError):
        verifier.key_id = b"\x00" * 4  # type: ignore[misc]
    with pytest.raises(AttributeError):
        peter().name = "someone else"  # type: ignore[misc]


def test_verifier_rejects_a_public_key_of_the_wrong_length() -> None:
    with pytest.raises(IntegrityKeyError, match="32 bytes"):
        Verifier(NAME, b"\x01" * 31)
    assert keys.KEY_ID_SIZE == 4
