"""kaudit's broker auditor plugin loaded in a real broker: ACLs behave as Kafka's own, its
decisions become kaudit events, and requests that went around the gateway are reported.

This module runs its own broker (KRaft, SASL, ACLs, the plugin built with Maven from
broker-auditor/), shared by its tests: the `kafka` fixture is overridden here, so the
harness's fixtures (`kafka_tool`, `sasl_config`, `gateway_factory`...) use it.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
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
    UserScramCredentialUpsertion,
)
from gateway_fixtures import GatewayFactory

from kaudit.brokeraudit import BypassDetector, DecisionReader
from kaudit.brokeraudit.reader import BAD_HMAC, UNSIGNED
from kaudit.brokeraudit.service import bypass_detector, bypass_group
from kaudit.config import load_config, load_config_text
from kaudit.config.model import BrokerAuditorConfig, BypassConfig, KafkaLog
from kaudit.demo import gateway_demo
from kaudit.dev.broker_auditor import (
    DECISIONS_TOPIC,
    BrokerAuditorPlugin,
    broker_auditor_plugin,
)
from kaudit.dev.errors import KafkaStartError
from kaudit.dev.kafka import KafkaInfo, LocalKafka
from kaudit.log.kafka import STREAM_HEADER, KafkaLogReader
from kaudit.log.kafka.reader import HMAC_HEADER
from kaudit.log.segments import LogReader
from kaudit.recorder.core import Recorder
from kaudit.session import AuditSession
from support.kafka import ACL_COMMAND, KafkaTool, create_topic, grant, kafka_log, wait_for

pytestmark = pytest.mark.kafka


@dataclass
class AuditedBroker:
    """The module's broker and the plugin it runs (restartable with other settings)."""

    broker: LocalKafka
    plugin: BrokerAuditorPlugin
    info: KafkaInfo

    def restart(self, settings: dict[str, str] | None = None) -> KafkaInfo:
        self.broker.stop()
        self.broker.broker_auditor = BrokerAuditorPlugin(
            self.plugin.jar, {**self.plugin.settings, **(settings or {})}
        )
        self.info = self.broker.start()
        return self.info


@pytest.fixture(scope="module")
def audited_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditedBroker]:
    # Produce and fetch counts close every second, so a test sees them soon.
    plugin = broker_auditor_plugin({"aggregate.window.ms": "1000"})
    broker = LocalKafka(tmp_path_factory.mktemp("kafka-audited"), broker_auditor=plugin)
    info = broker.start()
    try:
        yield AuditedBroker(broker, plugin, info)
    finally:
        broker.stop()


@pytest.fixture
def kafka(audited_broker: AuditedBroker) -> KafkaInfo:
    """This module's broker, with the plugin loaded (overrides the run's broker)."""
    return audited_broker.info


def decision_config(kafka: KafkaInfo, topic: str | None = None) -> BrokerAuditorConfig:
    return BrokerAuditorConfig(
        bootstrap_servers=[kafka.bootstrap_servers],
        group=f"test-{uuid.uuid4().hex[:8]}",
        **({"topic": topic} if topic else {}),
    )


class Decisions:
    """The decision topic read into an audit log through a recorder."""

    def __init__(self, config: BrokerAuditorConfig, recorder: Recorder, log_dir: Path) -> None:
        self.reader = DecisionReader(config, recorder, poll_s=0.2)
        self.log_dir = log_dir

    def events(self) -> list[dict[str, Any]]:
        lines = [line for _, line in LogReader(self.log_dir).iter_lines()]
        return [orjson.loads(line) for line in lines]

    def wait(self, what: str, condition: Callable[[list[dict[str, Any]]], bool]) -> None:
        def read() -> bool:
            self.reader.poll_once()
            return condition(self.events())

        wait_for(read, what, timeout=60)


@pytest.fixture
def decisions(kafka: KafkaInfo, tmp_path: Path) -> Iterator[Decisions]:
    config = load_config_text(
        yaml.safe_dump({"data_dir": str(tmp_path / "audit")}), source="test", env={}
    )
    with AuditSession(config, source="broker") as session:
        found = Decisions(decision_config(kafka), session.recorder, config.log_dir)
        yield found
        found.reader.close()


