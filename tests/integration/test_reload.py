"""A running `kaudit run` (gateway and exporters) re-reads its configuration on SIGHUP
and `kaudit reload`: event selection, gateway API settings and destinations change with
no event lost; a configuration that does not load is refused and the old one stays; the
gateway's TLS certificate is loaded again when its files change. Real processes, real
signals, the real broker."""

from __future__ import annotations

import datetime
import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka.admin import AdminClient, NewTopic
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kaudit.dev.kafka import KafkaInfo
from kaudit.dev.ports import free_port_block
from kaudit.log.segments import LogReader
from kaudit.ops.reload import read_announcement
from support.kafka import wait_for

pytestmark = pytest.mark.kafka
KAUDIT = str(Path(sys.executable).with_name("kaudit"))


class Running:
    """`kaudit run -c CONFIG` as a child process, its stderr in a file."""

    def __init__(self, tmp: Path, document: dict[str, Any], port: int) -> None:
        self.tmp, self.port = tmp, port
        self.config = tmp / "kaudit.yaml"
        self.data = Path(document["data_dir"])
        self.write(document)
        self.stderr = tmp / "run.stderr"
        with self.stderr.open("ab") as err:
            self.proc = subprocess.Popen([KAUDIT, "run", "-c", str(self.config)], stderr=err)
        wait_for(self.ready, "kaudit run listening and taking SIGHUP", timeout=60)

    def write(self, document: dict[str, Any]) -> None:
        self.config.write_text(yaml.safe_dump(document))

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.stderr.read_text()
        if read_announcement(self.data, self.proc.pid) is None:
            return False
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def reload(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KAUDIT, "reload", "-c", str(self.config)], capture_output=True, text=True, timeout=60
        )

    def events(self) -> list[dict[str, Any]]:
        reader = LogReader(self.data / "log")
        lines, _ = reader.read(reader.start())
        return [orjson.loads(line) for line in lines]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


def exported(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def created(events: list[dict[str, Any]]) -> set[str]:
    return {e["resource"]["id"] for e in events if e["event_type"] == "topic.created"}


def create_topic(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)


def test_sighup_and_kaudit_reload_change_selection_api_settings_and_destinations(
    kafka: KafkaInfo, tmp_path: Path, unique_topic: str
) -> None:
    port = free_port_block(3)
    file_a, file_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    document: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "audit": {
            "exclude_events": ["topic.created"],
            "destinations": [{"type": "file", "name": "a", "path": str(file_a)}],
        },
        "gateway": {
            "upstream": kafka.bootstrap_servers,
            "listen": f"127.0.0.1:{port}",
            "records_window_seconds": 3600,
        },
    }
    run = Running(tmp_path, document, port)
    via = f"127.0.0.1:{port}"
    try:
        create_topic(via, f"{unique_topic}-1")  # excluded: not recorded

        # Recorded from now on: topic.created and each Metadata request; a second file.
        document["audit"]["exclude_events"] = []
        document["audit"]["destinations"].append({"type": "file", "name": "b", "path": str(file_b)})
        document["gateway"]["request_events"] = {"include_apis": ["Metadata"]}
        run.write(document)
        done = run.reload()
        assert done.returncode == 0, done.stderr
        assert "reloaded (" in done.stdout and "exporters" in done.stdout, done.stdout
        create_topic(via, f"{unique_topic}-2")
        wait_for(lambda: f"{unique_topic}-2" in created(run.events()), "topic 2 recorded")
        assert f"{unique_topic}-1" not in created(run.events())
        assert any(
            e["event_type"] == "kafka.request" and e["context"]["api"]["name"] == "Metadata"
            for e in run.events()
        )

        # A file that does not load: `kaudit reload` refuses it with its errors; SIGHUP
        # leaves the process on the configuration in force, saying why.
        run.config.write_text(run.config.read_text() + "audit_typo: 1\n")
        refused = run.reload()
        assert refused.returncode == 2 and "audit_typo" in refused.stderr, refused.stderr
        os.kill(run.proc.pid, signal.SIGHUP)
        wait_for(
            lambda: (read_announcement(run.data, run.proc.pid) or {})["last_reload"]["ok"] is False,
            "the process refusing the broken configuration",
        )
        last = read_announcement(run.data, run.proc.pid)
        assert last is not None and "audit_typo" in " ".join(last["last_reload"]["errors"])
        create_topic(via, f"{unique_topic}-3")  # the previous configuration still records it
        wait_for(lambda: f"{unique_topic}-3" in created(run.events()), "topic 3 recorded")
        in_log = run.events()
        wait_for(lambda: len(exported(file_a)) >= len(in_log), "destination a caught up")
        wait_for(lambda: len(exported(file_b)) >= len(in_log), "destination b caught up")
    finally:
        run.stop()
    assert run.proc.returncode == 0, run.stderr.read_text()
    # Nothing lost across the reloads: each destination holds every event of the log.
    ids = {e["event_id"] for e in run.events()}
    assert {e["event_id"] for e in exported(file_a)} == ids
    assert {e["event_id"] for e in exported(file_b)} == ids
    assert "configuration reload refused" in run.stderr.read_text()


def _certificate(tmp: Path, name: str) -> tuple[Path, Path, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = tmp / f"{name}.key", tmp / f"{name}.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path, cert.public_bytes(serialization.Encoding.DER)


def _presented(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_the_gateway_presents_a_new_certificate_once_its_files_change(
    kafka: KafkaInfo, tmp_path: Path
) -> None:
    old_cert, old_key, old_der = _certificate(tmp_path, "old")
    new_cert, new_key, new_der = _certificate(tmp_path, "new")
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    live_cert.write_bytes(old_cert.read_bytes())
    live_key.write_bytes(old_key.read_bytes())
    live_key.chmod(0o600)
    port = free_port_block(3)
    document = {
        "data_dir": str(tmp_path / "data"),
        "audit": {"destinations": [{"type": "file", "path": str(tmp_path / "out.jsonl")}]},
        "gateway": {
            "upstream": kafka.bootstrap_servers,
            "listen": f"127.0.0.1:{port}",
            "tls": {"cert_file": str(live_cert), "key_file": str(live_key)},
        },
    }
    run = Running(tmp_path, document, port)
    try:
        assert _presented(port) == old_der
        # Replaced as cert-manager does: each file written anew, no signal.
        os.replace(new_key, live_key)
        os.replace(new_cert, live_cert)
        wait_for(lambda: _presented(port) == new_der, "the new certificate presented")
    finally:
        run.stop()
    assert run.proc.returncode == 0, run.stderr.read_text()
