"""Who may read kaudit's files: everything a real session, its checkpoints and its
exporters write is created 0640 or tighter, even under a permissive umask; a private key
(the Ed25519 checkpoint key, the HMAC key file, TLS keys) readable by group or others is
refused with a clear error, as ssh refuses one."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import kaudit
from kaudit.auditor import LoggingAuditor
from kaudit.config import Config, load_config_text
from kaudit.errors import GatewayError
from kaudit.exporters import runners_for
from kaudit.files import UnprotectedKeyError, check_private_key, open_private
from kaudit.gateway import Gateway
from kaudit.integrity.chain import SigningKeyError, signing_key
from kaudit.integrity.keys import IntegrityKeyError, generate, load_signer

HMAC_KEY = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The most permissive umask: what kaudit creates must not depend on the caller's."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
        for p in root.rglob("*")
        if p.is_file()
    }


def test_every_file_a_session_its_checkpoints_and_exporters_write_is_0640_or_tighter(
    tmp_path: Path, loose_umask: None
) -> None:
    key = generate(tmp_path / "keys" / "audit", "audit.example.com/test").private
    hmac_file = tmp_path / "keys" / "hmac"
    hmac_file.write_bytes(HMAC_KEY + b"\n")
    hmac_file.chmod(0o600)
    data = tmp_path / "data"
    document = {
        "data_dir": str(data),
        "audit": {
            "log": {"fsync": "never", "segment_max_mb": 1},
            "integrity": {
                "signing": {"enabled": True, "key_file": str(hmac_file)},
                "chain": {"enabled": True},
                "checkpoints": {"enabled": True, "key_file": str(key), "every_events": 50},
            },
            "destinations": [
                {"type": "file", "path": str(data / "out" / "audit.jsonl")},
                {"type": "store"},
            ],
        },
    }
    config = load_config_text(yaml.safe_dump(document), source="test", env={})
    with kaudit.open(config) as session:
        for i in range(400):
            session.emit(
                "topic.created",
                actor="User:alice",
                resource=f"topic:t{i}",
                details={"pad": "x" * 4000},
            )
    for runner in runners_for(config):
        try:
            runner.drain()
        finally:
            runner.close()

    found = modes(data)
    # The log (rolled into several segments), its lock, checkpoints, cursors, the index.
    assert sum(1 for name in found if name.startswith("log/")) >= 3, found
    assert any("cursor" in name or "cursors" in name for name in found), found
    assert any(name.endswith(".db") or "index" in name for name in found), found
    loose = {name: f"{mode:04o}" for name, mode in found.items() if mode & 0o137}
    assert loose == {}


def test_the_logging_auditor_file_is_0640(tmp_path: Path, loose_umask: None) -> None:
    auditor = LoggingAuditor()
    auditor.configure({"path": str(tmp_path / "kip567.log")})
    auditor.start()
    auditor.close()
    assert stat.S_IMODE((tmp_path / "kip567.log").stat().st_mode) == 0o640


def test_a_file_created_looser_is_tightened_when_kaudit_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "cursor"
    path.write_bytes(b"{}")
    path.chmod(0o666)
    with open_private(path, "ab") as f:
        f.write(b"\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_checkpoint_key_others_can_reach_is_refused(tmp_path: Path, mode: int) -> None:
    key = generate(tmp_path / "audit", "audit.example.com/test").private
    key.chmod(mode)
    with pytest.raises(IntegrityKeyError) as caught:
        load_signer(key)
    message = str(caught.value)
    assert str(key) in message
    assert f"{mode:04o}" in message
    assert "chmod 600" in message
    key.chmod(0o600)
    assert load_signer(key).name == "audit.example.com/test"


def test_an_hmac_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hmac"
    path.write_bytes(HMAC_KEY)
    path.chmod(0o644)
    config = Config.model_validate(
        {"audit": {"integrity": {"signing": {"enabled": True, "key_file": str(path)}}}}
    )
    with pytest.raises(SigningKeyError, match="accessible by group or others"):
        signing_key(config.audit.integrity.signing)
    path.chmod(0o400)
    assert signing_key(config.audit.integrity.signing) == HMAC_KEY


def test_the_gateway_refuses_a_tls_key_others_can_read(tmp_path: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = tmp_path / "gw.key", tmp_path / "gw.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o644)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    config = load_config_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "gateway": {
                    "upstream": "127.0.0.1:9",
                    "tls": {"cert_file": str(cert_file), "key_file": str(key_file)},
                },
            }
        ),
        source="test",
        env={},
    )
    assert config.gateway is not None
    with pytest.raises(GatewayError, match=r"gw\.key: the gateway\.tls\.key_file is accessible"):
        Gateway(config.gateway, lambda *a: None)
    key_file.chmod(0o600)
    Gateway(config.gateway, lambda *a: None)  # now accepted


def test_check_private_key_leaves_a_missing_file_to_the_caller(tmp_path: Path) -> None:
    check_private_key(tmp_path / "absent", "key")  # the caller's own error names it
    present = tmp_path / "key"
    present.write_bytes(b"k")
    present.chmod(0o600)
    check_private_key(present, "key")
    present.chmod(0o660)
    with pytest.raises(UnprotectedKeyError):
        check_private_key(present, "key")


def test_a_kafka_client_refuses_a_tls_key_others_can_read(tmp_path: Path) -> None:
    from kaudit.config.model import KafkaConnection
    from kaudit.errors import LogError
    from kaudit.log.kafka.client import ErrorTracker, client_base

    key = tmp_path / "client.key"
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o644)
    connection = KafkaConnection.model_validate(
        {
            "bootstrap_servers": ["kafka:9093"],
            "security": {"security_protocol": "SSL", "ssl_key_location": str(key)},
        }
    )
    with pytest.raises(LogError, match=r"client\.key: the TLS key .*\(mode 0644\)"):
        client_base(connection, ErrorTracker())
    key.chmod(0o600)
    assert client_base(connection, ErrorTracker())["ssl.key.location"] == str(key)
