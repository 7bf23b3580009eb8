"""A request the gateway cannot read is refused, not forwarded, when its API changes
state (DESIGN: nothing changes the cluster unaudited): a CreateAcls request naming its
topic in bytes that are not UTF-8, which the broker itself accepts (it decodes them with
replacement characters) and acts on; a read-only request the gateway cannot read is
still forwarded. Unknown tagged fields no longer make a request unreadable (see
test_gateway_tagged_fields)."""

from __future__ import annotations

import socket
import struct
import uuid
from dataclasses import replace
from typing import Any

import pytest
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from gateway_fixtures import GatewayFactory, one
from kio.schema.create_acls.v3.request import AclCreation, CreateAclsRequest
from kio.schema.describe_configs.v4.request import (
    DescribeConfigsRequest,
    DescribeConfigsResource,
)
from kio.schema.request_header.v2.header import RequestHeader
from kio.schema.sasl_authenticate.v2.request import SaslAuthenticateRequest
from kio.schema.sasl_handshake.v1.request import SaslHandshakeRequest
from kio.static.primitive import i8, i16, i32

from kaudit.dev.kafka import KafkaInfo
from kaudit.gateway.codec import API_KEYS, decode_response, encode_request
from support.kafka import create_topic, wait_for
from support.wire import recv_exactly

pytestmark = pytest.mark.kafka
CREATE_ACLS = API_KEYS["CreateAcls"]
DESCRIBE_CONFIGS = API_KEYS["DescribeConfigs"]
INVALID_REQUEST = 42
SASL_AUTHENTICATION_FAILED = 58
SASL_AUTHENTICATE = API_KEYS["SaslAuthenticate"]
MARK = "\u00e9"  # é: two bytes in UTF-8, written as two 0xff bytes below


def not_utf8(frame: bytes, text: str) -> bytes:
    """`frame` with `text` (which holds MARK once) written with a byte that is not
    UTF-8 in its place: same length, same declared lengths."""
    good = text.encode()
    bad = good.replace(MARK.encode(), b"\xff\xff")
    assert frame.count(good) == 1 and len(bad) == len(good)
    return frame.replace(good, bad)


def header(key: int, version: int, correlation_id: int) -> RequestHeader:
    return RequestHeader(
        request_api_key=i16(key),
        request_api_version=i16(version),
        correlation_id=i32(correlation_id),
        client_id="mangler",
    )


def create_acls_frame(topic: str, correlation_id: int) -> bytes:
    body = CreateAclsRequest(
        creations=(
            AclCreation(
                resource_type=i8(2),  # TOPIC
                resource_name=topic,
                resource_pattern_type=i8(3),  # LITERAL
                principal="User:mallory",
                host="*",
                operation=i8(3),  # READ
                permission_type=i8(3),  # ALLOW
            ),
        )
    )
    return not_utf8(encode_request(header(CREATE_ACLS, 3, correlation_id), body), topic)


def exchange(address: str, frame: bytes, key: int, version: int) -> Any:
    """Send one request frame, return the decoded response body."""
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(frame)
        size = struct.unpack(">i", recv_exactly(conn, 4))[0]
        _, body = decode_response(key, version, recv_exactly(conn, size))
        return body


