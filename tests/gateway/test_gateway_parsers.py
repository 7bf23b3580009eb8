"""The gateway's parsers never fail on hostile bytes: framing, SASL tokens, header peeks.

Fuzzed with hypothesis; each parser may refuse input only in the documented way
(`ProtocolViolation`) and otherwise returns a value. Decoding with kio, whose native
reader could abort the process, is fuzzed in a child process instead
(test_gateway_declared_lengths).
"""

from __future__ import annotations

import base64
import struct

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from kaudit_gateway_frames import batch as _batch
from kaudit_gateway_frames import frame

from kaudit.gateway.codec import peek_client_id as _client_id
from kaudit.gateway.fetch import count_records
from kaudit.gateway.framing import Frames as _Frames
from kaudit.gateway.framing import ProtocolViolation
from kaudit.gateway.sasl import (
    SaslObserver,
    oauthbearer_identity,
    plain_identity,
    scram_identity,
)


@given(st.lists(st.binary(max_size=300), max_size=20), st.data())
def test_frames_come_out_whole_however_the_stream_is_cut(
    payloads: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(frame(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    framer = _Frames(max_bytes=1024)
    out: list[bytes] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        out.extend(framer.feed(stream[last:cut]))
        last = cut
    assert out == [frame(p) for p in payloads]
    assert framer.buffered == 0


@given(st.binary(max_size=200))
def test_framing_of_arbitrary_bytes_returns_frames_or_a_violation(data: bytes) -> None:
    framer = _Frames(max_bytes=64)
    try:
        frames = framer.feed(data)
    except ProtocolViolation as exc:
        assert "accepted: 0..64" in str(exc)
        return
    for f in frames:
        assert struct.unpack(">i", f[:4])[0] == len(f) - 4 <= 64


def test_oversized_and_negative_sizes_are_violations_naming_the_limit() -> None:
    for size in (-1, 65):
        framer = _Frames(max_bytes=64)
        try:
            framer.feed(struct.pack(">i", size))
        except ProtocolViolation as exc:
            assert "gateway.max_frame_bytes" in str(exc)
        else:
            raise AssertionError(f"size {size} accepted")


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_the_client_id_of_arbitrary_bytes_is_a_string_or_none(data: bytes) -> None:
    client_id = _client_id(b"\0\0\0\0" + data)
    assert client_id is None or isinstance(client_id, str)


@given(st.binary(max_size=300))
def test_sasl_token_parsers_accept_any_bytes(token: bytes) -> None:
    plain_identity(token)
    scram_identity(token)
    oauthbearer_identity(token)
    for mechanism in ("PLAIN", "SCRAM-SHA-256", "OAUTHBEARER", "GSSAPI"):
        observer = SaslObserver()
        observer.handshake(mechanism)
        observer.client_token(token)
        assert observer.claimed_principal().startswith("User:")


def test_plain_reads_the_authcid_and_never_the_password() -> None:
    assert plain_identity(b"\0alice\0s3cret").name == "alice"
    assert plain_identity(b"admin\0alice\0s3cret").name == "admin"  # authzid wins
    assert plain_identity(b"alice-no-separators").name is None


def test_scram_reads_the_user_from_the_client_first_message_only() -> None:
    first = scram_identity(b"n,,n=al=2Cice,r=abc123")
    assert first is not None and first.name == "al,ice"
    token = scram_identity(b"n,,n=tok,r=abc,tokenauth=true")
    assert token is not None and token.delegation_token
    assert scram_identity(b"c=biws,r=abc123xyz,p=cHJvb2Y=") is None


def test_oauthbearer_reads_the_jwt_subject() -> None:
    def b64(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()

    jwt = f"{b64({'alg': 'none'})}.{b64({'sub': 'svc-billing'})}."
    token = f"n,,\x01auth=Bearer {jwt}\x01\x01".encode()
    assert oauthbearer_identity(token).name == "svc-billing"
    assert oauthbearer_identity(b"n,,\x01auth=Bearer not-a-jwt\x01\x01").name is None


def test_the_principal_is_trusted_only_when_accepted() -> None:
    observer = SaslObserver()
    observer.handshake("SCRAM-SHA-512")
    observer.client_token(b"n,,n=alice,r=x")
    assert observer.server_token(0, b"r=xy,s=c2FsdA==,i=4096") == "continue"
    assert observer.principal == "User:ANONYMOUS"
    observer.client_token(b"c=biws,r=xy,p=zz")
    assert observer.server_token(0, b"v=c2lnbmF0dXJl") == "accepted"
    assert observer.accepted() == "User:alice"
    assert not observer.reauthenticated
    # Re-authentication starts over.
    observer.handshake("PLAIN")
    observer.client_token(b"\0bob\0pw")
    assert observer.principal == "User:alice"
    assert observer.server_token(0, b"") == "accepted"
    assert observer.accepted() == "User:bob"
    assert observer.reauthenticated


def test_record_batches_are_counted_and_a_truncated_last_batch_is_skipped() -> None:
    data = _batch(3, b"x" * 10) + _batch(5, b"y" * 20)
    assert count_records(data) == 8
    assert count_records(data + _batch(7, b"z" * 30)[:40]) == 8
    assert count_records(None) == 0 and count_records(b"") == 0


@given(st.binary(max_size=500))
def test_counting_records_in_arbitrary_bytes_never_fails(data: bytes) -> None:
    assert isinstance(count_records(data), int)