def matching(events: list[dict[str, Any]], event_type: str, resource: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event_type"] == event_type and e["resource"]["id"] == resource]


def ok(futures: dict[Any, Any]) -> None:
    for future in futures.values():
        future.result(timeout=30)


def created(admin: AdminClient, topic: str) -> bool:
    """Whether `admin` created `topic`; False while a new ACL has not yet reached the
    authorizer (TOPIC_AUTHORIZATION_FAILED)."""
    try:
        ok(admin.create_topics([NewTopic(topic, 1, 1)]))
    except KafkaException as exc:
        if exc.args[0].code() == 29:
            return False
        raise
    return True


def test_acl_command_and_denials_behave_as_kafkas_own(
    kafka: KafkaInfo,
    kafka_tool: KafkaTool,
    decisions: Decisions,
    sasl_config: Callable[..., dict[str, str]],
    unique_topic: str,
) -> None:
    """AclCommand adds, lists and removes ACLs through the plugin; alice is allowed what
    they grant, bob is denied, and bob's denial is recorded with source broker."""
    create_topic(kafka.client_config(), unique_topic)
    grant(kafka_tool, "User:alice", "--operation", "Write", "--operation", "Describe",
          "--topic", unique_topic)  # fmt: skip
    listed = kafka_tool(ACL_COMMAND, "--list", "--topic", unique_topic).stdout
    assert "User:alice" in listed and "WRITE" in listed and "DESCRIBE" in listed

    def produce(user: str) -> KafkaException | None:
        producer = Producer({**sasl_config(user), "message.timeout.ms": 10000})
        errors: list[Any] = []
        producer.produce(unique_topic, b"x", on_delivery=lambda err, _: errors.append(err))
        producer.flush(15)
        return errors[0] if errors else KafkaException("no delivery report")

    def alice_may_write() -> bool:
        return produce("alice") is None

    wait_for(alice_may_write, "alice allowed to write by her new ACL")
    denied = produce("bob")
    assert denied is not None and denied.code() == 29  # TOPIC_AUTHORIZATION_FAILED

    kafka_tool(ACL_COMMAND, "--remove", "--force", "--allow-principal", "User:alice",
               "--operation", "Write", "--operation", "Describe",
               "--topic", unique_topic)  # fmt: skip
    assert "User:alice" not in kafka_tool(ACL_COMMAND, "--list", "--topic", unique_topic).stdout
    wait_for(lambda: produce("alice") is not None, "alice denied once her ACL is removed")

    decisions.wait(
        "bob's denial recorded",
        lambda events: any(
            e["actor"]["id"] == "User:bob" for e in matching(events, "access.denied", unique_topic)
        ),
    )
    events = decisions.events()
    bob = next(
        e for e in matching(events, "access.denied", unique_topic) if e["actor"]["id"] == "User:bob"
    )
    assert bob["context"]["source"] == "broker"
    assert bob["action"]["result"] == "denied"
    # The producer asks for the topic's metadata first: DESCRIBE is what bob is refused.
    (check,) = bob["authorization"]["checks"]
    assert check == {"operation": check["operation"], "resource": f"Topic:LITERAL:{unique_topic}",
                     "allowed": False, "error_code": 29}  # fmt: skip
    assert (check["operation"], bob["context"]["api"]["name"]) in {
        ("DESCRIBE", "Metadata"),
        ("WRITE", "Produce"),
    }
    assert bob["actor"]["ip_address"] == "127.0.0.1"
    assert bob["actor"]["client_id"] == "rdkafka"
    # alice's allowed writes are counted, not recorded one by one; her later denial is.
    decisions.wait(
        "alice's writes counted",
        lambda events: any(
            e["actor"]["id"] == "User:alice"
            for e in matching(events, "records.produced", unique_topic)
        ),
    )
    events = decisions.events()
    (counted, *_) = [
        e for e in matching(events, "records.produced", unique_topic)
        if e["actor"]["id"] == "User:alice"
    ]  # fmt: skip
    assert counted["details"]["requests"] >= 1
    assert counted["context"]["correlation_id"] is None
    assert counted["action"]["result"] == "unknown"
    assert counted["authorization"]["checks"][0]["operation"] == "WRITE"
    assert any(
        e["actor"]["id"] == "User:alice" for e in matching(events, "access.denied", unique_topic)
    )


def test_every_allowed_produce_request_is_counted_once(
    kafka: KafkaInfo,
    kafka_tool: KafkaTool,
    decisions: Decisions,
    sasl_config: Callable[..., dict[str, str]],
    unique_topic: str,
) -> None:
    """Produce requests from four connections of one client (one tally, counted by several
    request threads at once, across several windows) add up to exactly the requests made:
    none lost between windows, none counted twice."""
    create_topic(kafka.client_config(), unique_topic)
    grant(kafka_tool, "User:alice", "--operation", "Write", "--operation", "Describe",
          "--topic", unique_topic)  # fmt: skip
    one_request = {"linger.ms": 0, "batch.num.messages": 1, "retries": 0}

    def produce(count: int, producers: int) -> int:
        clients = [Producer({**sasl_config("alice"), **one_request}) for _ in range(producers)]
        delivered: list[Any] = []

        def report(err: Any, _msg: Any) -> None:
            if err is None:
                delivered.append(1)

        for i in range(count):
            clients[i % producers].produce(unique_topic, b"x", on_delivery=report)
        for client in clients:
            client.flush(30)
        return len(delivered)

    wait_for(lambda: produce(1, 1) == 1, "alice allowed to write by her new ACL")
    assert produce(400, 4) == 400

    def requests(events: list[dict[str, Any]]) -> int:
        return sum(
            e["details"]["requests"]
            for e in matching(events, "records.produced", unique_topic)
            if e["actor"]["id"] == "User:alice"
        )

    decisions.wait("alice's 401 produce requests counted", lambda events: requests(events) >= 401)
    assert requests(decisions.events()) == 401


def test_counting_produce_is_switched_off_and_on_at_runtime_and_both_switches_are_recorded(
    kafka: KafkaInfo,
    kafka_tool: KafkaTool,
    decisions: Decisions,
    sasl_config: Callable[..., dict[str, str]],
    admin_sasl_config: dict[str, str],
    unique_topic: str,
) -> None:
    """kaudit.audit.include.data.access is a dynamic broker config: set to false on the
    running broker, alice's produce requests are no longer counted; removed again, they
    are. The AlterConfigs that turned counting off and the one that turned it back on are
    both recorded (config.changed by the super user)."""
    create_topic(kafka.client_config(), unique_topic)
    grant(kafka_tool, "User:alice", "--operation", "Write", "--operation", "Describe",
          "--topic", unique_topic)  # fmt: skip
    producer = Producer({**sasl_config("alice"), "linger.ms": 0, "batch.num.messages": 1})

    def produce(count: int) -> int:
        delivered: list[Any] = []
        for _ in range(count):
            producer.produce(
                unique_topic, b"x", on_delivery=lambda err, _: delivered.append(err is None)
            )
        producer.flush(30)
        return sum(delivered)

    admin = AdminClient({**admin_sasl_config, "client.id": "switch-counting"})
    broker = ConfigResource(ResourceType.BROKER, "1")  # the local broker's node.id

    def switch(count: bool) -> None:
        operation = AlterConfigOpType.DELETE if count else AlterConfigOpType.SET
        entry = ConfigEntry("kaudit.audit.include.data.access", "false",
                            incremental_operation=operation)  # fmt: skip
        ok(admin.incremental_alter_configs([ConfigResource(
            ResourceType.BROKER, broker.name, incremental_configs=[entry])]))  # fmt: skip

        def applied() -> bool:
            # The broker answers DescribeConfigs once its authorizer was reconfigured.
            described = admin.describe_configs([broker])[broker].result(timeout=30)
            return ("kaudit.audit.include.data.access" in described) is not count

        wait_for(applied, f"counting {'on' if count else 'off'} on the broker")

    wait_for(lambda: produce(1) == 1, "alice allowed to write by her new ACL")
    switch(count=False)
    try:
        assert produce(50) == 50
    finally:
        switch(count=True)
    assert produce(7) == 7

    def requests(events: list[dict[str, Any]]) -> int:
        return sum(
            e["details"]["requests"]
            for e in matching(events, "records.produced", unique_topic)
            if e["actor"]["id"] == "User:alice"
        )

    def switches(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            e for e in events
            if e["event_type"] == "config.changed" and e["actor"]["client_id"] == "switch-counting"
        ]  # fmt: skip

    decisions.wait(
        "the requests made while counting was on counted, and both switches recorded",
        lambda events: requests(events) >= 8 and len(switches(events)) >= 2,
    )
    assert requests(decisions.events()) == 8
    assert {e["actor"]["id"] for e in switches(decisions.events())} == {"User:admin"}


def test_over_plaintext_the_broker_refuses_to_start_until_the_auditors_principal_is_named(
    audited_broker: AuditedBroker, tmp_path: Path
) -> None:
    """The auditor's producer on a PLAINTEXT listener is User:ANONYMOUS to the broker, as
    is every client there; without kaudit.audit.principal naming it, the broker does not
    start, and its log says what to set."""
    unnamed = BrokerAuditorPlugin(audited_broker.plugin.jar, {"principal": ""})
    broker = LocalKafka(tmp_path / "kafka", broker_auditor=unnamed)
    try:
        with pytest.raises(KafkaStartError, match=r"kaudit\.audit\.principal=User:ANONYMOUS"):
            broker.start()
    finally:
        broker.stop()


def test_management_operations_direct_to_the_broker_are_recorded(
    kafka: KafkaInfo, kafka_tool: KafkaTool, decisions: Decisions, alice_config: dict[str, str]
) -> None:
    """Each admin operation alice makes straight to the broker becomes the event the
    gateway would record, with her principal, the resource, and an unknown outcome (the
    authorizer decides before the operation runs)."""
    stem = f"mgmt-{uuid.uuid4().hex[:8]}"
    topic, group, user = f"{stem}-topic", f"{stem}-group", f"{stem}-user"
    grant(kafka_tool, "User:alice", "--operation", "All", "--topic", stem,
          "--group", stem, "--resource-pattern-type", "prefixed")  # fmt: skip
    grant(kafka_tool, "User:alice", "--operation", "Alter", "--operation", "AlterConfigs",
          "--cluster")  # fmt: skip
    admin = AdminClient({**alice_config, "client.id": "mgmt-direct"})
    wait_for(lambda: created(admin, topic), "alice allowed to create topics by her new ACL")
    ok(admin.create_partitions([NewPartitions(topic, 2)]))
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)
    ])  # fmt: skip
    ok(admin.incremental_alter_configs([resource]))
    ok(admin.delete_records([TopicPartition(topic, 0, 0)]))
    binding = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:bob",
                         "*", AclOperation.READ, AclPermissionType.ALLOW)  # fmt: skip
    ok(admin.create_acls([binding]))
    ok(admin.delete_acls([AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL,
                                           "User:bob", "*", AclOperation.READ,
                                           AclPermissionType.ALLOW)]))  # fmt: skip
    credential = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096)
    ok(admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(user, credential, b"secret")]
    ))  # fmt: skip
    ok(admin.delete_topics([topic]))
    # No such group: the broker still authorizes the deletion first, and records it.
    with pytest.raises(KafkaException):
        ok(admin.delete_consumer_groups([group]))

    expected = {
        ("topic.created", topic),
        ("topic.partitions_changed", topic),
        ("topic.config_changed", topic),
        ("records.deleted", topic),
        ("acl.created", "kafka-cluster"),
        ("acl.deleted", "kafka-cluster"),
        ("auth.credentials_changed", "kafka-cluster"),
        ("topic.deleted", topic),
        ("group.deleted", group),
    }

    def recorded(events: list[dict[str, Any]]) -> bool:
        seen = {(e["event_type"], e["resource"]["id"]) for e in events}
        return expected <= seen

    decisions.wait("every management operation recorded", recorded)
    for event_type, resource_id in expected:
        found = [
            e for e in matching(decisions.events(), event_type, resource_id)
            if e["actor"]["client_id"] == "mgmt-direct"
        ]  # fmt: skip
        assert found, (event_type, resource_id)
        event = found[0]
        assert event["actor"]["id"] == "User:alice"
        assert event["context"]["source"] == "broker"
        assert event["action"]["result"] == "unknown"
        assert event["authorization"]["allowed"] is True
        assert event["context"]["correlation_id"] is not None


