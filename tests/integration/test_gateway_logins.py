"""Logins through the gateway are recorded when the broker accepted them, and only then.

The local broker's SASL listener offers OAUTHBEARER with Kafka's unsecured-JWS validator
(see kaudit.dev.broker_config): an unsigned JWT with a valid `sub`, `iat` and `exp` logs
in, an expired one gets RFC 7628's error challenge (error code 0) and fails after the
client's reply. Clients: confluent-kafka (SaslHandshake v1 + SaslAuthenticate) and
kafka-python pinned to Kafka 0.11's protocol, which sends raw SASL tokens after a
SaslHandshake v0.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from gateway_fixtures import RunningGateway, one
from kafka.admin import KafkaAdminClient
from kafka.admin import NewTopic as KafkaPythonNewTopic
from kafka.errors import KafkaError as KafkaPythonError
from kafka.net.sasl.oauth import AbstractTokenProvider

from kaudit.dev.kafka import KafkaInfo

pytestmark = pytest.mark.kafka


def unsecured_jwt(sub: str, lifetime_s: int) -> str:
    """An unsigned JWT (`alg: none`) as Kafka's unsecured validator reads it; a negative
    `lifetime_s` makes it expired, which the broker refuses."""

    def b64(claims: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()

    now = int(time.time())
    return f"{b64({'alg': 'none'})}.{b64({'sub': sub, 'iat': now - 60, 'exp': now + lifetime_s})}."


def oauth_settings(gw: RunningGateway, sub: str, lifetime_s: int = 3600) -> dict[str, Any]:
    """confluent-kafka settings that log in through the gateway with a JWT for `sub`."""
    return {
        "bootstrap.servers": gw.bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "OAUTHBEARER",
        "client.id": f"oauth-{sub}",
        # The token the client sends, as a token endpoint would hand it out.
        "oauth_cb": lambda _config: (unsecured_jwt(sub, lifetime_s), time.time() + 3600),
    }


def others_than_logins(gw: RunningGateway, principal: str) -> list[dict[str, Any]]:
    return [
        e
        for e in gw.events()
        if e["actor"]["id"] == principal and not e["event_type"].startswith("auth.")
    ]


def test_a_valid_oauthbearer_token_is_a_login_of_its_subject(
    gateway: RunningGateway, unique_topic: str
) -> None:
    # librdkafka's own unsecured JWT (no callback): `principal=` becomes the `sub`.
    settings = {
        "bootstrap.servers": gateway.bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "OAUTHBEARER",
        "enable.sasl.oauthbearer.unsecure.jwt": True,
        "sasl.oauthbearer.config": "principal=admin",
    }
    admin = AdminClient(settings)
    admin.create_topics([NewTopic(unique_topic, 1, 1)])[unique_topic].result(timeout=30)

    login = gateway.events("auth.login")[0]
    assert login["actor"]["id"] == "User:admin"
    assert login["actor"]["auth"] == "OAUTHBEARER"
    assert login["authorization"]["allowed"] is True
    created = one(gateway.events("topic.created"), resource__id=unique_topic)
    assert created["actor"]["id"] == "User:admin"
    assert not gateway.events("auth.failed")


def test_an_invalid_oauthbearer_token_is_a_failed_login_and_nothing_is_done_as_its_subject(
    gateway: RunningGateway,
) -> None:
    admin = AdminClient({**oauth_settings(gateway, "mallory", lifetime_s=-60),
                         "socket.timeout.ms": "5000"})  # fmt: skip
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)

    failed = gateway.events("auth.failed")
    assert failed, "no auth.failed recorded"
    assert {e["actor"]["id"] for e in failed} == {"User:mallory"}
    first = failed[0]
    assert first["action"]["result"] == "failure"
    assert first["action"]["error"] == "SASL_AUTHENTICATION_FAILED"
    assert first["authorization"]["allowed"] is False
    assert "invalid_token" in first["details"]["message"]
    # One failure per attempt, at the error challenge (the first round), not also at the
    # broker's answer to the client's reply to it.
    assert {e["details"]["rounds"] for e in failed} == {1}
    assert not gateway.events("auth.login")
    assert others_than_logins(gateway, "User:mallory") == []


class _Token(AbstractTokenProvider):
    def __init__(self, sub: str, lifetime_s: int) -> None:
        self.sub, self.lifetime_s = sub, lifetime_s

    def token(self) -> str:
        return unsecured_jwt(self.sub, self.lifetime_s)


def _raw_admin(gw: RunningGateway, **sasl: Any) -> KafkaAdminClient:
    """kafka-python speaking Kafka 0.11's protocol: SaslHandshake v0, then raw tokens."""
    return KafkaAdminClient(
        bootstrap_servers=gw.bootstrap,
        api_version=(0, 11, 0),
        security_protocol="SASL_PLAINTEXT",
        request_timeout_ms=10000,
        bootstrap_timeout_ms=8000,  # a refused login fails the bootstrap: give up soon
        **sasl,
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512", "OAUTHBEARER"])
def test_raw_sasl_tokens_after_handshake_v0_log_in_and_keep_framing(
    gateway: RunningGateway, kafka: KafkaInfo, unique_topic: str, mechanism: str
) -> None:
    if mechanism == "OAUTHBEARER":
        sasl: dict[str, Any] = {"sasl_oauth_token_provider": _Token("admin", 3600)}
    else:
        user = kafka.user("admin")
        sasl = {"sasl_plain_username": user.name, "sasl_plain_password": user.password}
    admin = _raw_admin(gateway, sasl_mechanism=mechanism, **sasl)
    try:
        admin.create_topics([KafkaPythonNewTopic(unique_topic, 1, 1)])
    finally:
        admin.close()

    created = one(gateway.events("topic.created"), resource__id=unique_topic)
    assert created["actor"]["id"] == "User:admin"
    assert created["actor"]["auth"] == mechanism
    logins = gateway.events("auth.login")
    assert logins and {e["actor"]["id"] for e in logins} == {"User:admin"}
    # Raw tokens have no header: no correlation id, recorded as -1.
    assert {e["context"]["correlation_id"] for e in logins} == {"-1"}
    assert not gateway.events("auth.failed")


def test_raw_oauthbearer_error_challenge_is_a_failed_login(gateway: RunningGateway) -> None:
    with pytest.raises(KafkaPythonError):
        _raw_admin(
            gateway,
            sasl_mechanism="OAUTHBEARER",
            sasl_oauth_token_provider=_Token("mallory", -60),
        )

    failed = gateway.events("auth.failed")
    assert failed and {e["actor"]["id"] for e in failed} == {"User:mallory"}
    assert all(e["authorization"]["allowed"] is False for e in failed)
    assert not gateway.events("auth.login")
    assert others_than_logins(gateway, "User:mallory") == []


def test_raw_plain_with_a_wrong_password_is_a_failed_login(
    gateway: RunningGateway, kafka: KafkaInfo
) -> None:
    # After a SaslHandshake v0 the broker refuses by closing the connection.
    with pytest.raises(KafkaPythonError):
        _raw_admin(
            gateway,
            sasl_mechanism="PLAIN",
            sasl_plain_username="alice",
            sasl_plain_password="not-her-password",
        )

    failed = gateway.events("auth.failed")
    assert failed and {e["actor"]["id"] for e in failed} == {"User:alice"}
    assert all(e["authorization"]["allowed"] is False for e in failed)
    assert not gateway.events("auth.login")
