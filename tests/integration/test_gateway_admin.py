"""Admin requests through the gateway, from confluent-kafka, recorded field by field."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)
from gateway_fixtures import RunningGateway, one

from kaudit.dev.kafka import REAUTH_SCRAM_SHA_256_MS, KafkaInfo
from support.kafka import create_topic, grant

pytestmark = pytest.mark.kafka


def admin(gw: RunningGateway, config: dict[str, str]) -> AdminClient:
    return AdminClient(gw.client(config))


def wait(futures: dict[Any, Any]) -> dict[Any, Any]:
    results = {}
    for key, future in futures.items():
        try:
            results[key] = future.result(timeout=30)
        except KafkaException as exc:
            results[key] = exc
    return results


def test_create_topic_is_recorded_with_principal_client_and_details(
    gateway: RunningGateway, admin_sasl_config: dict[str, str], unique_topic: str
) -> None:
    client = admin(gateway, {**admin_sasl_config, "client.id": "ops-console"})
    new = NewTopic(unique_topic, 3, 1, config={"retention.ms": "3600000"})
    assert wait(client.create_topics([new]))[unique_topic] is None

    event = one(gateway.events("topic.created"), resource__id=unique_topic)
    assert event["actor"]["id"] == "User:admin"
    assert event["actor"]["auth"] == "SCRAM-SHA-512"
    assert event["actor"]["client_id"] == "ops-console"
    assert event["actor"]["ip_address"] == "127.0.0.1"
    assert event["actor"]["user_agent"].startswith("confluent-kafka-python/")
    assert event["resource"]["type"] == "topic"
    assert event["action"] == {
        "operation": "create",
        "result": "success",
        "duration_ms": event["action"]["duration_ms"],
        "error": None,
    }
    assert event["action"]["duration_ms"] > 0
    assert event["authorization"]["allowed"] is True
    assert event["authorization"]["checks"] == [
        {
            "operation": "CREATE",
            "resource": f"Topic:LITERAL:{unique_topic}",
            "allowed": True,
            "error_code": 0,
        }
    ]
    assert event["context"]["source"] == "gateway"
    assert event["context"]["api"]["key"] == 19
    assert event["context"]["api"]["name"] == "CreateTopics"
    assert event["context"]["correlation_id"].isdigit()
    assert event["details"] == {
        "topic": unique_topic,
        "partitions": 3,
        "replication_factor": 1,
        "configs": {"retention.ms": "3600000"},
    }
    login = gateway.events("auth.login")
    assert login and all(e["actor"]["id"] == "User:admin" for e in login)
    assert not gateway.events("access.denied")


def test_denied_create_records_the_denial_and_access_denied(
    gateway: RunningGateway, bob_config: dict[str, str], unique_topic: str
) -> None:
    client = admin(gateway, bob_config)
    result = wait(client.create_topics([NewTopic(unique_topic, 1, 1)]))
    assert isinstance(result[unique_topic], KafkaException)

    event = one(gateway.events("topic.created"), resource__id=unique_topic)
    assert event["actor"]["id"] == "User:bob"
    assert event["action"]["result"] == "denied"
    assert event["action"]["error"] == "TOPIC_AUTHORIZATION_FAILED"
    assert event["authorization"]["allowed"] is False
    assert event["authorization"]["checks"][0]["error_code"] == 29
    denied = one(gateway.events("access.denied"), resource__id=unique_topic)
    assert denied["actor"]["id"] == "User:bob"
    assert denied["details"]["denied_event_type"] == "topic.created"
    assert denied["details"]["operation"] == "create"


def test_delete_topic_and_add_partitions_are_recorded(
    gateway: RunningGateway, admin_sasl_config: dict[str, str], unique_topic: str
) -> None:
    client = admin(gateway, admin_sasl_config)
    assert wait(client.create_topics([NewTopic(unique_topic, 1, 1)]))[unique_topic] is None
    assert wait(client.create_partitions([NewPartitions(unique_topic, 4)]))[unique_topic] is None
    time.sleep(0.5)  # the new partitions' metadata settles before the delete
    assert wait(client.delete_topics([unique_topic]))[unique_topic] is None

    changed = one(gateway.events("topic.partitions_changed"), resource__id=unique_topic)
    assert changed["details"] == {"topic": unique_topic, "partitions": 4}
    assert changed["authorization"]["checks"][0]["operation"] == "ALTER"
    deleted = one(gateway.events("topic.deleted"), resource__id=unique_topic)
    assert deleted["action"]["result"] == "success"
    assert deleted["authorization"]["checks"][0]["operation"] == "DELETE"


def test_config_changes_record_keys_and_values_with_secrets_redacted(
    gateway: RunningGateway, admin_sasl_config: dict[str, str], unique_topic: str
) -> None:
    client = admin(gateway, admin_sasl_config)
    assert wait(client.create_topics([NewTopic(unique_topic, 1, 1)]))[unique_topic] is None
    resource = ConfigResource(
        ResourceType.TOPIC,
        unique_topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "86400000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("cleanup.policy", None, incremental_operation=AlterConfigOpType.DELETE),
        ],
    )
    assert list(wait(client.incremental_alter_configs([resource])).values()) == [None]
    secret = ConfigResource(
        ResourceType.TOPIC,
        unique_topic,
        incremental_configs=[
            ConfigEntry(
                "ssl.truststore.password", "hunter2", incremental_operation=AlterConfigOpType.SET
            )
        ],
    )
    wait(client.incremental_alter_configs([secret]))  # the broker refuses it: still recorded

    changes = gateway.events("topic.config_changed")
    ok = [e for e in changes if e["action"]["result"] == "success"]
    assert len(ok) == 1
    assert ok[0]["resource"] == {"type": "topic", "id": unique_topic, "path": None}
    assert ok[0]["details"]["changes"] == [
        {"field": "retention.ms", "operation": "SET", "new_value": "86400000"},
        {"field": "cleanup.policy", "operation": "DELETE", "new_value": None},
    ]
    refused = [e for e in changes if e["action"]["result"] == "failure"]
    assert len(refused) == 1
    assert refused[0]["details"]["changes"] == [
        {"field": "ssl.truststore.password", "operation": "SET", "new_value": "[REDACTED]"}
    ]
    assert b"hunter2" not in gateway.log_bytes()


def test_acl_create_describe_delete_record_the_bindings(
    gateway: RunningGateway, admin_sasl_config: dict[str, str], unique_topic: str
) -> None:
    client = admin(gateway, admin_sasl_config)
    binding = AclBinding(
        ResourceType.TOPIC, unique_topic, ResourcePatternType.LITERAL,
        "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW,
    )  # fmt: skip
    assert list(wait(client.create_acls([binding])).values()) == [None]
    filt = AclBindingFilter(
        ResourceType.TOPIC, unique_topic, ResourcePatternType.LITERAL,
        None, None, AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip
    assert len(client.describe_acls(filt).result(timeout=30)) == 1
    [deleted_bindings] = wait(client.delete_acls([filt])).values()
    assert len(deleted_bindings) == 1

    expected = {
        "principal": "User:alice",
        "host": "*",
        "operation": "READ",
        "permission_type": "ALLOW",
        "resource_type": "TOPIC",
        "resource_name": unique_topic,
        "pattern_type": "LITERAL",
    }
    created = one(gateway.events("acl.created"), resource__id=f"TOPIC:{unique_topic}")
    assert created["details"] == {"bindings": [expected], "count": 1}
    assert created["authorization"]["checks"][0]["operation"] == "ALTER"
    described = [
        e for e in gateway.events("acl.described") if e["details"]["bindings"] == [expected]
    ]
    assert len(described) == 1
    deleted = one(gateway.events("acl.deleted"), resource__id=f"TOPIC:{unique_topic}")
    assert deleted["details"] == {"bindings": [expected], "count": 1}


def test_scram_credentials_changes_are_recorded_without_secrets(
    gateway: RunningGateway, admin_sasl_config: dict[str, str]
) -> None:
    user = f"carol-{uuid.uuid4().hex[:6]}"
    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), b"pa55word-xyz", b"salt-abc"
    )
    alterations: list[UserScramCredentialAlteration] = [upsert]
    client = admin(gateway, admin_sasl_config)
    results = client.alter_user_scram_credentials(alterations)
    assert list(wait(results).values()) == [None]

    event = one(gateway.events("auth.credentials_changed"), resource__id=user)
    assert event["resource"]["type"] == "user"
    assert event["details"] == {
        "changes": [{"operation": "upsert", "mechanism": "SCRAM-SHA-256", "iterations": 8192}]
    }
    log = gateway.log_bytes()
    assert b"pa55word-xyz" not in log and b"salt-abc" not in log


def test_delete_records_and_consumer_group_admin_are_recorded(
    gateway: RunningGateway, admin_sasl_config: dict[str, str], unique_topic: str
) -> None:
    from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition

    client = admin(gateway, admin_sasl_config)
    assert wait(client.create_topics([NewTopic(unique_topic, 1, 1)]))[unique_topic] is None
    producer = Producer(gateway.client(admin_sasl_config))
    for i in range(10):
        producer.produce(unique_topic, f"r{i}".encode())
    assert producer.flush(30) == 0
    wait(client.delete_records([TopicPartition(unique_topic, 0, 4)]))
    group = f"g-{unique_topic}"
    reset = ConsumerGroupTopicPartitions(group, [TopicPartition(unique_topic, 0, 2)])
    wait({0: client.alter_consumer_group_offsets([reset])[group]})
    assert list(wait(client.delete_consumer_groups([group])).values()) == [None]

    deleted = one(gateway.events("records.deleted"), resource__id=unique_topic)
    assert deleted["details"]["partitions"] == [
        {"partition": 0, "before_offset": 4, "low_watermark": 4, "error_code": 0}
    ]
    reset_event = one(gateway.events("group.offsets_reset"), resource__id=group)
    assert reset_event["details"]["partitions"] == [
        {"topic": unique_topic, "partition": 0, "offset": 2, "reason": "not_consumed",
         "previous_offset": None, "consumed_to": None, "error_code": 0}
    ]  # fmt: skip
    assert reset_event["actor"]["id"] == "User:admin"
    one(gateway.events("group.deleted"), resource__id=group)


def test_login_with_plain_learns_the_principal_and_never_records_the_password(
    gateway: RunningGateway, sasl_config: Any, kafka: KafkaInfo
) -> None:
    config = sasl_config("alice", mechanism="PLAIN")
    client = admin(gateway, config)
    client.list_topics(timeout=20)

    logins = gateway.events("auth.login")
    assert logins and {e["actor"]["id"] for e in logins} == {"User:alice"}
    assert {e["actor"]["auth"] for e in logins} == {"PLAIN"}
    assert kafka.user("alice").password.encode() not in gateway.log_bytes()


def test_wrong_password_is_recorded_as_auth_failed_for_the_claimed_user(
    gateway: RunningGateway, sasl_config: Any
) -> None:
    config = {**sasl_config("alice", password="not-her-password"), "socket.timeout.ms": "5000"}
    client = admin(gateway, config)
    with pytest.raises(KafkaException):
        client.list_topics(timeout=5)

    failed = gateway.events("auth.failed")
    assert failed, "no auth.failed recorded"
    assert {e["actor"]["id"] for e in failed} == {"User:alice"}
    assert failed[0]["action"]["result"] == "failure"
    assert failed[0]["action"]["error"] == "SASL_AUTHENTICATION_FAILED"
    assert not gateway.events("auth.login")


def test_reauthentication_on_an_open_connection_is_recorded_and_keeps_the_principal(
    gateway: RunningGateway,
    admin_config: dict[str, str],
    sasl_config: Any,
    kafka_tool: Callable[..., Any],
    unique_topic: str,
) -> None:
    """The local broker ends SCRAM-SHA-256 sessions after REAUTH_SCRAM_SHA_256_MS; the
    client re-authenticates on its open connections through the gateway (KIP-368)."""
    create_topic(admin_config, unique_topic)
    grant(kafka_tool, "User:alice", "--operation", "Write", "--operation", "Describe",
          "--topic", unique_topic)  # fmt: skip
    producer = Producer(
        gateway.client(
            {**sasl_config("alice", mechanism="SCRAM-SHA-256"), "client.id": "reauth-client",
             "linger.ms": "0"}
        )
    )  # fmt: skip
    errors: list[Any] = []
    lifetime = REAUTH_SCRAM_SHA_256_MS / 1000
    sends = 0
    deadline = time.monotonic() + 2.5 * lifetime
    while time.monotonic() < deadline:
        producer.produce(unique_topic, b"x", on_delivery=lambda err, msg: errors.append(err))
        sends += 1
        producer.poll(0.25)
    assert producer.flush(30) == 0
    assert len(errors) == sends and not any(errors)

    logins = [e for e in gateway.events("auth.login") if e["actor"]["client_id"] == "reauth-client"]
    assert {e["actor"]["id"] for e in logins} == {"User:alice"}
    renewed = [e for e in logins if e["details"]["reauthentication"]]
    first = [e for e in logins if not e["details"]["reauthentication"]]
    assert renewed, "no re-authentication recorded"
    # The connection producing for 2.5 session lifetimes renewed its session twice.
    assert first and len(renewed) >= 2
    assert all(0 < e["details"]["session_lifetime_ms"] <= REAUTH_SCRAM_SHA_256_MS for e in logins)
    produced = one(gateway.events("records.produced"), resource__id=unique_topic)
    assert produced["actor"]["id"] == "User:alice"
    assert produced["details"]["count"] == sends


def test_delegation_token_creation_and_login_with_it_are_recorded_as_its_owner(
    gateway: RunningGateway,
    kafka_tool: Callable[..., Any],
    client_properties: Callable[..., Path],
    tmp_path: Path,
) -> None:
    via = {"bootstrap": gateway.bootstrap}
    out = kafka_tool("org.apache.kafka.tools.DelegationTokenCommand", "--create",
                     "--max-life-time-period", "-1", "--renewer-principal", "User:bob",
                     "--command-config", str(client_properties("admin")), **via)  # fmt: skip
    token_id, hmac = out.stdout.strip().splitlines()[-1].split()[:2]

    created = one(gateway.events("auth.token_created"))
    assert created["actor"]["id"] == "User:admin"
    assert created["details"]["owner"] == "User:admin"
    assert created["details"]["renewers"] == ["User:bob"]
    assert created["details"]["token_id"] == token_id
    assert hmac not in json.dumps(created)  # the token's secret is never recorded

    # A client logging in with the token acts as its owner; SCRAM's user name is the id.
    token_login = tmp_path / "token.properties"
    token_login.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{token_id}" password="{hmac}" tokenauth="true";\n'
    )
    kafka_tool("org.apache.kafka.tools.TopicCommand", "--list",
               "--command-config", str(token_login), **via)  # fmt: skip
    logins = [
        e for e in gateway.events("auth.login") if e["details"].get("delegation_token") is True
    ]
    assert logins and {e["actor"]["id"] for e in logins} == {"User:admin"}
    assert {e["details"]["token_id"] for e in logins} == {token_id}
    assert hmac.encode() not in gateway.log_bytes()