def test_a_client_id_like_the_auditors_hides_nothing(
    kafka_tool: KafkaTool, decisions: Decisions, alice_config: dict[str, str]
) -> None:
    """The client id is the client's choice: alice calling herself kaudit-broker-auditor-x
    to create and delete a topic is recorded, and so is her write into the auditor's
    decision topic (recorded on its own, not just counted)."""
    stem = f"own-{uuid.uuid4().hex[:8]}"
    topic = f"{stem}-topic"
    grant(kafka_tool, "User:alice", "--operation", "All", "--topic", stem,
          "--resource-pattern-type", "prefixed")  # fmt: skip
    grant(kafka_tool, "User:alice", "--operation", "Write", "--topic", DECISIONS_TOPIC)
    disguise = {**alice_config, "client.id": "kaudit-broker-auditor-x"}
    admin = AdminClient(disguise)
    wait_for(lambda: created(admin, topic), "alice allowed to create topics by her new ACL")
    ok(admin.delete_topics([topic]))
    producer = Producer({**disguise, "message.timeout.ms": 10000})
    errors: list[Any] = []
    forged = orjson.dumps({"note": "not the auditor's"})  # JSON, yet no decision record
    producer.produce(DECISIONS_TOPIC, forged, on_delivery=lambda e, _: errors.append(e))
    producer.flush(15)
    assert errors == [None]

    def disguised(events: list[dict[str, Any]], event_type: str, resource: str) -> bool:
        return any(
            e["actor"]["id"] == "User:alice" and e["actor"]["client_id"] == disguise["client.id"]
            for e in matching(events, event_type, resource)
        )

    decisions.wait(
        "alice's operations under the auditor's client id recorded",
        lambda events: (
            disguised(events, "topic.created", topic)
            and disguised(events, "topic.deleted", topic)
            and disguised(events, "records.produced", DECISIONS_TOPIC)
        ),
    )
    (write,) = [e for e in matching(decisions.events(), "records.produced", DECISIONS_TOPIC)
                if e["actor"]["id"] == "User:alice"]  # fmt: skip
    assert write["context"]["correlation_id"] is not None
    assert write["authorization"]["checks"][0]["operation"] == "WRITE"


