"""GSSAPI logins through the gateway, against a stand-in broker.

A mock, and why: GSSAPI needs a Kerberos KDC and a broker keytab, and no KDC runs in this
test environment. The stand-in below answers as Kafka's SaslServerAuthenticator does for
a three-round GSSAPI exchange (context token, empty token, security layer), in both
framings: SaslHandshake v1 + SaslAuthenticate, and SaslHandshake v0 followed by raw
tokens, where the broker sends nothing for the last token (its SASL server returns
null) and refuses by closing the connection. The tokens are opaque to the gateway
either way, which is what is tested: rounds are counted, the login is recorded only
once the broker answers a request after the exchange, and framing holds.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from gateway_fixtures import GatewayFactory, RunningGateway

from support.kafka import wait_for

pytestmark = pytest.mark.kafka

SASL_HANDSHAKE, SASL_AUTHENTICATE, LIST_GROUPS = 17, 36, 16
SASL_AUTHENTICATION_FAILED = 58
# Shapes of Kerberos GSS tokens (RFC 2743 framing, RFC 4121 wrap tokens); contents opaque.
CLIENT_TOKENS = [b"\x60\x82\x01\x10" + b"k" * 40, b"", b"\x05\x04\x01\xff" + b"w" * 28]
SERVER_TOKENS = [b"\x60\x81\x90" + b"r" * 30, b"\x05\x04\x00\xff" + b"o" * 28]


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def _request(key: int, version: int, correlation_id: int, body: bytes = b"") -> bytes:
    return _frame(struct.pack(">hhi", key, version, correlation_id) + _string("gss") + body)


def _read_frame(sock: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    (size,) = struct.unpack(">i", exactly(4))
    return exactly(size)


class _StandInBroker(socketserver.BaseRequestHandler):
    """One connection, answered as a Kafka broker with GSSAPI would answer it."""

    refuse_last = False

    def handle(self) -> None:
        sock = self.request
        try:
            self._serve(sock)
        except ConnectionError:
            return

    def _serve(self, sock: socket.socket) -> None:
        raw = False
        rounds = 0
        while True:
            frame = _read_frame(sock)
            if raw and rounds < len(CLIENT_TOKENS):
                rounds += 1
                if rounds < len(CLIENT_TOKENS):
                    sock.sendall(_frame(SERVER_TOKENS[rounds - 1]))
                elif self.refuse_last:
                    return  # v0: the broker refuses by closing the connection
                continue  # the last token: the SASL server returns null, nothing is sent
            key, version, correlation_id = struct.unpack_from(">hhi", frame)
            head = struct.pack(">i", correlation_id)
            if key == SASL_HANDSHAKE:
                raw = version == 0
                sock.sendall(_frame(head + struct.pack(">hi", 0, 1) + _string("GSSAPI")))
            elif key == SASL_AUTHENTICATE:
                rounds += 1
                last = rounds == len(CLIENT_TOKENS)
                code = SASL_AUTHENTICATION_FAILED if last and self.refuse_last else 0
                token = b"" if last else SERVER_TOKENS[rounds - 1]
                body = struct.pack(">hh", code, -1) + struct.pack(">i", len(token)) + token
                sock.sendall(_frame(head + body + struct.pack(">q", 0)))
                if code:
                    return
            elif key == LIST_GROUPS:
                sock.sendall(_frame(head + struct.pack(">hi", 0, 0)))


@pytest.fixture
def stand_in() -> Iterator[type[_StandInBroker]]:
    handler = type("Broker", (_StandInBroker,), {})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.address = f"127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def _login(gw: RunningGateway, handshake_version: int) -> socket.socket:
    host, port = gw.bootstrap.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(_request(SASL_HANDSHAKE, handshake_version, 1, _string("GSSAPI")))
    _read_frame(sock)
    for i, token in enumerate(CLIENT_TOKENS):
        last = i == len(CLIENT_TOKENS) - 1
        if handshake_version == 0:
            sock.sendall(_frame(token))
            if not last:
                assert _read_frame(sock) == SERVER_TOKENS[i]
        else:
            body = struct.pack(">i", len(token)) + token
            sock.sendall(_request(SASL_AUTHENTICATE, 1, 2 + i, body))
            answer = _read_frame(sock)
            assert struct.unpack_from(">ih", answer) == (2 + i, 0)
    return sock


def _events_of(gw: RunningGateway, kind: str) -> list[dict[str, Any]]:
    return gw.events(kind)


@pytest.mark.parametrize("handshake_version", [0, 1])
def test_a_gssapi_login_is_recorded_once_the_broker_answers_after_it(
    gateway_factory: GatewayFactory, stand_in: Any, handshake_version: int
) -> None:
    gw = gateway_factory(upstream=stand_in.address)
    sock = _login(gw, handshake_version)
    assert not _events_of(gw, "auth.login")  # not before the broker has answered a request
    sock.sendall(_request(LIST_GROUPS, 0, 42))
    answer = _read_frame(sock)  # framing held: the answer to this request, whole
    assert struct.unpack_from(">ihi", answer) == (42, 0, 0)
    sock.close()

    wait_for(lambda: bool(_events_of(gw, "kafka.request")), "the ListGroups record")
    (login,) = _events_of(gw, "auth.login")
    assert login["actor"]["id"] == "User:unknown(GSSAPI)"
    assert login["details"]["rounds"] == len(CLIENT_TOKENS)
    assert login["authorization"]["allowed"] is True
    (listed,) = _events_of(gw, "kafka.request")
    assert listed["context"]["api"]["name"] == "ListGroups"
    assert listed["actor"]["id"] == "User:unknown(GSSAPI)"
    assert not _events_of(gw, "auth.failed")


@pytest.mark.parametrize("handshake_version", [0, 1])
def test_a_refused_gssapi_login_is_a_failed_login(
    gateway_factory: GatewayFactory, stand_in: Any, handshake_version: int
) -> None:
    stand_in.refuse_last = True
    gw = gateway_factory(upstream=stand_in.address)
    host, port = gw.bootstrap.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(_request(SASL_HANDSHAKE, handshake_version, 1, _string("GSSAPI")))
    _read_frame(sock)
    for i, token in enumerate(CLIENT_TOKENS):
        last = i == len(CLIENT_TOKENS) - 1
        if handshake_version == 0:
            sock.sendall(_frame(token))
            if not last:
                _read_frame(sock)
        else:
            body = struct.pack(">i", len(token)) + token
            sock.sendall(_request(SASL_AUTHENTICATE, 1, 2 + i, body))
            answer = _read_frame(sock)
            if last:
                assert struct.unpack_from(">ih", answer) == (2 + i, SASL_AUTHENTICATION_FAILED)
    with pytest.raises((ConnectionError, OSError)):
        _read_frame(sock)  # the broker, then the gateway, closed the connection
    sock.close()

    wait_for(lambda: bool(_events_of(gw, "auth.failed")), "the failed login")
    (failed,) = _events_of(gw, "auth.failed")
    assert failed["actor"]["id"] == "User:unknown(GSSAPI)"
    assert failed["authorization"]["allowed"] is False
    assert not _events_of(gw, "auth.login")
