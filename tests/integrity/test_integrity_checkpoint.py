"""Signed checkpoints: the exact C2SP text, strict parsing, and every signature outcome.

Interop anchors: the Go sumdb/note signed-note vector (byte for byte) and the example
checkpoint of c2sp.org/tlog-checkpoint (parsed; its key is not published, so its
signature is an unknown key's).
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from kaudit.errors import KauditError
from kaudit.integrity.checkpoint import (
    MAX_SIGNATURES,
    Checkpoint,
    CheckpointFormatError,
    CheckpointSignatureError,
    NoteSignature,
    open_note,
    parse_signed,
    sign,
    sign_note,
)
from kaudit.integrity.keys import KeyRing, Signer, parse_verifier
from kaudit.integrity.merkle import EMPTY_ROOT, leaf_hashes, root

ORIGIN = "audit.example.com/prod"
ROOT = root(leaf_hashes([b"a", b"b", b"c"]))
WHEN = datetime(2026, 11, 22, 10, 15, 30, tzinfo=UTC)

PETER_SKEY = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    b"If you think cryptography is the answer to your problem,\n"
    b"then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT
    + (
        "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKv"
        "qfqdngotpRZb6KE6RyyBwJnAM=\n"
    ).encode()
)
SPEC_CHECKPOINT = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u"
    "5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
).encode()


def new_signer(name: str = ORIGIN) -> Signer:
    return Signer(name, Ed25519PrivateKey.generate())


SIGNER = new_signer()
OTHER = new_signer()
KEY = Ed25519PrivateKey.generate()


def checkpoint(size: int = 3, **kw: object) -> Checkpoint:
    return Checkpoint.create(ORIGIN, size, ROOT, time=WHEN, **kw)  # type: ignore[arg-type]


# --- the text --------------------------------------------------------------------------


def test_body_is_origin_size_base64_root_then_extension_lines() -> None:
    cp = Checkpoint.create(
        ORIGIN, 3, ROOT, time=WHEN, heartbeat=60, sequence=(10, 12), closed=True, extra=["x y"]
    )
    b64 = base64.b64encode(ROOT).decode()
    assert (
        cp.body()
        == (
            f"{ORIGIN}\n3\n{b64}\ntime 2026-11-22T10:15:30Z\nheartbeat 60\nsequence 10-12\n"
            "closed\nx y\n"
        ).encode()
    )
    assert (
        Checkpoint(ORIGIN, 0, EMPTY_ROOT).body()
        == (f"{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n").encode()
    )


def test_signed_note_is_body_blank_line_and_one_em_dash_line_per_signer() -> None:
    cp = checkpoint()
    note = sign(cp, SIGNER, OTHER)
    body, sigs = note.split(b"\n\n")
    assert body + b"\n" == cp.body()
    lines = sigs.decode().splitlines()
    assert len(lines) == 2 and note.endswith(b"\n")
    for line, signer in zip(lines, (SIGNER, OTHER), strict=True):
        dash, name, encoded = line.split(" ")
        assert dash == "\u2014" and name == ORIGIN
        raw = base64.b64decode(encoded)
        assert raw[:4] == signer.key_id and len(raw) == 68
        assert signer.verifier.verify(cp.body(), raw[4:])


def test_signing_matches_the_go_sumdb_note_vector_byte_for_byte() -> None:
    seed = base64.b64decode(PETER_SKEY)[1:]
    peter = Signer("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed))
    assert sign_note(GO_TEXT, [peter]) == GO_NOTE
    opened = open_note(GO_NOTE, [parse_verifier(PETER_VKEY)])
    assert opened.text == GO_TEXT
    assert [(s.name, s.key_id_hex) for s in opened.verified] == [("PeterNeumann", "c74f20a3")]


def test_the_c2sp_example_checkpoint_parses_and_its_unpublished_key_is_unknown() -> None:
    signed = parse_signed(SPEC_CHECKPOINT, [SIGNER.verifier])
    assert signed.checkpoint.origin == "example.com/behind-the-sofa"
    assert signed.checkpoint.size == 20852163
    assert signed.checkpoint.extensions == ()
    assert signed.checkpoint.body() == SPEC_CHECKPOINT.split(b"\n\n")[0] + b"\n"
    assert [(s.name, s.key_id_hex) for s in signed.unknown] == [
        ("example.com/behind-the-sofa", "033de0ae")
    ]
    assert not signed.verified and not signed.bad and not signed.trusted


# --- round trips -----------------------------------------------------------------------


def test_a_signed_checkpoint_round_trips_with_its_extensions() -> None:
    cp = checkpoint(heartbeat=30, sequence=(1, 3), closed=True)
    signed = parse_signed(sign(cp, SIGNER), [SIGNER.verifier])
    assert signed.trusted
    assert signed.require_trusted() == cp
    assert [s.key_id for s in signed.verified] == [SIGNER.key_id]
    assert signed.unknown == () and signed.bad == ()
    got = signed.checkpoint
    assert got.time == WHEN and got.time.tzinfo is not None
    assert (got.heartbeat, got.sequence, got.closed) == (30, (1, 3), True)


def test_without_extensions_the_optional_fields_are_absent() -> None:
    cp = Checkpoint(ORIGIN, 3, ROOT)
    assert (cp.time, cp.heartbeat, cp.sequence, cp.closed) == (None, None, None, False)


def test_create_writes_utc_whole_seconds_and_refuses_naive_times() -> None:
    local = datetime(2026, 11, 22, 11, 15, 30, 999_999, tzinfo=timezone(timedelta(hours=1)))
    assert Checkpoint.create(ORIGIN, 3, ROOT, time=local).extensions == (
        "time 2026-11-22T10:15:30Z",
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        Checkpoint.create(ORIGIN, 3, ROOT, time=datetime(2026, 11, 22))


def test_unknown_extension_lines_are_kept_and_passed_through() -> None:
    cp = Checkpoint(ORIGIN, 3, ROOT, ("witness-hint example.org", "time 2026-11-22T10:15:30Z"))
    signed = parse_signed(sign(cp, SIGNER), [SIGNER.verifier])
    assert signed.checkpoint.extensions == cp.extensions
    assert signed.checkpoint.time == WHEN


_line_chars = st.characters(blacklist_categories=("Cc", "Cs"))
_names = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), blacklist_characters="+"),
    min_size=1,
    max_size=30,
).filter(lambda s: not any(c.isspace() for c in s))


@settings(max_examples=60, deadline=None)
@given(
    origin=st.text(_line_chars, min_size=1, max_size=40),
    size=st.integers(0, 2**64 - 1),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(
        st.text(_line_chars, min_size=1, max_size=30).filter(
            lambda s: s.partition(" ")[0] not in ("time", "heartbeat", "sequence", "closed")
        ),
        max_size=4,
    ),
    name=_names,
)
def test_any_checkpoint_round_trips_through_its_signed_note(
    origin: str, size: int, root_hash: bytes, extensions: list[str], name: str
) -> None:
    cp = Checkpoint(origin, size, root_hash, tuple(extensions))
    assert Checkpoint.from_body(cp.body()) == cp
    signer = Signer(name, KEY)
    signed = parse_signed(sign(cp, signer), [signer.verifier])
    assert signed.trusted and signed.checkpoint == cp


# --- tampering -------------------------------------------------------------------------


def _outcome(note: bytes, ring: KeyRing) -> str:
    try:
        signed = parse_signed(note, ring)
    except CheckpointFormatError:
        return "malformed"
    return "trusted" if signed.trusted else "untrusted"


def test_flipping_any_bit_of_a_signed_checkpoint_breaks_verification() -> None:
    note = sign(checkpoint(heartbeat=60, sequence=(1, 3)), SIGNER)
    ring = KeyRing([SIGNER.verifier])
    assert _outcome(note, ring) == "trusted"
    survivors = []
    for i in range(len(note)):
        for bit in range(8):
            damaged = bytearray(note)
            damaged[i] ^= 1 << bit
            if _outcome(bytes(damaged), ring) == "trusted":
                survivors.append((i, bit))
    assert survivors == []


def test_cutting_or_extending_a_signed_checkpoint_breaks_verification() -> None:
    note = sign(checkpoint(), SIGNER)
    ring = KeyRing([SIGNER.verifier])
    for cut in range(len(note)):
        assert _outcome(note[:cut], ring) != "trusted", cut
    assert _outcome(note + b"x", ring) == "malformed"
    assert _outcome(b"x" + note, ring) != "trusted"


def test_a_changed_body_is_a_bad_signature_and_require_trusted_says_so() -> None:
    note = sign(checkpoint(size=3), SIGNER)
    forged = note.replace(b"\n3\n", b"\n4\n", 1)
    signed = parse_signed(forged, [SIGNER.verifier])
    assert signed.checkpoint.size == 4
    assert [s.key_id for s in signed.bad] == [SIGNER.key_id]
    assert not signed.verified and not signed.trusted
    with pytest.raises(CheckpointSignatureError, match=re.escape(f"bad signature by {ORIGIN}")):
        signed.require_trusted()


def test_a_signature_by_an_unknown_key_is_reported_as_unknown() -> None:
    note = sign(checkpoint(), OTHER)
    signed = parse_signed(note, [SIGNER.verifier])  # same name, different key id
    assert [s.key_id for s in signed.unknown] == [OTHER.key_id]
    assert not signed.verified and not signed.bad and not signed.trusted
    with pytest.raises(CheckpointSignatureError, match="only by unknown keys"):
        signed.require_trusted()
    assert parse_signed(note, []).unknown == signed.unknown


def test_rotation_either_key_alone_verifies_a_note_signed_by_both() -> None:
    note = sign(checkpoint(), SIGNER, OTHER)
    with_old = parse_signed(note, [SIGNER.verifier])
    with_new = parse_signed(note, KeyRing([OTHER.verifier]))
    both = parse_signed(note, [SIGNER.verifier, OTHER.verifier])
    assert with_old.trusted and with_new.trusted and both.trusted
    assert [s.key_id for s in with_old.unknown] == [OTHER.key_id]
    assert len(both.verified) == 2


def test_one_bad_signature_spoils_a_note_that_another_key_verifies() -> None:
    note = sign(checkpoint(), SIGNER)
    cp_text, sig_line = note.split(b"\n\n")
    garbage = NoteSignature(OTHER.name, OTHER.key_id, bytes(64)).line().encode()
    mixed = cp_text + b"\n\n" + sig_line + garbage + b"\n"
    signed = parse_signed(mixed, [SIGNER.verifier, OTHER.verifier])
    assert len(signed.verified) == 1 and len(signed.bad) == 1
    assert not signed.trusted


def test_repeated_identical_signature_lines_count_once() -> None:
    note = sign(checkpoint(), SIGNER)
    line = note.split(b"\n\n")[1]
    signed = parse_signed(note + line, [SIGNER.verifier])
    assert len(signed.verified) == 1


def test_a_note_with_no_signature_by_any_key_is_not_trusted() -> None:
    signed = parse_signed(sign(checkpoint(), OTHER), [])
    assert not signed.trusted
    with pytest.raises(CheckpointSignatureError):
        signed.require_trusted()
    assert issubclass(CheckpointSignatureError, KauditError)


# --- strict format -----------------------------------------------------------------------


def _signed_body(body: str, signer: Signer = SIGNER) -> bytes:
    """A note whose (possibly malformed) body is properly signed: only the format fails."""
    data = body.encode()
    sig = NoteSignature(signer.name, signer.key_id, signer.sign(data)).line()
    return data + b"\n" + sig.encode() + b"\n"


B64 = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"{ORIGIN}\n3\n", "at least 3 lines"),
        (f"{ORIGIN}\n03\n{B64}\n", "leading zeros"),
        (f"{ORIGIN}\n+3\n{B64}\n", "not a decimal"),
        (f"{ORIGIN}\n-3\n{B64}\n", "not a decimal"),
        (f"{ORIGIN}\n\uff13\n{B64}\n", "not a decimal"),
        (f"{ORIGIN}\n1_0\n{B64}\n", "not a decimal"),
        (f"{ORIGIN}\n{2**64}\n{B64}\n", "out of range"),
        (f"{ORIGIN}\n3\n{B64[:-2]}\n", "not valid base64"),
        (f"{ORIGIN}\n3\n{base64.b64encode(ROOT[:31]).decode()}\n", "31 bytes"),
        (f"{ORIGIN}\n3\n{B64}\ntime 2026-13-01T00:00:00Z\n", "not a valid date and time"),
        (f"{ORIGIN}\n3\n{B64}\ntime 2026-11-22 10:15:30Z\n", "expected 'time"),
        (
            f"{ORIGIN}\n3\n{B64}\ntime 2026-11-22T10:15:30Z\ntime 2026-11-22T10:15:31Z\n",
            "more than once",
        ),
        (f"{ORIGIN}\n3\n{B64}\nheartbeat 0\n", "positive"),
        (f"{ORIGIN}\n3\n{B64}\nheartbeat 060\n", "positive"),
        (f"{ORIGIN}\n3\n{B64}\nsequence 1-4\n", "4 sequence numbers for a tree of 3"),
        (f"{ORIGIN}\n3\n{B64}\nsequence 3-1\n", "first sequence number is after"),
        (f"{ORIGIN}\n0\n{B64}\nsequence 1-0\n", "empty tree has no sequence"),
        (f"{ORIGIN}\n3\n{B64}\nsequence 01-03\n", "FIRST-LAST"),
        (f"{ORIGIN}\n3\n{B64}\nclosed now\n", "expected 'closed'"),
        (f" \n3\n{B64}\n\n", "line 4 of the checkpoint is empty"),
    ],
)
def test_malformed_checkpoint_bodies_are_refused_with_the_reason(body: str, message: str) -> None:
    with pytest.raises(CheckpointFormatError, match=message):
        parse_signed(_signed_body(body), [SIGNER.verifier])


def test_root_hash_base64_with_stray_low_bits_is_refused() -> None:
    # 32 bytes encode to 43 characters and "=", the last carrying 2 unused bits.
    last = B64[-2]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sibling = alphabet[alphabet.index(last) ^ 1]
    spelled = B64[:-2] + sibling + "="
    assert base64.b64decode(spelled) == ROOT
    with pytest.raises(CheckpointFormatError, match="not canonical base64"):
        parse_signed(_signed_body(f"{ORIGIN}\n3\n{spelled}\n"), [SIGNER.verifier])


@pytest.mark.parametrize(
    ("note", "message"),
    [
        (b"origin\n3\nroot\n", "no blank line"),
        (b"origin\n3\nroot\n\n", "no signature lines"),
        (sign(Checkpoint(ORIGIN, 3, ROOT), SIGNER)[:-1], "does not end with a newline"),
        (b"o\n3\nr\n\n- name AAAAAAAA\n", "em dash"),
        ("o\n3\nr\n\n\u2014 name\n".encode(), "no signature after the key name"),
        ("o\n3\nr\n\n\u2014 na+me AAAAAAAA\n".encode(), "key name"),
        ("o\n3\nr\n\n\u2014 name AAAA\n".encode(), "too short"),
        ("o\n3\nr\n\n\u2014 name AA*AAAAA\n".encode(), "not valid base64"),
        ("o\n3\nr\n\n\u2014 name AAAAAAAA extra\n".encode(), "not valid base64"),
        (b"o\r\n3\nr\n\n", "control character U\\+000D"),
        (b"o\n3\nr\xff\n\n", "not valid UTF-8"),
    ],
)
def test_malformed_notes_are_refused_with_the_reason(note: bytes, message: str) -> None:
    with pytest.raises(CheckpointFormatError, match=message):
        parse_signed(note, [SIGNER.verifier])


def test_at_most_100_signature_lines_are_read() -> None:
    cp = checkpoint()
    signers = [new_signer(f"witness{i}.example") for i in range(MAX_SIGNATURES)]
    note = sign(cp, *signers)
    assert parse_signed(note, [s.verifier for s in signers[:3]]).trusted
    extra = NoteSignature("one.more", b"\x00" * 4, bytes(64)).line().encode() + b"\n"
    with pytest.raises(CheckpointFormatError, match="at most 100"):
        parse_signed(note + extra, [])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"origin": ""}, "non-empty"),
        ({"origin": "a\nb"}, "control character|single line"),
        ({"size": -1}, "out of range"),
        ({"size": True}, "must be an int"),
        ({"root": b"short"}, "32 bytes"),
        ({"extensions": ("",)}, "non-empty"),
        ({"extensions": ("a\nb",)}, "control character|several lines"),
        ({"extensions": ("heartbeat soon",)}, "heartbeat SECONDS"),
    ],
)
def test_a_checkpoint_cannot_be_built_with_a_bad_field(
    kwargs: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {"origin": ORIGIN, "size": 3, "root": ROOT, "extensions": ()}
    fields.update(kwargs)
    with pytest.raises(CheckpointFormatError, match=message):
        Checkpoint(**fields)  # type: ignore[arg-type]


def test_sign_note_refuses_text_that_could_not_be_parsed_back() -> None:
    with pytest.raises(CheckpointFormatError, match="end with a newline"):
        sign_note(b"no newline", [SIGNER])
    with pytest.raises(CheckpointFormatError, match="control character"):
        sign_note(b"bell\x07\n", [SIGNER])
    with pytest.raises(ValueError, match="at least one signer"):
        sign_note(b"text\n", [])


def test_the_note_text_is_exactly_what_was_signed() -> None:
    cp = checkpoint()
    opened = open_note(sign(cp, SIGNER), [SIGNER.verifier])
    assert opened.text == cp.body()
