"""Re-authentication (KIP-368) through the gateway, against the real broker: the local
broker ends SCRAM-SHA-256 sessions after REAUTH_SCRAM_SHA_256_MS, and librdkafka then
re-authenticates on the open connection with the credentials it holds at that moment
(`set_sasl_credentials` changes them). A re-authentication the broker refuses is an
`auth.failed` of the principal it attempted, not allowed; the connection's principal
changes only when the broker accepts (Kafka refuses a change of principal: "Cannot
change principals during re-authentication")."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer
from gateway_fixtures import RunningGateway

from kaudit.dev.kafka import REAUTH_SCRAM_SHA_256_MS, KafkaInfo
from support.kafka import create_topic, wait_for

pytestmark = pytest.mark.kafka


def _reauth_failures(gateway: RunningGateway, client_id: str) -> list[dict[str, Any]]:
    return [e for e in gateway.events("auth.failed") if e["actor"]["client_id"] == client_id]


def _producing_until(
    producer: Producer, topic: str, done: Callable[[], bool], errors: list[Any]
) -> None:
    deadline = time.monotonic() + 6 * REAUTH_SCRAM_SHA_256_MS / 1000
    while not done():
        assert time.monotonic() < deadline, "no re-authentication within 6 session lifetimes"
        producer.produce(topic, b"x", on_delivery=lambda err, _msg: errors.append(err))
        producer.poll(0.25)


@pytest.mark.parametrize(
    ("user", "password_of", "attempted"),
    [
        ("admin", None, "User:admin"),  # the same user with a wrong password
        ("alice", "alice", "User:alice"),  # another user, with her real password
    ],
)
def test_a_refused_reauthentication_is_a_failed_login_of_the_attempted_principal(
    gateway: RunningGateway,
    kafka: KafkaInfo,
    admin_config: dict[str, str],
    sasl_config: Any,
    unique_topic: str,
    user: str,
    password_of: str | None,
    attempted: str,
) -> None:
    create_topic(admin_config, unique_topic)
    client_id = f"reauth-{user}"
    producer = Producer(
        gateway.client(
            {**sasl_config("admin", mechanism="SCRAM-SHA-256"), "client.id": client_id,
             "linger.ms": "0", "retries": "0",
             # Once the credentials are wrong nothing is delivered: give up soon.
             "message.timeout.ms": "10000"}
        )
    )  # fmt: skip
    errors: list[Any] = []
    producer.produce(unique_topic, b"before", on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(30) == 0 and errors == [None]
    password = kafka.user(password_of).password if password_of else "not-the-password"
    producer.set_sasl_credentials(user, password)

    _producing_until(
        producer, unique_topic, lambda: bool(_reauth_failures(gateway, client_id)), errors
    )
    producer.flush(30)

    failed = _reauth_failures(gateway, client_id)
    assert {e["actor"]["id"] for e in failed} == {attempted}
    assert all(e["authorization"]["allowed"] is False for e in failed)
    assert all(e["action"]["result"] == "failure" for e in failed)
    assert any(e["details"]["reauthentication"] for e in failed), "no refused re-authentication"
    # The connection logged in as admin stays admin's; a login as anyone else is on a
    # new connection librdkafka opens after the broker closed the refused one.
    logins = [e for e in gateway.events("auth.login") if e["actor"]["client_id"] == client_id]
    assert {e["actor"]["id"] for e in logins if e["details"]["reauthentication"]} <= {"User:admin"}
    assert {e["actor"]["id"] for e in logins if not e["details"]["reauthentication"]} <= {
        "User:admin",
        attempted,
    }
    produced = [
        e
        for e in gateway.events("records.produced")
        if e["actor"]["client_id"] == client_id and e["resource"]["id"] == unique_topic
    ]
    assert "User:admin" in {e["actor"]["id"] for e in produced}


def test_an_accepted_reauthentication_renews_the_login_and_keeps_the_principal(
    gateway: RunningGateway, admin_config: dict[str, str], sasl_config: Any, unique_topic: str
) -> None:
    create_topic(admin_config, unique_topic)
    producer = Producer(
        gateway.client(
            {**sasl_config("admin", mechanism="SCRAM-SHA-256"), "client.id": "reauth-same",
             "linger.ms": "0"}
        )
    )  # fmt: skip
    errors: list[Any] = []

    def renewed() -> bool:
        return any(
            e["details"]["reauthentication"] and e["actor"]["client_id"] == "reauth-same"
            for e in gateway.events("auth.login")
        )

    _producing_until(producer, unique_topic, renewed, errors)
    assert producer.flush(30) == 0 and not any(errors)
    wait_for(renewed, "a recorded re-authentication")
    logins = [e for e in gateway.events("auth.login") if e["actor"]["client_id"] == "reauth-same"]
    assert {e["actor"]["id"] for e in logins} == {"User:admin"}
    assert all(e["authorization"]["allowed"] is True for e in logins)
    assert not _reauth_failures(gateway, "reauth-same")
