"""One tagged field no schema knows hides nothing: the broker skips it and acts on the
request (KIP-482), and so does the gateway, which records the change with its resource
and notes the tag. Each request is written field by field with kio's writers plus the
extra tagged field (support.tagging), sent through a real gateway to the run's real
broker, and checked against the broker's state and the log."""

from __future__ import annotations

import hashlib
import socket
import struct
import uuid
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ConfigResource,
    ResourcePatternType,
    ResourceType,
)
from gateway_fixtures import GatewayFactory, one
from kio.schema.alter_configs.v2.request import (
    AlterableConfig,
    AlterConfigsRequest,
    AlterConfigsResource,
)
from kio.schema.alter_user_scram_credentials.v0.request import (
    AlterUserScramCredentialsRequest,
    ScramCredentialUpsertion,
)
from kio.schema.create_acls.v3.request import AclCreation, CreateAclsRequest
from kio.schema.delete_topics.v6.request import DeleteTopicsRequest, DeleteTopicState
from kio.schema.sasl_authenticate.v2.request import SaslAuthenticateRequest
from kio.schema.sasl_handshake.v1.request import SaslHandshakeRequest
from kio.schema.types import TopicName
from kio.static.primitive import i8, i16, i32, i32Timedelta

from kaudit.dev.kafka import KafkaInfo
from kaudit.gateway.codec import decode_response
from support.kafka import create_topic, wait_for
from support.tagging import frame_with_tags, no_tags
from support.wire import recv_exactly

pytestmark = pytest.mark.kafka
UNKNOWN_TAG = 4242  # no version of these APIs has a tagged field 4242
NOTE = [UNKNOWN_TAG]


def one_extra_tag(entity_type: type[Any]) -> list[tuple[int, bytes]]:
    """One unknown tagged field, in the request body only (`4242 = "x"`)."""
    return [(UNKNOWN_TAG, b"x")] if entity_type.__name__.endswith("Request") else []


def request(body: Any, correlation_id: int, tagged: bool = True) -> bytes:
    key, version = int(body.__api_key__), _version(body)
    header = type(body).__header_schema__(
        request_api_key=i16(key),
        request_api_version=i16(version),
        correlation_id=i32(correlation_id),
        client_id="tagger",
    )
    return frame_with_tags(header, body, one_extra_tag if tagged else no_tags)


def _version(body: Any) -> int:
    return int(type(body).__module__.split(".")[-2].removeprefix("v"))


