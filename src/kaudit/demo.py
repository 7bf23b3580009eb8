"""`kaudit demo`: kaudit end to end on this machine.

1. The embedded default, nothing but local files: writes a demo configuration, records a
   realistic week of Kafka audit traffic through the recorder into the local log, runs
   the file exporters (native JSON Lines and an OCSF feed of security events).
2. The distributed log: starts a local Apache Kafka (KRaft, SASL, ACLs), records events
   into the `__oprtr_audit_log` topic over SCRAM and copies them to a topic in
   CloudEvents form.
3. The audit gateway in front of that broker: real Kafka clients create a topic, grant
   and use ACLs, change a config, produce and consume, and get refused, all through the
   gateway, which records who did what. The broker runs kaudit's broker auditor plugin:
   what it authorized is matched with the gateway's records, and alice creating a topic
   straight at the broker is caught as ``access.bypassed_gateway``.
4. The web console on that broker, with two local users: an admin, and a developer
   limited by the seed's policy. It serves until Ctrl-C; every action is audited.
Then it tells the user what is where and how to look at it.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import sys
import time
from pathlib import Path
from typing import Any

import click
import orjson

from kaudit.config import load_config
from kaudit.demo_bypass import BROKER_AUDITOR_CONFIG, catch_bypass, create_topic
from kaudit.dev.broker_auditor import AUTHORIZER_CLASS, broker_auditor_plugin
from kaudit.dev.errors import KafkaAlreadyRunningError, KafkaDownloadError, MissingToolError
from kaudit.dev.kafka import KafkaInfo, LocalKafka
from kaudit.dev.ports import free_port_block
from kaudit.exporters import drain_all
from kaudit.generate import generate
from kaudit.log.segments import LogReader, list_segments
from kaudit.session import open as open_session

_CONFIG = """\
# kaudit demo configuration: the embedded default (a local log), two file exports.
data_dir: {data}
cluster:
  id: prod-us-west-2
  environment: production
audit:
  failure_policy: fail_open
  log:
    type: local
    segment_max_mb: 1      # small segments so the demo shows segment rolls
    fsync: batch
  destinations:
    - type: file           # the seed's file destination: every event, native JSON
      path: {export}/audit.log
      rotation:
        max_size_mb: 1
        max_files: 5
        compress: true
    - type: file           # security events for a SIEM, in OCSF
      name: siem-ocsf
      format: ocsf
      path: {export}/security.ocsf.jsonl
      events: ["access.*", "auth.*", "acl.*", "config.*", "topic.config_changed"]
"""


_KAFKA_CONFIG = """\
# kaudit demo configuration: the audit log on a Kafka topic (the local broker).
data_dir: {data}
cluster:
  id: local-kafka
  environment: demo
audit:
  failure_policy: fail_closed    # a write the broker does not acknowledge is an error
  log:
    type: kafka
    bootstrap_servers: [{servers}]
    topic: __oprtr_audit_log
    partitions: 6
    replication_factor: 1
    security:
      security_protocol: SASL_PLAINTEXT
      sasl_mechanism: SCRAM-SHA-512
      sasl_username: admin
      sasl_password: ${{KAUDIT_DEMO_KAFKA_PASSWORD:-admin-secret}}
  destinations:
    - type: kafka                # the seed's kafka destination, CloudEvents binary mode
      bootstrap_servers: [{servers}]
      topic: audit-events
      format: cloudevents
      cloudevents_mode: binary
      events: ["acl.*", "topic.*", "access.denied", "config.changed"]
      security:
        security_protocol: SASL_PLAINTEXT
        sasl_mechanism: SCRAM-SHA-512
        sasl_username: admin
        sasl_password: ${{KAUDIT_DEMO_KAFKA_PASSWORD:-admin-secret}}
"""


def run_demo(directory: Path, count: int, *, kafka: bool = True, console: bool = True) -> None:
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "kaudit.yaml"
    if not config_path.exists():
        config_path.write_text(
            _CONFIG.format(data=directory / "data", export=directory / "export"),
            encoding="utf-8",
        )
    config = load_config(config_path)
    echo = click.echo
    echo(f"kaudit demo: recording {count} events of a week of Kafka activity", err=True)
    started = time.perf_counter()
    with (
        open_session(config, source="demo") as session,
        click.progressbar(length=count, label="  recording", file=sys.stderr) as bar,
    ):
        generate(
            session, count, seed=int(time.time()), spread_seconds=7 * 86400, progress=bar.update
        )
        session.flush()
    elapsed = time.perf_counter() - started
    exported = drain_all(config)
    file_export = config.audit.all_destinations[0].display_name

    by_type: collections.Counter[str] = collections.Counter()
    by_result: collections.Counter[str] = collections.Counter()
    total = 0
    for _, line in LogReader(config.log_dir).iter_lines():
        event = orjson.loads(line)
        total += 1
        by_type[event["event_type"].split(".")[0]] += 1
        by_result[event["action"]["result"]] += 1
    segments = list_segments(config.log_dir)
    log_dir = config.log_dir
    echo(f"""