def test_a_super_users_management_operations_are_recorded(
    admin_sasl_config: dict[str, str], decisions: Decisions
) -> None:
    """A super user's credential used straight at the broker (admin over SASL) shows: the
    topic it creates and deletes is recorded with its principal (on the resource the
    authorizer is asked about: the cluster, whose CREATE and DELETE cover every topic)."""
    topic = f"super-{uuid.uuid4().hex[:8]}"
    client_id = f"stolen-admin-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({**admin_sasl_config, "client.id": client_id})
    ok(admin.create_topics([NewTopic(topic, 1, 1)]))
    ok(admin.delete_topics([topic]))

    def by_admin(events: list[dict[str, Any]]) -> set[str]:
        return {
            e["event_type"]
            for e in events
            if e["actor"]["id"] == "User:admin" and e["actor"]["client_id"] == client_id
        }

    decisions.wait(
        "admin's topic created and deleted recorded",
        lambda events: {"topic.created", "topic.deleted"} <= by_admin(events),
    )


def test_the_inter_broker_listener_hides_only_the_brokers_principal(
    audited_broker: AuditedBroker, tmp_path: Path
) -> None:
    """With the brokers' principal named as another than the PLAINTEXT listener's, a client
    on that listener (the inter-broker one) is recorded like any other: the listener's name
    proves nothing. The plugin's own writes to its topic, over that same listener, are
    still not recorded."""
    info = audited_broker.restart({"broker.principals": "User:broker-elsewhere"})
    try:
        topic = f"interbroker-{uuid.uuid4().hex[:8]}"
        create_topic(info.client_config(), topic)
        client_id = f"plaintext-{uuid.uuid4().hex[:8]}"
        plaintext = AdminClient({**info.client_config(), "client.id": client_id})
        ok(plaintext.delete_topics([topic]))
        config = load_config_text(
            yaml.safe_dump({"data_dir": str(tmp_path / "audit")}), source="test", env={}
        )
        with AuditSession(config, source="broker") as session:
            found = Decisions(decision_config(info), session.recorder, config.log_dir)
            try:
                found.wait(
                    "the PLAINTEXT client's deletion recorded",
                    lambda events: any(
                        e["event_type"] == "topic.deleted"
                        and e["actor"]["id"] == "User:ANONYMOUS"
                        and e["actor"]["client_id"] == client_id
                        for e in events
                    ),
                )
                own = [
                    e for e in matching(found.events(), "records.produced", DECISIONS_TOPIC)
                    if e["actor"]["id"] == "User:ANONYMOUS"
                ]  # fmt: skip
                assert own == []
            finally:
                found.reader.close()
    finally:
        audited_broker.restart()


def test_with_an_hmac_key_a_decision_not_from_the_auditor_is_refused(
    audited_broker: AuditedBroker,
    tmp_path: Path,
    admin_sasl_config: dict[str, str],
    bob_config: dict[str, str],
) -> None:
    """With the same HMAC key on the broker and in kaudit, a forged decision written into
    the topic by someone allowed to write there (no HMAC, or a wrong one) is refused: not
    recorded, counted, and noted once per reason as `audit.degraded`; the auditor's own
    records (bob's denial) are taken."""
    key = tmp_path / "decisions.key"
    key.write_text(secrets.token_hex(32) + "\n", encoding="utf-8")
    topic = f"__kaudit_decisions_{uuid.uuid4().hex[:8]}"
    info = audited_broker.restart({"topic": topic, "hmac.key.file": str(key)})
    try:
        client_id = f"signed-{uuid.uuid4().hex[:8]}"
        bob = AdminClient({**bob_config, "client.id": client_id})
        with pytest.raises(KafkaException):
            ok(bob.delete_topics([f"nope-{uuid.uuid4().hex[:8]}"]))
        forged = orjson.dumps({
            "kind": "decision", "id": "1-forged-1", "node": 1, "role": "broker",
            "time_ms": int(time.time() * 1000), "correlation_id": 1,
            "principal": "User:mallory", "client_address": "10.9.9.9", "listener": "SASL",
            "security_protocol": "SASL_PLAINTEXT", "client_id": "mallory", "api_key": 19,
            "api_version": 7, "operation": "CREATE", "resource_type": "TOPIC",
            "pattern_type": "LITERAL", "resource_name": "alibi", "allowed": True,
        })  # fmt: skip
        producer = Producer(admin_sasl_config)
        errors: list[Any] = []
        producer.produce(topic, forged, on_delivery=lambda e, _: errors.append(e))
        producer.produce(topic, forged, headers=[(HMAC_HEADER, b"00" * 32)],
                         on_delivery=lambda e, _: errors.append(e))  # fmt: skip
        producer.flush(15)
        assert errors == [None, None]
        config = load_config_text(
            yaml.safe_dump({"data_dir": str(tmp_path / "audit")}), source="test", env={}
        )
        section = decision_config(info, topic).model_copy(update={"hmac_key_file": str(key)})
        with AuditSession(config, source="broker") as session:
            found = Decisions(section, session.recorder, config.log_dir)
            try:

                def notes(events: list[dict[str, Any]]) -> list[str]:
                    return [e["details"]["reason"] for e in events
                            if e["event_type"] == "audit.degraded"
                            and e["actor"]["id"] == "kaudit-broker-decision-reader"]  # fmt: skip

                found.wait(
                    "bob's denial taken and both forgeries refused",
                    lambda events: (
                        len(notes(events)) == 2
                        and any(
                            e["actor"]["client_id"] == client_id
                            for e in events
                            if e["event_type"] == "access.denied"
                        )
                    ),
                )
                events = found.events()
                assert sorted(notes(events)) == sorted([UNSIGNED, BAD_HMAC])
                assert not [e for e in events if e["actor"]["id"] == "User:mallory"]
                assert found.reader.refused == {UNSIGNED: 1, BAD_HMAC: 1}
            finally:
                found.reader.close()
    finally:
        audited_broker.restart()


