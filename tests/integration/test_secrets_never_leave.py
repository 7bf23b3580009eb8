"""Secrets never leave: a real `kaudit run` (the gateway under a real SASL client, and
exporters to a webhook that refuses, a Slack webhook, S3 and Kafka that cannot be
reached or refuse the login) and the command line (`exporters status`, `tail kafka://`
with the password in the URL or in a file, a gateway whose discovery login fails, a
configuration error) run with a unique marker in every kind of secret; then every
output and every file they wrote is searched for the markers, and for the SASL password
that went through the gateway."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka.admin import AdminClient, NewTopic

from kaudit.dev.kafka import KafkaInfo
from kaudit.dev.ports import free_port_block
from support.kafka import create_topic, wait_for
from support.wire import wait_for_port

pytestmark = pytest.mark.kafka
KAUDIT = str(Path(sys.executable).with_name("kaudit"))

MARKERS = {
    "kafka_sasl_password": "mkKafkaSaslPw7Q1",
    "kafka_ssl_key_password": "mkSslKeyPw8R2",
    "aws_secret_access_key": "mkAwsSecret9S3",
    "aws_session_token": "mkAwsToken0T4",
    "webhook_url_token": "mkWebhookUrl1U5",
    "webhook_header": "mkWebhookHdr2V6",
    "webhook_hmac": "mkWebhookHmac3W7xxxxxxxx",
    "slack_webhook": "mkSlackHook4X8",
    "hmac_key_file": "mkHmacKeyFile5Y9xxxxxxxxxx",
    "client_config_password": "mkClientCfg6Z0",
    "discovery_password": "mkDiscovery7A1",
    "kafka_url_password": "mkKafkaUrl8B2",
    "kafka_password_file": "mkKafkaPwFile9C3",
    "config_error": "mkCfgError0D4",
}


class Refusing(http.server.BaseHTTPRequestHandler):
    """A webhook receiver that refuses every request for good (400): dead letters."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(400)
        self.end_headers()
        self.wfile.write(b"malformed batch")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KAUDIT, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def test_no_secret_reaches_an_output_or_a_file(
    kafka: KafkaInfo,
    admin_config: dict[str, str],
    admin_sasl_config: dict[str, str],
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    secrets = tmp_path / "secrets"  # the files that hold secrets on purpose
    work.mkdir()
    secrets.mkdir()
    hmac_file = secrets / "hmac.key"
    hmac_file.write_text(MARKERS["hmac_key_file"] + "\n")
    hmac_file.chmod(0o600)
    password_file = secrets / "kafka.password"
    password_file.write_text(MARKERS["kafka_password_file"] + "\n")
    password_file.chmod(0o600)
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    receiver_url = f"http://127.0.0.1:{receiver.server_address[1]}/ingest"
    port = free_port_block(4)
    topic = f"kaudit-secrets-{port}"
    create_topic(admin_config, topic)
    wrong_sasl = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "admin",
    }
    document: dict[str, Any] = {
        "data_dir": str(work / "data"),
        "audit": {
            "failure_policy": "fail_open",
            "integrity": {"signing": {"enabled": True, "key_file": str(hmac_file)}},
            "destinations": [
                {
                    "type": "webhook",
                    "name": "siem",
                    "url": f"{receiver_url}/{MARKERS['webhook_url_token']}",
                    "headers": {"Authorization": f"Bearer {MARKERS['webhook_header']}"},
                    "secret": MARKERS["webhook_hmac"],
                    "retry_attempts": 0,
                },
                {
                    "type": "slack",
                    "name": "chat",
                    "webhook": f"http://127.0.0.1:{free_port_block(1)}/services/{MARKERS['slack_webhook']}",
                },
                {
                    "type": "s3",
                    "name": "archive",
                    "bucket": "audit",
                    "batch_interval_secs": 0,
                    "region": "us-east-1",
                    "endpoint_url": f"http://127.0.0.1:{free_port_block(1)}",
                    "access_key_id": "AKIDEXAMPLE",
                    "secret_access_key": MARKERS["aws_secret_access_key"],
                    "session_token": MARKERS["aws_session_token"],
                },
                {
                    "type": "kafka",
                    "name": "bus",
                    "bootstrap_servers": [kafka.sasl_bootstrap_servers],
                    "topic": topic,
                    "security": {
                        **wrong_sasl,
                        "sasl_password": MARKERS["kafka_sasl_password"],
                        "ssl_key_password": MARKERS["kafka_ssl_key_password"],
                    },
                    "client_config": {"sasl.password": MARKERS["client_config_password"]},
                },
            ],
        },
        "gateway": {
            "upstream": kafka.sasl_bootstrap_servers,
            "listen": f"127.0.0.1:{port}",
            "records_window_seconds": 1,
        },
    }
    config = tmp_path / "kaudit.yaml"
    config.write_text(yaml.safe_dump(document))
    env = {**os.environ, "KAUDIT_KAFKA_CLIENT_LOG": "1"}  # librdkafka's own messages too
    outputs: dict[str, str] = {}

    service = subprocess.Popen(
        [KAUDIT, "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=work,
    )
    try:
        wait_for_port(port, service)  # type: ignore[arg-type]
        # A SASL client through the gateway: its password crosses the gateway.
        admin = AdminClient({**admin_sasl_config, "bootstrap.servers": f"127.0.0.1:{port}"})
        created = f"{topic}-via-gateway"
        admin.create_topics([NewTopic(created, 1, 1)])[created].result(30)
        del admin  # no reconnecting once the gateway stops

        def every_destination_failed() -> bool:
            status = run(["exporters", "status", "-c", str(config)], env, work)
            outputs["exporters status"] = status.stdout + status.stderr
            try:
                rows = json.loads(status.stdout)
            except json.JSONDecodeError:
                return False
            items = rows if isinstance(rows, list) else rows.get("destinations", rows)
            text = json.dumps(items)
            return all(name in text for name in ("siem", "chat", "archive", "bus")) and (
                text.count('"last_error": "') + text.count('"last_error":"') >= 3
            )

        try:
            wait_for(every_destination_failed, "every destination to report its failure", 90)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last status: {outputs.get('exporters status')}") from None
    finally:
        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=60)
        outputs["kaudit run"] = out + err
    receiver.shutdown()
    assert (work / "data" / "dead-letter").is_dir()  # the webhook refused: dead letters

    no_env = {k: v for k, v in env.items() if not k.startswith("KAUDIT_KAFKA_PASSWORD")}
    url = f"kafka://admin:{MARKERS['kafka_url_password']}@{kafka.sasl_bootstrap_servers}/{topic}"
    tail = run(["tail", url], no_env, work)
    outputs["tail kafka:// with a password"] = tail.stdout + tail.stderr
    assert tail.returncode != 0
    from_file = run(
        ["tail", f"kafka://admin@{kafka.sasl_bootstrap_servers}/{topic}"],
        {**no_env, "KAUDIT_KAFKA_PASSWORD_FILE": str(password_file)},
        work,
    )
    outputs["tail kafka:// with a password file"] = from_file.stdout + from_file.stderr
    assert from_file.returncode != 0  # a wrong password, read from the file

    discovery = tmp_path / "discovery.yaml"
    discovery.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(work / "data-discovery"),
                "gateway": {
                    "upstream": kafka.sasl_bootstrap_servers,
                    "listen": f"127.0.0.1:{free_port_block(4)}",
                    "discovery": {**wrong_sasl, "sasl_password": MARKERS["discovery_password"]},
                },
            }
        )
    )
    gateway = run(["gateway", "-c", str(discovery)], env, work)
    outputs["gateway with a failing discovery login"] = gateway.stdout + gateway.stderr
    assert gateway.returncode != 0
    assert "cannot ask the cluster for its brokers" in gateway.stderr

    broken = tmp_path / "broken.yaml"
    broken.write_text(
        yaml.safe_dump(
            {
                "audit": {
                    "destinations": [
                        {
                            "type": "webhook",
                            "url": "https://x.example/h",
                            "secret": MARKERS["config_error"],
                        }
                    ]
                }
            }
        )
    )
    check = run(["check-config", str(broken)], env, work)
    outputs["check-config"] = check.stdout + check.stderr
    assert check.returncode != 0 and "secret" in check.stderr

    files = {
        str(p.relative_to(work)): p.read_bytes().decode(errors="replace")
        for p in work.rglob("*")
        if p.is_file()
    }
    assert any(name.startswith("data/log/") for name in files)
    assert any(name.startswith("data/dead-letter/") for name in files)
    searched = {**outputs, **files}
    secrets_found = {
        (where, marker)
        for where, text in searched.items()
        for marker in [*MARKERS.values(), kafka.user("admin").password]
        if marker in text
    }
    assert secrets_found == set()