Recorded {count} events in {elapsed:.2f}s. The audit log now holds {total} events in
{len(segments)} segment(s), each event sequenced, with secrets redacted.

  by category: {", ".join(f"{k} {v}" for k, v in by_type.most_common())}
  by result:   {", ".join(f"{k} {v}" for k, v in by_result.most_common())}

Where things are:
  configuration  {config_path}
  audit log      {log_dir}/  (append-only JSON Lines segments)
  file export    {directory}/export/audit.log  ({
        exported.get(file_export, 0)
    } lines this run, rotated .gz files beside it)
  OCSF export    {directory}/export/security.ocsf.jsonl

Look at them:
  .venv/bin/kaudit tail {log_dir} -n 5
  .venv/bin/kaudit tail {log_dir} --type 'acl.*' --format cloudevents
  .venv/bin/kaudit tail {
        log_dir
    } | jq 'select(.action.result == "denied") | [.timestamp, .actor.id, .event_type, .resource.id]'
  .venv/bin/kaudit tail {log_dir} | jq -r '.event_type' | sort | uniq -c | sort -rn
  .venv/bin/kaudit tail {log_dir} | grep -c hunter2     # 0: passwords never reach the log
  .venv/bin/kaudit exporters status -c {config_path}
""")
    if kafka:
        _kafka_demo(directory, count, console=console)


def _kafka_demo(directory: Path, count: int, *, console: bool) -> None:
    echo = click.echo
    echo(
        "kaudit demo: starting a local Apache Kafka with kaudit's broker auditor plugin "
        "(Kafka fetched from Maven Central and the plugin built with Maven, once)...",
        err=True,
    )

    def progress(message: str) -> None:
        echo(f"  {message}", err=True)

    try:
        plugin = broker_auditor_plugin(progress=progress)
    except (MissingToolError, KafkaDownloadError) as exc:  # `make demo` installs Maven
        echo(f"  the broker runs without kaudit's broker auditor: {exc}", err=True)
        plugin = None
    broker = LocalKafka(directory / "kafka", progress=progress, broker_auditor=plugin)
    try:
        info = broker.start()
    except KafkaAlreadyRunningError as exc:
        info = exc.info
    audited = AUTHORIZER_CLASS in broker.config_file.read_text(encoding="utf-8")
    if plugin is not None and not audited:
        echo(f"  (the broker already running in {info.dir} has no broker auditor: stop it to "
             "see bypasses caught)", err=True)  # fmt: skip
    config_path = directory / "kaudit-kafka.yaml"
    config_path.write_text(
        _KAFKA_CONFIG.format(data=directory / "data-kafka", servers=info.sasl_bootstrap_servers),
        encoding="utf-8",
    )
    config = load_config(config_path)
    started = time.perf_counter()
    with (
        open_session(config, source="demo") as session,
        click.progressbar(length=count, label="  recording into Kafka", file=sys.stderr) as bar,
    ):
        generate(
            session, count, seed=int(time.time()) + 1, spread_seconds=86400, progress=bar.update
        )
        session.flush()
    elapsed = time.perf_counter() - started
    copied = sum(drain_all(config).values())
    url = f"kafka://admin:admin-secret@{info.sasl_bootstrap_servers}/__oprtr_audit_log"
    echo(f"""
Recorded {count} events into the Kafka topic __oprtr_audit_log in {elapsed:.2f}s (over
SCRAM-SHA-512, acks=all, keyed by resource), and the exporter read {copied} of them and
copied the ACL, topic and config changes to the topic audit-events as CloudEvents.

  broker         {info.sasl_bootstrap_servers} (SASL) / {info.bootstrap_servers} (plain)
  configuration  {config_path}

Look at them:
  .venv/bin/kaudit tail '{url}' -n 5
  .venv/bin/kaudit tail -c {config_path} --type 'access.*' | jq -c '[.actor.id, .resource.id]'
  .venv/bin/kaudit exporters status -c {config_path}

""")
    gateway_demo(directory, info, broker_auditor=audited)
    echo(f"""Stop the broker when done:
  .venv/bin/kaudit local-kafka stop --dir {directory / "kafka"}
""")
    if console:
        _console_demo(directory, info)


_CONSOLE_CONFIG = """\
# kaudit demo configuration: the web console on the local broker.
data_dir: {data}
cluster:
  environment: demo
audit:
  failure_policy: fail_open