@dataclass
class BypassRig:
    """A gateway in front of the broker, and the decisions recorded into the gateway's own
    log (one writer: its session): the local log, or a Kafka log topic on the broker."""

    gw: Any
    reader: DecisionReader
    kafka_info: KafkaInfo
    kafka_log: KafkaLog | None
    ahead: list[float]
    """The detectors' clock is moved ahead by this (seconds) to end their wait at once."""

    def detector(self, **settings: Any) -> BypassDetector:
        """The bypass detector `kaudit run` would start for the gateway's configuration with
        a broker_auditor: section (and bypass `settings`); a fresh one resumes from the
        first one's cursor."""
        bypass = BypassConfig(window_seconds=20, **settings)
        section = self.reader.config.model_copy(update={"bypass": bypass})
        config = self.gw.session.config.model_copy(update={"broker_auditor": section})
        found = bypass_detector(config, self.gw.session.recorder)
        assert found is not None
        found.clock = lambda: time.time() + self.ahead[0]
        return found

    def events(self) -> list[dict[str, Any]]:
        if self.kafka_log is None:
            return list(self.gw.events())
        self.gw.thread.call(self.gw.gateway.flush_records)
        self.gw.session.flush(10)
        reader = KafkaLogReader(self.kafka_log, group=None)
        try:
            return [orjson.loads(line) for line in reader.lines()]
        finally:
            reader.close()


@pytest.fixture(params=["local", "kafka"])
def bypass_rig(
    request: pytest.FixtureRequest, gateway_factory: GatewayFactory, kafka: KafkaInfo
) -> Iterator[BypassRig]:
    audit: dict[str, Any] = {}
    if request.param == "kafka":
        topic = f"audit-log-{uuid.uuid4().hex[:8]}"
        audit["log"] = kafka_log(kafka.bootstrap_servers, topic, {"security_protocol": "PLAINTEXT"})
    gw = gateway_factory(audit=audit)
    log_config = gw.session.config.audit.log
    reader = DecisionReader(decision_config(kafka), gw.session.recorder, poll_s=0.2)
    found = BypassRig(
        gw, reader, kafka, log_config if isinstance(log_config, KafkaLog) else None, [0.0]
    )
    yield found
    reader.close()


def test_through_the_gateway_is_matched_and_direct_is_a_bypass(
    bypass_rig: BypassRig, kafka_tool: KafkaTool, alice_config: dict[str, str]
) -> None:
    """The same operation through the gateway is matched with the broker's record (no
    bypass event); made directly against the broker, it is `access.bypassed_gateway`
    with alice's principal and address. On a local log and on a Kafka log; a fresh
    detector resumes from the first one's durable cursor."""
    gw, reader = bypass_rig.gw, bypass_rig.reader
    detector = bypass_rig.detector()
    stem = f"bypass-{uuid.uuid4().hex[:8]}"
    via, direct = f"{stem}-via", f"{stem}-direct"
    grant(kafka_tool, "User:alice", "--operation", "Create", "--operation", "Describe",
          "--topic", stem, "--resource-pattern-type", "prefixed")  # fmt: skip

    def create(settings: dict[str, str], topic: str) -> bool:
        return created(AdminClient(settings), topic)

    wait_for(lambda: create(gw.client({**alice_config, "client.id": "via-gw"}), via),
             "alice's topic created through the gateway")  # fmt: skip
    assert create({**alice_config, "client.id": "straight"}, direct)

    def broker_saw_both() -> bool:
        reader.poll_once()
        events = bypass_rig.events()  # flushes the gateway's records
        detector.poll()
        broker = [e for e in events if e["context"]["source"] == "broker"]
        gateway = [e for e in events if e["context"]["source"] == "gateway"]
        # The gateway's record of the creation through it too: the detector below is
        # moved past its window, where a broker record still unmatched is a bypass.
        return all(matching(broker, "topic.created", t) for t in (via, direct)) and bool(
            matching(gateway, "topic.created", via)
        )

    wait_for(broker_saw_both, "both creations recorded by the broker auditor", timeout=60)
    detector.poll()
    assert detector.matched >= 1
    detector.close()
    resumed = bypass_rig.detector()
    bypass_rig.ahead[0] = 60.0  # past the window: whatever is unmatched now is a bypass
    resumed.poll()
    resumed.close()
    if bypass_rig.kafka_log is not None:  # the cursor: the detector's own consumer group
        cursor = KafkaLogReader(bypass_rig.kafka_log, group=bypass_group(reader.config.group))
        try:
            # Saved in its own group. Where depends on what is still waiting: a
            # produce/fetch count holds the cursor before it for its window, so the
            # saved position may still be the start of a partition.
            assert cursor.committed_offsets()
        finally:
            cursor.close()
    events = bypass_rig.events()
    bypasses = [e for e in events if e["event_type"] == "access.bypassed_gateway"]
    assert [e["resource"]["id"] for e in bypasses if e["resource"]["id"].startswith(stem)] == [
        direct
    ]
    bypass = next(e for e in bypasses if e["resource"]["id"] == direct)
    assert bypass["actor"]["id"] == "User:alice"
    assert bypass["actor"]["ip_address"] == "127.0.0.1"
    assert bypass["actor"]["client_id"] == "straight"
    assert bypass["details"]["reason"] == "no gateway recorded this request"
    gateway_created = matching(events, "topic.created", via)
    assert {e["context"]["source"] for e in gateway_created} == {"gateway", "broker"}


