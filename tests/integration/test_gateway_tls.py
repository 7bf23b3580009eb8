"""TLS terminated at the gateway: SASL inside TLS is still read, and a client
certificate's subject (mapped by Kafka's ssl.principal.mapping.rules) names who acted,
while the broker authorized the gateway's own upstream identity: both are recorded."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gateway_fixtures import GatewayFactory, one

from kaudit.dev.kafka import KafkaInfo

pytestmark = pytest.mark.kafka


def _name(cn: str, org: str | None = None) -> x509.Name:
    # Encoded most significant first (O, then CN), as CAs issue them; the principal is
    # the RFC 2253 string, which lists them the other way round, as Kafka does.
    parts = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
    parts.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(parts)


def _issue(
    subject: x509.Name, issuer: x509.Name, key: Any, signer: Any, *, ca: bool, san: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def _write(path: Path, key: Any, cert: x509.Certificate) -> tuple[str, str]:
    key_path, cert_path = path.with_suffix(".key"), path.with_suffix(".pem")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)  # kaudit refuses a private key others can read, as ssh does
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(cert_path), str(key_path)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("kaudit test CA")
    ca = _issue(ca_name, ca_name, ca_key, ca_key, ca=True, san=False)
    ca_cert, _ = _write(tmp_path / "ca", ca_key, ca)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(_name("gateway"), ca_name, server_key, ca_key, ca=False, san=True)
    server_cert, server_key_path = _write(tmp_path / "server", server_key, server)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue(_name("billing-svc", "Acme"), ca_name, client_key, ca_key, ca=False, san=False)
    client_cert, client_key_path = _write(tmp_path / "client", client_key, client)
    return {
        "ca": ca_cert,
        "server_cert": server_cert,
        "server_key": server_key_path,
        "client_cert": client_cert,
        "client_key": client_key_path,
    }


def test_client_certificate_subject_is_the_principal(
    gateway_factory: GatewayFactory, kafka: KafkaInfo, pki: dict[str, str], unique_topic: str
) -> None:
    gw = gateway_factory(
        upstream=kafka.bootstrap_servers,  # the broker side needs no login here
        gateway={
            "tls": {
                "cert_file": pki["server_cert"],
                "key_file": pki["server_key"],
                "ca_file": pki["ca"],
                "require_client_cert": True,
            }
        },
    )
    admin = AdminClient(
        {
            "bootstrap.servers": gw.bootstrap,
            "security.protocol": "SSL",
            "ssl.ca.location": pki["ca"],
            "ssl.certificate.location": pki["client_cert"],
            "ssl.key.location": pki["client_key"],
        }
    )
    admin.create_topics([NewTopic(unique_topic, 1, 1)])[unique_topic].result(timeout=30)

    created = one(gw.events("topic.created"), resource__id=unique_topic)
    assert created["actor"]["id"] == "User:CN=billing-svc,O=Acme"
    # The gateway reaches the broker's PLAINTEXT listener without a certificate of its
    # own: the broker authorized User:ANONYMOUS, not the certificate's subject.
    assert created["actor"]["authorized_as"] == "User:ANONYMOUS"
    described = [e for e in gw.events() if e["actor"]["id"] == "User:CN=billing-svc,O=Acme"]
    assert described and all(e["actor"]["authorized_as"] == "User:ANONYMOUS" for e in described)


def test_mapping_rules_name_the_certificates_principal(
    gateway_factory: GatewayFactory, kafka: KafkaInfo, pki: dict[str, str], unique_topic: str
) -> None:
    gw = gateway_factory(
        upstream=kafka.bootstrap_servers,
        gateway={
            "tls": {
                "cert_file": pki["server_cert"],
                "key_file": pki["server_key"],
                "ca_file": pki["ca"],
                "require_client_cert": True,
                "principal_mapping_rules": "RULE:^CN=([^,]+),O=Acme$/$1@acme/L, DEFAULT",
            }
        },
    )
    admin = AdminClient(
        {
            "bootstrap.servers": gw.bootstrap,
            "security.protocol": "SSL",
            "ssl.ca.location": pki["ca"],
            "ssl.certificate.location": pki["client_cert"],
            "ssl.key.location": pki["client_key"],
        }
    )
    admin.create_topics([NewTopic(unique_topic, 1, 1)])[unique_topic].result(timeout=30)

    created = one(gw.events("topic.created"), resource__id=unique_topic)
    assert created["actor"]["id"] == "User:billing-svc@acme"
    assert created["actor"]["authorized_as"] == "User:ANONYMOUS"


def test_sasl_inside_tls_is_read_for_the_principal(
    gateway_factory: GatewayFactory, kafka: KafkaInfo, pki: dict[str, str], unique_topic: str
) -> None:
    gw = gateway_factory(
        gateway={"tls": {"cert_file": pki["server_cert"], "key_file": pki["server_key"]}}
    )
    admin_user = kafka.user("admin")
    admin = AdminClient(
        {
            "bootstrap.servers": gw.bootstrap,
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": pki["ca"],
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": admin_user.name,
            "sasl.password": admin_user.password,
        }
    )
    admin.create_topics([NewTopic(unique_topic, 1, 1)])[unique_topic].result(timeout=30)

    created = one(gw.events("topic.created"), resource__id=unique_topic)
    assert created["actor"]["id"] == "User:admin"
    assert created["actor"]["auth"] == "SCRAM-SHA-256"
    # SASL passes through: the broker authorized the principal it authenticated.
    assert created["actor"]["authorized_as"] is None
