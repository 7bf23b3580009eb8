"""The broker auditor's part of `kaudit demo` (`kaudit.demo`): the gateway demo's
``broker_auditor:`` section, a topic created as soon as a fresh ACL allows it, and the
decision reader and bypass detector run until a direct-to-broker action is caught."""

from __future__ import annotations

import time
from typing import Any

import click

from kaudit.brokeraudit import DecisionReader
from kaudit.brokeraudit.service import bypass_detector
from kaudit.config import Config
from kaudit.log.segments import LogReader
from kaudit.session import AuditSession

BROKER_AUDITOR_CONFIG = """\
broker_auditor:                  # the broker auditor plugin's decisions, read beside the gateway
  bootstrap_servers: [{servers}]
  bypass:
    window_seconds: 3            # how long a broker decision waits for the gateway's record
"""


def create_topic(admin: Any, name: str) -> None:
    """Create topic `name`, waiting while a new ACL allowing it reaches the broker."""
    from confluent_kafka import KafkaException
    from confluent_kafka.cimpl import NewTopic

    deadline = time.monotonic() + 30
    while True:
        try:
            admin.create_topics([NewTopic(name, 1, 1)])[name].result(timeout=30)
            return
        except KafkaException as exc:
            if exc.args[0].code() != 29 or time.monotonic() > deadline:  # not authorized yet
                raise
            time.sleep(0.2)


def catch_bypass(config: Config, session: AuditSession, topic: str) -> None:
    """Read the broker auditor's decisions into the session and run the bypass detector
    until it has reported the creation of `topic` (at most a minute)."""
    assert config.broker_auditor is not None
    reader = DecisionReader(config.broker_auditor, session.recorder, poll_s=0.2)
    detector = bypass_detector(config, session.recorder)
    assert detector is not None
    echo = click.echo
    echo(f"kaudit demo: the broker auditor's decisions, waiting for {topic}'s bypass", err=True)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            reader.poll_once()
            if detector.poll() and any(
                b'"access.bypassed_gateway"' in line and topic.encode() in line
                for _, line in LogReader(config.log_dir).iter_lines()
            ):
                return
        echo(f"  no bypass of {topic} reported within a minute", err=True)
    finally:
        reader.close()
        detector.close()