def test_a_stolen_credential_producing_directly_is_a_bypass_beside_the_apps_traffic(
    bypass_rig: BypassRig, kafka_tool: KafkaTool, alice_config: dict[str, str]
) -> None:
    """alice's app produces through the gateway (client id billing-app); her credential,
    stolen, produces to the same topic straight at the broker, once with a client id of
    its own and once with the app's. Neither hides behind the app's count: each is
    `access.bypassed_gateway`, the second for what the gateway did not see, though the
    broker sees it come from the gateway's own address (listed in `gateway_addresses`, as
    behind SNAT). On a Kafka log,
    gateway events forged into the log topic (no stream header; a sequence number the
    gateway's stream already used) are not taken as evidence."""
    gw, reader = bypass_rig.gw, bypass_rig.reader
    topic = f"payments-{uuid.uuid4().hex[:8]}"
    create_topic(bypass_rig.kafka_info.client_config(), topic)
    grant(kafka_tool, "User:alice", "--operation", "Write", "--operation", "Describe",
          "--topic", topic)  # fmt: skip

    def produce(settings: dict[str, str], requests: int) -> None:
        producer = Producer({**settings, "message.timeout.ms": 20000})
        for n in range(requests):
            producer.produce(topic, f"m{n}".encode())
            assert producer.flush(20) == 0  # one Produce request each
        producer.flush(20)

    produce(gw.client({**alice_config, "client.id": "billing-app"}), 5)
    produce({**alice_config, "client.id": "thief"}, 30)
    produce({**alice_config, "client.id": "billing-app"}, 100)
    # The gateway's address listed, as with SNAT a direct client shares it: not enough.
    detector = bypass_rig.detector(gateway_addresses=["127.0.0.1"])

    def counted(events: list[dict[str, Any]], source: str) -> dict[str | None, int]:
        out: dict[str | None, int] = {}
        for e in matching(events, "records.produced", topic):
            if e["context"]["source"] == source:
                client = e["actor"]["client_id"]
                out[client] = out.get(client, 0) + e["details"]["requests"]
        return out

    def all_counted() -> bool:
        reader.poll_once()
        events = bypass_rig.events()  # flushes the gateway's records
        detector.poll()
        return counted(events, "broker") == {"billing-app": 105, "thief": 30} and counted(
            events, "gateway"
        ) == {"billing-app": 5}

    wait_for(all_counted, "the produce counts of the broker and the gateway", timeout=60)
    if bypass_rig.kafka_log is not None:
        forge_gateway_counts(bypass_rig.kafka_log, bypass_rig.kafka_info, topic)
    bypass_rig.ahead[0] = 2000.0  # past every wait, produce/fetch counts' included
    detector.poll()
    detector.close()
    bypasses = matching(bypass_rig.events(), "access.bypassed_gateway", topic)
    by_client: dict[str, list[dict[str, Any]]] = {}
    for e in bypasses:
        by_client.setdefault(e["actor"]["client_id"], []).append(e)
    assert set(by_client) == {"thief", "billing-app"}
    assert sum(e["details"]["unmatched_requests"] for e in by_client["thief"]) == 30
    assert {e["details"]["reason"] for e in by_client["thief"]} == {
        "no gateway recorded this request"
    }
    # The 100 direct requests share the app's client id and (here) its address; counted by
    # the broker in 1 s windows, each window with more than the tolerance is reported.
    mimic = by_client["billing-app"]
    assert sum(e["details"]["unmatched_requests"] for e in mimic) >= 70
    assert all(e["actor"]["id"] == "User:alice" for e in bypasses)
    if bypass_rig.kafka_log is not None:
        assert detector.evidence.rejected == {
            "no writer stream header": 1,
            "a second line for a sequence number": 1,
        }


