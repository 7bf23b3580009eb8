"""`kaudit check-config` checks what running needs, not the schema alone: an unset
signing-key variable, a missing key file, a key others can read, a TLS certificate that
is missing or does not load, and a malformed URL are each reported with the config key
and the file or variable; `--offline` checks the file alone; a configuration that can
run here is valid."""

from __future__ import annotations

import datetime
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kaudit.cli import main
from kaudit.integrity.keys import generate


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = tmp_path / "gw.pem", tmp_path / "gw.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


def _config(tmp_path: Path, key_file: Path, cert: Path, tls_key: Path, endpoint: str) -> Path:
    path = tmp_path / "kaudit.yaml"
    path.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "audit:\n"
        "  integrity:\n"
        "    signing: {enabled: true, key_env_var: KAUDIT_TEST_SIGNING_KEY}\n"
        f"    checkpoints: {{enabled: true, key_file: {key_file}}}\n"
        f"  destinations: [{{type: s3, bucket: audit-logs, endpoint_url: '{endpoint}'}}]\n"
        "gateway:\n"
        "  upstream: kafka:9092\n"
        f"  tls: {{cert_file: {cert}, key_file: {tls_key}}}\n"
    )
    return path


def test_what_running_needs_is_checked_and_each_error_names_its_file(tmp_path: Path) -> None:
    missing_key, missing_cert = tmp_path / "audit.key", tmp_path / "gw.pem"
    readable_key = tmp_path / "loose.key"
    readable_key.write_text("not a key")
    readable_key.chmod(0o644)
    config = _config(tmp_path, missing_key, missing_cert, readable_key, "minio:9000")
    done = CliRunner().invoke(main, ["check-config", str(config)], env={})
    assert done.exit_code == 2
    err = done.stderr
    assert err.startswith(f"kaudit: error: {config}: valid, but cannot run here")
    assert (
        "audit.integrity.signing.key_env_var: the environment variable "
        "KAUDIT_TEST_SIGNING_KEY is not set" in err
    )
    assert f"audit.integrity.checkpoints.key_file: {missing_key}: file not found" in err
    assert f"gateway.tls.cert_file: {missing_cert}: file not found" in err
    assert f"gateway.tls.key_file: {readable_key}: the private key" in err and "chmod 600" in err
    assert "audit.destinations[0].endpoint_url: not a well-formed http(s) URL" in err

    offline = CliRunner().invoke(main, ["check-config", str(config), "--offline"], env={})
    assert offline.exit_code == 0 and f"{config}: valid" in offline.stdout


def test_a_certificate_that_does_not_load_is_reported(tmp_path: Path) -> None:
    generate(tmp_path / "audit", "test")
    cert, _ = _self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_key = _self_signed(tmp_path / "other")
    config = _config(tmp_path, tmp_path / "audit.key", cert, other_key, "http://minio:9000")
    env = {"KAUDIT_TEST_SIGNING_KEY": "0123456789abcdef0123456789abcdef"}
    done = CliRunner().invoke(main, ["check-config", str(config)], env=env)
    assert done.exit_code == 2
    assert f"gateway.tls: {cert} with {other_key}: the certificate and key do not" in done.stderr


def test_a_configuration_that_can_run_here_is_valid(tmp_path: Path) -> None:
    generate(tmp_path / "audit", "test")
    cert, key = _self_signed(tmp_path)
    config = _config(tmp_path, tmp_path / "audit.key", cert, key, "http://minio:9000")
    env = {"KAUDIT_TEST_SIGNING_KEY": "0123456789abcdef0123456789abcdef"}
    done = CliRunner().invoke(main, ["check-config", str(config)], env=env)
    assert done.exit_code == 0, done.stderr
    assert done.stdout.startswith(f"{config}: valid")