def test_an_unreadable_create_acls_is_refused_and_recorded_not_forwarded(
    gateway_factory: GatewayFactory, kafka: KafkaInfo, admin_config: dict[str, str]
) -> None:
    stem = f"kaudit-mangled-{uuid.uuid4().hex[:8]}-"
    topic = stem + MARK
    gw = gateway_factory(upstream=kafka.bootstrap_servers)  # PLAINTEXT: the super user
    admin = AdminClient(admin_config)
    mallory = AclBindingFilter(
        ResourceType.TOPIC, None, ResourcePatternType.ANY,
        "User:mallory", None, AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip

    def mallorys() -> list[str]:
        found = admin.describe_acls(mallory).result(timeout=30)
        return [b.name for b in found if b.name.startswith(stem)]

    response = exchange(gw.bootstrap, create_acls_frame(topic, 7), CREATE_ACLS, 3)

    # The client got CreateAcls' own error, and the broker holds no such ACL.
    assert [int(r.error_code) for r in response.results] == [INVALID_REQUEST]
    assert "cannot read" in str(response.results[0].error_message)
    assert mallorys() == []
    event = one(gw.events("kafka.request"), context__api__key=CREATE_ACLS)
    assert event["action"]["result"] == "failure"
    assert event["action"]["error"] == "INVALID_REQUEST"
    assert event["actor"]["client_id"] == "mangler"
    assert event["context"]["api"]["version"] == 3
    assert event["details"]["refused"] is True
    assert event["details"]["decoded"] is False
    assert "CreateAcls v3 request" in event["details"]["reason"]

    # The same frame straight to the broker creates the ACL: the broker accepts it.
    direct = exchange(kafka.bootstrap_servers, create_acls_frame(topic, 8), CREATE_ACLS, 3)
    try:
        assert [int(r.error_code) for r in direct.results] == [0]
        wait_for(lambda: len(mallorys()) == 1, "the ACL created")
    finally:
        admin.delete_acls([mallory])[mallory].result(timeout=30)


def login_frames(client_id: str, password: str) -> tuple[bytes, bytes]:
    """SaslHandshake v1 (PLAIN) and SaslAuthenticate v2 for alice, the latter from
    `client_id` written with a byte that is not UTF-8 (the broker reads it with a
    replacement character; kio cannot read it)."""
    handshake = encode_request(
        header(API_KEYS["SaslHandshake"], 1, 1), SaslHandshakeRequest(mechanism="PLAIN")
    )
    login_header = replace(header(SASL_AUTHENTICATE, 2, 2), client_id=client_id)
    token = SaslAuthenticateRequest(auth_bytes=b"\0alice\0" + password.encode())
    return handshake, not_utf8(encode_request(login_header, token), client_id)


def login(address: str, frames: tuple[bytes, bytes]) -> tuple[int, bool]:
    """(SaslAuthenticate's error code, whether the peer then closed the connection)."""
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(frames[0])
        size = struct.unpack(">i", recv_exactly(conn, 4))[0]
        _, handshake = decode_response(API_KEYS["SaslHandshake"], 1, recv_exactly(conn, size))
        assert int(handshake.error_code) == 0
        conn.sendall(frames[1])
        size = struct.unpack(">i", recv_exactly(conn, 4))[0]
        _, answer = decode_response(SASL_AUTHENTICATE, 2, recv_exactly(conn, size))
        conn.settimeout(10)
        try:
            closed = conn.recv(1) == b""
        except TimeoutError:
            closed = False
        return int(answer.error_code), closed


def test_an_unreadable_login_fails_is_recorded_and_closes_the_connection(
    gateway_factory: GatewayFactory, kafka: KafkaInfo
) -> None:
    gw = gateway_factory()  # over the broker's SASL listener
    frames = login_frames("login-" + MARK, kafka.user("alice").password)

    # Refused: the login fails (SaslAuthenticate's own error) and the connection closes.
    assert login(gw.bootstrap, frames) == (SASL_AUTHENTICATION_FAILED, True)
    assert gw.events("auth.login") == []
    event = one(gw.events("kafka.request"), context__api__key=SASL_AUTHENTICATE)
    assert event["action"]["error"] == "SASL_AUTHENTICATION_FAILED"
    assert event["details"]["refused"] is True
    assert "SaslAuthenticate v2 request" in event["details"]["reason"]
    assert kafka.user("alice").password.encode() not in gw.log_bytes()
    # The broker itself lets alice in with the same frames.
    assert login(kafka.sasl_bootstrap_servers, frames) == (0, False)


def test_an_unreadable_read_only_request_is_still_forwarded(
    gateway_factory: GatewayFactory,
    kafka: KafkaInfo,
    admin_config: dict[str, str],
    unique_topic: str,
) -> None:
    create_topic(admin_config, unique_topic, config={"retention.ms": "3600000"})
    gw = gateway_factory(upstream=kafka.bootstrap_servers)
    mangled = unique_topic + "-" + MARK
    body = DescribeConfigsRequest(
        resources=(
            DescribeConfigsResource(resource_type=i8(2), resource_name=mangled,
                                    configuration_keys=None),
            DescribeConfigsResource(resource_type=i8(2), resource_name=unique_topic,
                                    configuration_keys=None),
        ),
        include_synonyms=False,
        include_documentation=False,
    )  # fmt: skip
    frame = not_utf8(encode_request(header(DESCRIBE_CONFIGS, 4, 9), body), mangled)

    response = exchange(gw.bootstrap, frame, DESCRIBE_CONFIGS, 4)

    # The broker's own answer: no such topic, and the topic's configuration.
    mangled_result, result = response.results
    assert int(mangled_result.error_code) != 0
    assert int(result.error_code) == 0
    assert result.resource_name == unique_topic
    assert {c.name: c.value for c in result.configs}["retention.ms"] == "3600000"
    event = one(gw.events("kafka.request"), context__api__key=DESCRIBE_CONFIGS)
    assert event["details"] == {"api": "DescribeConfigs", "decoded": False}