@pytest.mark.parametrize("bypass_rig", ["local"], indirect=True)
@pytest.mark.parametrize("client", ["librdkafka", "java"])
def test_an_idle_consumer_through_the_gateway_is_no_bypass(
    bypass_rig: BypassRig,
    kafka_tool: KafkaTool,
    alice_config: dict[str, str],
    client_properties: Callable[..., Path],
    client: str,
) -> None:
    """A consumer reading an empty topic through the gateway polls the broker again and
    again with nothing to return; the broker counts each fetch, and so does the gateway
    (fetches that returned nothing included, and the Java client's incremental fetch
    sessions, whose idle fetches name no topic), so none of them is a bypass."""
    gw, reader = bypass_rig.gw, bypass_rig.reader
    topic = f"quiet-{uuid.uuid4().hex[:8]}"
    create_topic(bypass_rig.kafka_info.client_config(), topic)
    group = f"idle-{uuid.uuid4().hex[:8]}"  # librdkafka wants one, even to assign()
    grant(kafka_tool, "User:alice", "--operation", "Read", "--operation", "Describe",
          "--topic", topic, "--group", group)  # fmt: skip
    detector = bypass_rig.detector()

    def fetches(events: list[dict[str, Any]], source: str) -> int:
        return sum(
            e["details"]["requests"]
            for e in matching(events, "records.consumed", topic)
            if e["context"]["source"] == source and e["actor"]["client_id"] == "idle-reader"
        )

    def broker_counted(poll: Callable[[], None]) -> Callable[[], bool]:
        def counted() -> bool:
            poll()
            reader.poll_once()
            events = bypass_rig.events()  # flushes the gateway's records
            detector.poll()
            return fetches(events, "broker") >= 20

        return counted

    if client == "java":
        # Assigned, not subscribed: no group; it polls for 5 s with nothing to read.
        kafka_tool("org.apache.kafka.tools.consumer.ConsoleConsumer", "--topic", topic,
                   "--partition", "0", "--offset", "earliest", "--timeout-ms", "5000",
                   "--consumer-property", "client.id=idle-reader",
                   "--consumer-property", "fetch.max.wait.ms=100",
                   "--command-config", str(client_properties("alice")),
                   bootstrap=gw.bootstrap, check=False)  # fmt: skip
        wait_for(broker_counted(lambda: None), "idle fetches counted by the broker")
    else:
        consumer = Consumer(gw.client({
            **alice_config, "client.id": "idle-reader", "group.id": group,
            "enable.auto.commit": False, "fetch.wait.max.ms": 100,
        }))  # fmt: skip
        consumer.assign([TopicPartition(topic, 0, 0)])

        def poll() -> None:
            message = consumer.poll(0.2)
            assert message is None or message.error() is not None, "nothing to read, ever"

        try:
            wait_for(broker_counted(poll), "idle fetches counted by the broker")
        finally:
            consumer.close()
    reader.poll_once()
    bypass_rig.ahead[0] = 2000.0  # past every wait, produce/fetch counts' included
    detector.poll()
    detector.close()
    events = bypass_rig.events()
    # The decision topic holds the module's earlier tests too: this test's topic only.
    bypasses = matching(events, "access.bypassed_gateway", topic)
    assert bypasses == [], [(e["resource"], e["details"]) for e in bypasses]
    consumed = matching(events, "records.consumed", topic)
    gateway_counts = [e for e in consumed if e["context"]["source"] == "gateway"]
    assert fetches(events, "gateway") >= 20
    assert all(e["details"]["count"] == 0 for e in gateway_counts)


def forge_gateway_counts(log: KafkaLog, kafka: KafkaInfo, topic: str) -> None:
    """Write into the Kafka log topic, as anyone allowed to write to it could, two copies
    of the gateway's count of billing-app made out for the thief: one without the stream
    header, one with the gateway's stream header and a sequence number it already used."""
    reader = KafkaLogReader(log, group=None)
    try:
        real = next(
            r for r in reader.records_from({})
            if b'"records.produced"' in r.line and b'"source":"gateway"' in r.line
            and topic.encode() in r.line
        )  # fmt: skip
    finally:
        reader.close()
    forged = real.line.replace(b'"client_id":"billing-app"', b'"client_id":"thief"').replace(
        b'"requests":5', b'"requests":5000'
    )
    assert forged != real.line and real.stream
    producer = Producer(kafka.client_config())
    producer.produce(log.topic, forged, partition=real.partition)
    producer.produce(
        log.topic, forged, partition=real.partition, headers={STREAM_HEADER: real.stream}
    )
    assert producer.flush(20) == 0