console:
  listen: 127.0.0.1:{port}
  clusters:
    - name: local
      bootstrap_servers: [{servers}]
      security:                  # the console's own service credentials
        security_protocol: SASL_PLAINTEXT
        sasl_mechanism: SCRAM-SHA-512
        sasl_username: admin
        sasl_password: ${{KAUDIT_DEMO_KAFKA_PASSWORD:-admin-secret}}
  users:                         # hashes from `kaudit console hash-password`
    - username: admin
      name: Demo Admin
      password_hash: "{admin_hash}"
      roles: [ops]
    - username: dev
      name: Demo Developer
      password_hash: "{dev_hash}"
      roles: [dev]
  rbac:                          # Kpow's policy format
    admin_roles: [ops]
    policies:
      - resource: [cluster, "*"]
        effect: Allow
        actions: [ADMIN]
        role: ops
      - resource: [cluster, "*"]  # the seed's policy: no create, no delete
        effect: Allow
        actions: [TOPIC_INSPECT, TOPIC_EDIT, TOPIC_PRODUCE]
        role: dev
      - resource: [cluster, "*", topic, "payments-*"]
        effect: Deny
        actions: [TOPIC_PRODUCE]
        role: dev
  masking:
    - topics: ["payments-*"]
      fields: [card, iban]
"""

DEMO_LOGINS = {"admin": "admin-demo", "dev": "dev-demo"}
"""The console demo's users and their passwords, printed for the person trying it."""


def console_demo_config(data: Path, port: int, servers: str) -> str:
    """The console demo's configuration: the console on `servers`, its log in `data`."""
    from kaudit.console.auth.local import hash_password

    return _CONSOLE_CONFIG.format(
        data=data,
        port=port,
        servers=servers,
        admin_hash=hash_password(DEMO_LOGINS["admin"]),
        dev_hash=hash_password(DEMO_LOGINS["dev"]),
    )


def _console_port() -> int:
    """8080 when it is free, else any free port."""
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 8080))
        except OSError:
            return free_port_block(1)
    return 8080


def _console_demo(directory: Path, info: KafkaInfo) -> None:
    """The console on the local broker until Ctrl-C, with an admin and a limited user."""
    import signal
    import threading

    from kaudit.console.serve import ConsoleServer

    echo = click.echo
    config_path = directory / "kaudit-console.yaml"
    config_path.write_text(
        console_demo_config(
            directory / "data-console", _console_port(), info.sasl_bootstrap_servers
        ),
        encoding="utf-8",
    )
    config = load_config(config_path)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with open_session(config, source="console") as session:
        server = ConsoleServer(config, session.recorder)
        server.start()
        echo(f"""The web console is serving the local broker; every action in it is audited.

  console        {server.url}
  logins         admin / {DEMO_LOGINS["admin"]}  (role ops: everything, and every user's log)
                 dev / {DEMO_LOGINS["dev"]}      (role dev, the seed's policy: inspect, edit
                                      and produce; no create or delete, no producing
                                      to payments-*)
  configuration  {config_path}

Watch what people do in it:
  .venv/bin/kaudit tail {config.log_dir} -f | jq -c '[.actor.id, .details.console_action]'
  .venv/bin/kaudit console -c {config_path}     # the console on its own, later

Ctrl-C stops the console.
""")
        try:
            stop.wait()
        finally:
            server.stop()


_GATEWAY_CONFIG = """\
# kaudit demo configuration: the audit gateway in front of the local broker.
data_dir: {data}
cluster:
  id: local-kafka
  environment: demo
audit:
  failure_policy: fail_open
gateway:
  upstream: {servers}
  listen: 127.0.0.1:{port}
  records_window_seconds: 60
"""