class Wire:
    """A raw connection: one request frame out, its response body back."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.conn = socket.create_connection((host, int(port)), timeout=30)

    def call(self, body: Any, correlation_id: int = 1, tagged: bool = True) -> Any:
        self.conn.sendall(request(body, correlation_id, tagged))
        size = struct.unpack(">i", recv_exactly(self.conn, 4))[0]
        frame = recv_exactly(self.conn, size)
        return decode_response(int(body.__api_key__), _version(body), frame)[1]

    def close(self) -> None:
        self.conn.close()


def call(address: str, body: Any) -> Any:
    wire = Wire(address)
    try:
        return wire.call(body)
    finally:
        wire.close()


def test_a_tagged_delete_topics_deletes_and_is_recorded_with_its_topic(
    gateway_factory: GatewayFactory,
    kafka: KafkaInfo,
    admin_config: dict[str, str],
    unique_topic: str,
) -> None:
    create_topic(admin_config, unique_topic)
    gw = gateway_factory(upstream=kafka.bootstrap_servers)  # PLAINTEXT: the super user
    body = DeleteTopicsRequest(
        topics=(DeleteTopicState(name=TopicName(unique_topic), topic_id=uuid.UUID(int=0)),),
        timeout=i32Timedelta.parse(timedelta(seconds=30)),
    )

    response = call(gw.bootstrap, body)

    assert [int(r.error_code) for r in response.responses] == [0]
    admin = AdminClient(admin_config)
    wait_for(lambda: unique_topic not in admin.list_topics(timeout=30).topics, "the topic deleted")
    event = one(gw.events("topic.deleted"), resource__id=unique_topic)
    assert event["action"]["result"] == "success"
    assert event["actor"]["client_id"] == "tagger"
    assert event["details"]["unknown_tagged_fields"] == NOTE


def test_a_tagged_create_acls_creates_and_is_recorded_with_its_binding(
    gateway_factory: GatewayFactory, kafka: KafkaInfo, admin_config: dict[str, str]
) -> None:
    gw = gateway_factory(upstream=kafka.bootstrap_servers)
    topic = f"kaudit-tagged-acl-{uuid.uuid4().hex[:8]}"
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

    response = call(gw.bootstrap, body)

    assert [int(r.error_code) for r in response.results] == [0]
    admin = AdminClient(admin_config)
    match = AclBindingFilter(
        ResourceType.TOPIC, topic, ResourcePatternType.LITERAL,
        None, None, AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip
    try:
        wait_for(lambda: len(admin.describe_acls(match).result(timeout=30)) == 1, "the ACL created")
        [binding] = admin.describe_acls(match).result(timeout=30)
        assert (binding.principal, binding.operation) == ("User:mallory", AclOperation.READ)
    finally:
        admin.delete_acls([match])[match].result(timeout=30)
    event = one(gw.events("acl.created"))
    assert event["details"]["unknown_tagged_fields"] == NOTE
    [recorded] = event["details"]["bindings"]
    assert recorded["principal"] == "User:mallory"
    assert (recorded["resource_type"], recorded["resource_name"]) == ("TOPIC", topic)
    assert (recorded["operation"], recorded["permission_type"]) == ("READ", "ALLOW")


def test_a_tagged_alter_configs_changes_and_is_recorded_with_its_change(
    gateway_factory: GatewayFactory,
    kafka: KafkaInfo,
    admin_config: dict[str, str],
    unique_topic: str,
) -> None:
    create_topic(admin_config, unique_topic)
    gw = gateway_factory(upstream=kafka.bootstrap_servers)
    body = AlterConfigsRequest(
        resources=(
            AlterConfigsResource(
                resource_type=i8(2),
                resource_name=unique_topic,
                configs=(AlterableConfig(name="retention.ms", value="4242000"),),
            ),
        ),
        validate_only=False,
    )

    response = call(gw.bootstrap, body)

    assert [int(r.error_code) for r in response.responses] == [0]
    admin = AdminClient(admin_config)
    resource = ConfigResource(ResourceType.TOPIC, unique_topic)

    def retention() -> str:
        configs = admin.describe_configs([resource])[resource].result(timeout=30)
        return str(configs["retention.ms"].value)

    wait_for(lambda: retention() == "4242000", "the topic's retention changed")
    event = one(gw.events("topic.config_changed"), resource__id=unique_topic)
    assert event["details"]["unknown_tagged_fields"] == NOTE
    assert event["details"]["changes"] == [
        {"field": "retention.ms", "operation": "SET", "new_value": "4242000"}
    ]


def test_a_tagged_scram_credential_change_applies_and_is_recorded_with_its_user(
    gateway_factory: GatewayFactory, kafka: KafkaInfo, admin_config: dict[str, str]
) -> None:
    gw = gateway_factory(upstream=kafka.bootstrap_servers)
    user = f"tagged-{uuid.uuid4().hex[:8]}"
    salt = uuid.uuid4().bytes
    body = AlterUserScramCredentialsRequest(
        deletions=(),
        upsertions=(
            ScramCredentialUpsertion(
                name=user,
                mechanism=i8(2),  # SCRAM-SHA-512
                iterations=i32(4096),
                salt=salt,
                salted_password=hashlib.pbkdf2_hmac("sha512", b"secret", salt, 4096),
            ),
        ),
    )

    response = call(gw.bootstrap, body)

    assert [(r.user, int(r.error_code)) for r in response.results] == [(user, 0)]
    admin = AdminClient(admin_config)

    def described() -> bool:
        found = admin.describe_user_scram_credentials([user])[user]
        try:
            return bool(found.result(timeout=30).scram_credential_infos)
        except Exception:  # RESOURCE_NOT_FOUND until the credential is there
            return False

    wait_for(described, "the credential stored")
    event = one(gw.events("auth.credentials_changed"), resource__id=user)
    assert event["details"]["unknown_tagged_fields"] == NOTE
    assert event["details"]["changes"] == [
        {"operation": "upsert", "mechanism": "SCRAM-SHA-512", "iterations": 4096}
    ]
    assert "salt" not in str(event)


def test_a_tagged_sasl_authenticate_logs_in_and_is_recorded_as_the_login(
    gateway_factory: GatewayFactory, kafka: KafkaInfo
) -> None:
    gw = gateway_factory()  # over the broker's SASL listener
    wire = Wire(gw.bootstrap)
    try:
        handshake = wire.call(SaslHandshakeRequest(mechanism="PLAIN"), 1, tagged=False)
        assert int(handshake.error_code) == 0
        token = b"\0alice\0" + kafka.user("alice").password.encode()
        answer = wire.call(SaslAuthenticateRequest(auth_bytes=token), 2)
        assert int(answer.error_code) == 0  # the broker skipped the tag and let alice in
    finally:
        wire.close()
    event = one(gw.events("auth.login"), resource__id="User:alice")
    assert event["details"]["mechanism"] == "PLAIN"
    assert event["details"]["unknown_tagged_fields"] == NOTE
    assert kafka.user("alice").password not in str(gw.log_bytes())