def broker_audit_config(tmp_path: Path, kafka: KafkaInfo) -> Path:
    path = tmp_path / "kaudit.yaml"
    document = {
        "data_dir": str(tmp_path / "data"),
        "broker_auditor": {
            "bootstrap_servers": [kafka.bootstrap_servers],
            "group": f"cli-{uuid.uuid4().hex[:8]}",
        },
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def logged(data_dir: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for _, line in LogReader(data_dir / "log").iter_lines()]


def deny_bob(bob_config: dict[str, str], topic: str) -> None:
    admin = AdminClient(bob_config)  # referenced until its futures resolve
    with pytest.raises(KafkaException):
        ok(admin.create_topics([NewTopic(topic, 1, 1)]))


def test_kaudit_run_and_broker_audit_record_the_decisions(
    kafka: KafkaInfo, tmp_path: Path, bob_config: dict[str, str]
) -> None:
    """`kaudit run` with a broker_auditor: section records decisions as they come until
    SIGTERM; `kaudit broker-audit --once` reads the topic to its end and exits."""
    topic = f"cli-{uuid.uuid4().hex[:8]}"
    config = broker_audit_config(tmp_path, kafka)
    kaudit = [sys.executable, "-m", "kaudit.cli"]
    service = subprocess.Popen(
        [*kaudit, "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deny_bob(bob_config, topic)
        data = tmp_path / "data"
        wait_for(
            lambda: (
                (data / "log").is_dir()
                and any(
                    e["event_type"] == "access.denied" and e["resource"]["id"] == topic
                    for e in logged(data)
                )
            ),
            "kaudit run to record bob's denial",
            timeout=60,
        )
    finally:
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=60)
    assert service.returncode == 0, stderr

    again = tmp_path / "once"
    again.mkdir()
    once = subprocess.run(
        [*kaudit, "broker-audit", "--once", "--config",
         str(broker_audit_config(again, kafka))],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert once.returncode == 0, once.stderr
    assert "gateway bypasses" in once.stderr
    events = logged(again / "data")
    assert any(e["event_type"] == "access.denied" and e["resource"]["id"] == topic for e in events)
    assert {e["context"]["source"] for e in events} == {"broker"}


def test_a_broker_restart_loses_no_acknowledged_record(
    audited_broker: AuditedBroker, decisions: Decisions, bob_config: dict[str, str]
) -> None:
    """Denials the plugin had acknowledged before the broker stopped are read after it
    starts again, as are those made after."""
    stem = f"restart-{uuid.uuid4().hex[:8]}"

    def deny(topic: str) -> None:
        admin = AdminClient(bob_config)  # referenced until its futures resolve
        with pytest.raises(KafkaException):
            ok(admin.create_topics([NewTopic(topic, 1, 1)]))

    before = [f"{stem}-before-{i}" for i in range(3)]
    for topic in before:
        deny(topic)
    probe = DecisionReader(decision_config(audited_broker.info), decisions.reader.recorder)
    try:
        # Acknowledged: on the decision topic (read by a group of its own, discarded).
        seen: set[str] = set()

        def acknowledged() -> bool:
            for record in probe.reader.poll_batch(500, 0.5):
                seen.add(orjson.loads(record.line).get("resource_name", ""))
            return set(before) <= seen

        wait_for(acknowledged, "the denials acknowledged on the decision topic")
    finally:
        probe.close()
    audited_broker.restart()
    after = [f"{stem}-after-{i}" for i in range(2)]
    for topic in after:
        deny(topic)
    decisions.wait(
        "every denial from before and after the restart",
        lambda events: (
            {t for t in [*before, *after] if matching(events, "access.denied", t)}
            == {*before, *after}
        ),
    )


def dropped(events: list[dict[str, Any]]) -> int:
    return sum(e["details"]["dropped"] for e in events if e["event_type"] == "audit.degraded")


def test_a_full_queue_counts_its_drops(
    audited_broker: AuditedBroker, tmp_path: Path, bob_config: dict[str, str]
) -> None:
    """With a queue of two and a decision topic not there yet (so nothing is sent),
    further decisions are dropped and counted; once the topic exists the plugin reports
    how many, which kaudit records as `audit.degraded`."""
    topic = f"__kaudit_decisions_{uuid.uuid4().hex[:8]}"
    info = audited_broker.restart({"queue.capacity": "2", "topic": topic, "topic.create": "false"})
    try:
        bob = AdminClient({**bob_config, "bootstrap.servers": info.sasl_bootstrap_servers})
        for i in range(8):
            with pytest.raises(KafkaException):
                ok(bob.create_topics([NewTopic(f"drops-{i}", 1, 1)]))
        create_topic(info.client_config(), topic)
        config = load_config_text(
            yaml.safe_dump({"data_dir": str(tmp_path / "audit")}), source="test", env={}
        )
        with AuditSession(config, source="broker") as session:
            found = Decisions(decision_config(info, topic), session.recorder, config.log_dir)
            try:
                found.wait(
                    "the drops reported",
                    lambda events: dropped(events) >= 6,
                )
                degraded = [e for e in found.events() if e["event_type"] == "audit.degraded"]
                assert degraded[-1]["details"]["queue_capacity"] == 2
                assert degraded[-1]["context"]["source"] == "broker"
                denied = [e for e in found.events() if e["event_type"] == "access.denied"]
                assert 1 <= len(denied) <= 2  # what the queue held
            finally:
                found.reader.close()
    finally:
        audited_broker.restart()


def test_local_kafka_start_broker_auditor_builds_the_plugin_and_finds_the_broker_running(
    audited_broker: AuditedBroker,
) -> None:
    """`kaudit local-kafka start --broker-auditor` on this module's directory: the plugin
    is built (cached) and the broker already running there is reported, not restarted."""
    done = subprocess.run(
        [sys.executable, "-m", "kaudit.cli", "local-kafka", "start", "--broker-auditor",
         "--dir", str(audited_broker.broker.dir)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "already running" in done.stderr
    assert json.loads(done.stdout)["pid"] == audited_broker.broker.status().pid
    properties = audited_broker.broker.config_file.read_text(encoding="utf-8")
    assert "authorizer.class.name=kaudit.broker.AuditingAuthorizer" in properties


def test_the_demo_catches_alice_going_around_the_gateway(
    kafka: KafkaInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kaudit demo`'s gateway part on a broker running the plugin: beside the gateway's
    events, the broker's, and alice's topic created straight at the broker recorded as
    `access.bypassed_gateway` (her topic created through the gateway is matched)."""
    config_path = gateway_demo(tmp_path, kafka, broker_auditor=True)
    config = load_config(config_path)
    events = logged(config.data_path)
    bypasses = [e for e in events if e["event_type"] == "access.bypassed_gateway"]
    shadow = [e for e in bypasses if e["resource"]["id"].endswith("-shadow")]
    assert len(shadow) == 1, bypasses
    assert shadow[0]["actor"]["id"] == "User:alice"
    assert shadow[0]["actor"]["client_id"] == "alice-laptop"
    assert not [e for e in bypasses if e["resource"]["id"].endswith("-archive")]
    archive = [e for e in events if e["event_type"] == "topic.created"
               and e["resource"]["id"].endswith("-archive")]  # fmt: skip
    assert {e["context"]["source"] for e in archive} == {"gateway", "broker"}
    out = capsys.readouterr().out
    assert "access.bypassed_gateway" in out and "-shadow" in out


def test_a_denial_is_recorded_once_per_request_and_resource(
    admin_config: dict[str, str], decisions: Decisions, bob_config: dict[str, str]
) -> None:
    """The controller checks DESCRIBE (whether to reveal the topic) and then DELETE for
    bob's DeleteTopics: one denial with both checks. His second request is denied again,
    and recorded again."""
    topic = f"once-{uuid.uuid4().hex[:8]}"
    create_topic(admin_config, topic)
    admin = AdminClient({**bob_config, "client.id": "denied-once"})
    for _ in range(2):
        with pytest.raises(KafkaException):
            ok(admin.delete_topics([topic]))

    def denials(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in matching(events, "access.denied", topic)
                if e["actor"]["client_id"] == "denied-once"]  # fmt: skip

    decisions.wait("both requests' denials", lambda events: len(denials(events)) >= 2)
    # A third request marks the end: what the first two made is read by then.
    with pytest.raises(KafkaException):
        ok(admin.delete_topics([topic]))
    decisions.wait("the third request's denial", lambda events: len(denials(events)) >= 3)
    events = decisions.events()
    found = denials(events)
    assert len(found) == 3
    assert len({e["context"]["correlation_id"] for e in found}) == 3
    deleted = [e for e in matching(events, "topic.deleted", topic)
               if e["actor"]["client_id"] == "denied-once"]  # fmt: skip
    assert len(deleted) == 3
    for event in deleted:
        checks = event["authorization"]["checks"]
        assert [(c["operation"], c["allowed"]) for c in checks] == [
            ("DESCRIBE", False),
            ("DELETE", False),
        ]
        assert event["action"]["result"] == "denied"
