"""When a SASL exchange is a login: only once the broker has accepted it, read from the
broker's answers mechanism by mechanism (SaslObserver.server_token), never from the
number of tokens. These are the answers Kafka's SASL servers give; the end-to-end
tests with the real broker and real clients are tests/integration/test_gateway_logins.py
and test_gateway_reauth.py."""

from __future__ import annotations

import base64
import struct

import orjson
import pytest

from kaudit.gateway.sasl import SaslObserver, looks_like_request, oauthbearer_error

SASL_AUTHENTICATION_FAILED = 58


def _jwt(sub: str) -> bytes:
    def b64(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()

    return f"n,,\x01auth=Bearer {b64({'alg': 'none'})}.{b64({'sub': sub})}.\x01\x01".encode()


def _observer(mechanism: str) -> SaslObserver:
    observer = SaslObserver()
    observer.handshake(mechanism)
    return observer


def test_oauthbearer_error_challenge_is_a_failure_recorded_once() -> None:
    observer = _observer("OAUTHBEARER")
    observer.client_token(_jwt("mallory"))
    # RFC 7628: error code 0 and an error challenge; the client replies with ^A.
    assert observer.server_token(0, b'{"status":"invalid_token"}') == "failed"
    assert observer.failure == "OAUTHBEARER error challenge: invalid_token"
    observer.client_token(b"\x01")
    assert observer.claimed_principal() == "User:mallory"  # the reply names no one
    assert observer.server_token(SASL_AUTHENTICATION_FAILED, b"") == "settled"
    assert observer.principal == "User:ANONYMOUS"


def test_oauthbearer_empty_answer_is_acceptance() -> None:
    observer = _observer("OAUTHBEARER")
    observer.client_token(_jwt("svc-billing"))
    assert observer.server_token(0, b"") == "accepted"
    assert observer.accepted() == "User:svc-billing"


@pytest.mark.parametrize("challenge", [b"not json", b"[1]", b'{"status":7}'])
def test_an_unreadable_error_challenge_still_fails(challenge: bytes) -> None:
    assert oauthbearer_error(challenge).endswith("unreadable")
    observer = _observer("OAUTHBEARER")
    observer.client_token(_jwt("x"))
    assert observer.server_token(0, challenge) == "failed"


def test_scram_server_first_is_not_a_login_and_a_wrong_proof_fails() -> None:
    observer = _observer("SCRAM-SHA-256")
    observer.client_token(b"n,,n=admin,r=abc")
    assert observer.server_token(0, b"r=abcdef,s=c2FsdA==,i=4096") == "continue"
    observer.client_token(b"c=biws,r=abcdef,p=d3Jvbmc=")
    assert observer.server_token(SASL_AUTHENTICATION_FAILED, b"") == "failed"
    assert observer.claimed_principal() == "User:admin"


def test_scram_server_error_message_fails() -> None:
    observer = _observer("SCRAM-SHA-512")
    observer.client_token(b"n,,n=admin,r=abc")
    observer.server_token(0, b"r=abcdef,s=c2FsdA==,i=4096")
    observer.client_token(b"c=biws,r=abcdef,p=d3Jvbmc=")
    assert observer.server_token(0, b"e=invalid-proof") == "failed"
    assert observer.failure == "SCRAM server error: invalid-proof"


def test_plain_refused_fails_for_the_claimed_user() -> None:
    observer = _observer("PLAIN")
    observer.client_token(b"\0alice\0wrong")
    assert observer.server_token(SASL_AUTHENTICATION_FAILED, b"") == "failed"
    assert observer.claimed_principal() == "User:alice"


def test_gssapi_rounds_are_counted_and_acceptance_waits_for_a_request() -> None:
    observer = _observer("GSSAPI")
    assert observer.opaque
    tokens = [b"\x60\x82\x02\x00" + b"k" * 20, b"", b"\x05\x04" + b"w" * 30]
    for round_, token in enumerate(tokens, start=1):
        observer.client_token(token)
        assert observer.rounds == round_
        assert observer.server_token(0, b"\x60reply", request=round_) == "unconfirmed"
        assert observer.unconfirmed == round_
    assert observer.principal == "User:ANONYMOUS"
    assert observer.accepted() == "User:unknown(GSSAPI)"
    assert observer.unconfirmed is None
    observer.handshake("GSSAPI")
    observer.client_token(b"\x60")
    assert observer.server_token(SASL_AUTHENTICATION_FAILED, b"") == "failed"


def _request(key: int, version: int) -> bytes:
    body = struct.pack(">hhih", key, version, 7, 3) + b"cli"
    return struct.pack(">i", len(body)) + body


@pytest.mark.parametrize(
    "token",
    [
        b"\x60\x82\x01\x00" + b"k" * 40,  # RFC 2743 framed (initial and RFC 1964 tokens)
        b"\x05\x04\x01\xff" + b"w" * 40,  # RFC 4121 wrap token
        b"\x04\x04\x05\xff" + b"m" * 40,  # RFC 4121 MIC token
        b"\x01\x00" + b"a" * 40,  # RFC 4121 AP-REQ token id
        b"\x02\x00" + b"a" * 40,  # AP-REP
        b"",
    ],
)
def test_gssapi_tokens_never_look_like_requests(token: bytes) -> None:
    assert not looks_like_request(struct.pack(">i", len(token)) + token)


def test_kafka_requests_look_like_requests() -> None:
    assert looks_like_request(_request(3, 12))  # Metadata
    assert looks_like_request(_request(18, 3))  # ApiVersions
    assert not looks_like_request(_request(3, -1))


def test_a_reauthentication_refused_before_naming_anyone_is_the_connections_principal() -> None:
    observer = _observer("SCRAM-SHA-256")
    observer.client_token(b"n,,n=admin,r=abc")
    observer.server_token(0, b"r=abcdef,s=c2FsdA==,i=4096")
    observer.client_token(b"c=biws,r=abcdef,p=cHJvb2Y=")
    observer.server_token(0, b"v=c2lnbmF0dXJl")
    observer.accepted()
    observer.handshake("SCRAM-SHA-256")  # KIP-368: the same steps on the open connection
    assert observer.server_token(SASL_AUTHENTICATION_FAILED, b"") == "failed"
    assert observer.claimed_principal() == "User:admin"
    # A re-authentication that names someone is recorded for the one it names.
    observer.handshake("SCRAM-SHA-256")
    observer.client_token(b"n,,n=alice,r=abc")
    assert observer.claimed_principal() == "User:alice"
    assert observer.principal == "User:admin"