def gateway_demo(directory: Path, info: KafkaInfo, *, broker_auditor: bool) -> Path:
    """Real clients through the gateway; what they did, as the gateway recorded it. With
    `broker_auditor` (the broker runs the plugin), also what the broker authorized, and
    alice going around the gateway caught as a bypass. Returns the gateway's configuration."""
    from confluent_kafka import Consumer, KafkaException, Producer
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported at run time
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourcePatternType,
        ResourceType,
    )
    from confluent_kafka.cimpl import NewTopic

    from kaudit.gateway import GatewayThread, build_gateway

    echo = click.echo
    port = free_port_block(3)
    config_path = directory / "kaudit-gateway.yaml"
    text = _GATEWAY_CONFIG.format(
        data=directory / "data-gateway", servers=info.sasl_bootstrap_servers, port=port
    )
    if broker_auditor:
        text += BROKER_AUDITOR_CONFIG.format(servers=info.bootstrap_servers)
    config_path.write_text(text, encoding="utf-8")
    config = load_config(config_path)
    topic = f"payments-{int(time.time())}"
    echo(f"kaudit demo: the audit gateway on 127.0.0.1:{port}, clients going through it", err=True)
    with open_session(config, source="gateway") as session:
        gateway = build_gateway(config, session)
        with GatewayThread(gateway):
            via = f"127.0.0.1:{port}"
            admin = AdminClient({**info.client_config("admin"), "bootstrap.servers": via})
            admin.create_topics([NewTopic(topic, 3, 1, config={"retention.ms": "86400000"})])[
                topic
            ].result(timeout=30)
            bindings = [
                AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:alice",
                           "*", AclOperation.READ, AclPermissionType.ALLOW),
                AclBinding(ResourceType.TOPIC, f"{topic}-", ResourcePatternType.PREFIXED,
                           "User:alice", "*", AclOperation.CREATE, AclPermissionType.ALLOW),
            ]  # fmt: skip
            for future in admin.create_acls(bindings).values():
                future.result(timeout=30)
            change = ConfigResource(
                ResourceType.TOPIC,
                topic,
                incremental_configs=[
                    ConfigEntry(
                        "retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET
                    )
                ],
            )
            for future in admin.incremental_alter_configs([change]).values():
                future.result(timeout=30)
            producer = Producer({**info.client_config("admin"), "bootstrap.servers": via,
                                 "client.id": "payments-writer"})  # fmt: skip
            for i in range(200):
                producer.produce(topic, f"payment {i}".encode())
            producer.flush(30)
            consumer = Consumer({**info.client_config("admin"), "bootstrap.servers": via,
                                 "group.id": "payments-audit-demo", "client.id": "payments-reader",
                                 "auto.offset.reset": "earliest"})  # fmt: skip
            consumer.subscribe([topic])
            read, deadline = 0, time.monotonic() + 30
            while read < 200 and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                read += message is not None and message.error() is None
            consumer.close()
            bob = AdminClient({**info.client_config("bob"), "bootstrap.servers": via})
            with contextlib.suppress(KafkaException):  # refused by the ACLs, and recorded
                bob.delete_topics([topic])[topic].result(timeout=30)
            # alice creates one topic through the gateway, and one straight at the broker.
            alice: dict[str, Any] = {**info.client_config("alice"), "log_level": 4}
            tool = AdminClient({**alice, "bootstrap.servers": via, "client.id": "alice-tool"})
            create_topic(tool, f"{topic}-archive")
            laptop = AdminClient({**alice, "client.id": "alice-laptop"})
            create_topic(laptop, f"{topic}-shadow")
            del admin, producer, bob, tool, laptop  # the clients go before the gateway does
            gc.collect()
        # Stopping the gateway closes the produce/consume window: its records are written.
        session.flush()
        if broker_auditor:
            catch_bypass(config, session, f"{topic}-shadow")
    lines = [orjson.loads(line) for _, line in LogReader(config.log_dir).iter_lines()]
    shown, seen = [], set()
    for e in lines:  # this run's; a request the broker authorizes twice shows once
        row = (e["context"]["source"], e["event_type"], e["actor"]["id"], e["resource"]["id"])
        hidden = e["event_type"] in ("auth.login", "kafka.request")
        if not hidden and topic in str(e["resource"]["id"]) and row not in seen:
            seen.add(row)
            shown.append(e)
    what = "The gateway and the broker auditor" if broker_auditor else "The gateway"
    echo(f"\n{what} recorded these changes, data access and refusals ({len(lines)} events):")
    for e in shown:
        details = e["details"] or {}
        extra = ""
        if e["event_type"].startswith("records."):  # the broker counts requests, not records
            extra = f" count={details['count']}" if "count" in details else ""
            extra += f" requests={details['requests']}" if "requests" in details else ""
        echo(
            f"  {e['context']['source']:<8}{e['event_type']:<24}{e['actor']['id']:<11} "
            f"{e['resource']['type']}:{e['resource']['id']:<28} {e['action']['result']}{extra}"
        )
    if broker_auditor:
        echo(f"""
The broker auditor plugin recorded what the broker authorized (source broker), and kaudit
matched it with the gateway's records. alice created {topic}-shadow
straight at the broker, which no gateway saw: access.bypassed_gateway.
  .venv/bin/kaudit tail {config.log_dir} --type access.bypassed_gateway
  .venv/bin/kaudit run -c {config_path}     # the gateway and the broker auditor together""")
    echo(f"""
Run it yourself in front of any Kafka (clients connect to the gateway instead):
  .venv/bin/kaudit gateway --upstream {info.sasl_bootstrap_servers} --listen 127.0.0.1:9192
  .venv/bin/kaudit tail {config.log_dir} --type 'access.*'
""")
    return config_path
