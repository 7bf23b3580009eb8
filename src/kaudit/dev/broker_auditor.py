"""kaudit's broker auditor plugin for the local broker: its jar, built with Maven, and the
broker properties that load it.

It owns building ``broker-auditor/`` (the Java module at the top of the repository) into
a jar cached under ``<cache>/broker-auditor/<hash>/`` — the hash covers the module's
sources and the Kafka version it is built against, so a changed plugin or Kafka builds
anew and an unchanged one never twice — and `BrokerAuditorPlugin`, what `LocalKafka`
adds to a broker that runs it: the jar on the classpath, ``authorizer.class.name`` and
the ``kaudit.audit.*`` settings: the decision topic on the broker's own PLAINTEXT
listener, and ``User:ANONYMOUS`` (that listener's principal, which the broker itself uses
to reach its peers and the controller) as the brokers' principal, so the harness's
PLAINTEXT traffic counts as the broker's own and is left out, as in a real cluster the
brokers' principal's is. Clients on the SASL listener, super users included, are recorded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kaudit.dev.dist import KAFKA_VERSION, Progress, cache_root, require_java, require_mvn
from kaudit.dev.errors import KafkaDownloadError, MissingToolError
from kaudit.dev.files import file_lock
from kaudit.dev.info import KafkaPorts

AUTHORIZER_CLASS = "kaudit.broker.AuditingAuthorizer"
DECISIONS_TOPIC = "__kaudit_broker_decisions"
"""The topic the plugin sends its decision records to unless ``kaudit.audit.topic`` says
otherwise."""
BROKER_PRINCIPAL = "User:ANONYMOUS"
"""The local broker's own principal: its PLAINTEXT listener's, which it uses as the
inter-broker and controller path."""
JAR_NAME = "kaudit-broker-auditor.jar"
_COMPLETE = ".complete"
_MVN_TIMEOUT_S = 900.0
_SOURCE_ENV = "KAUDIT_BROKER_AUDITOR_SRC"


def source_dir() -> Path:
    """The plugin's Maven module: ``$KAUDIT_BROKER_AUDITOR_SRC``, else ``broker-auditor/``
    of the checkout kaudit runs from."""
    explicit = os.environ.get(_SOURCE_ENV)
    folder = (
        Path(explicit).expanduser()
        if explicit
        else Path(__file__).resolve().parents[3] / "broker-auditor"
    )
    if not (folder / "pom.xml").is_file():
        raise MissingToolError(
            f"the broker auditor's sources are not at {folder} (no pom.xml): run kaudit "
            f"from a checkout of its repository, or set {_SOURCE_ENV} to its broker-auditor "
            "directory"
        )
    return folder


def _sources(folder: Path) -> list[Path]:
    return [folder / "pom.xml", *sorted((folder / "src").rglob("*.java"))]


def ensure_jar(
    kafka_version: str = KAFKA_VERSION,
    *,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> Path:
    """The plugin jar built against `kafka_version`, built with Maven the first time."""
    folder = source_dir()
    digest = hashlib.sha256(kafka_version.encode())
    for path in _sources(folder):
        digest.update(b"\0" + str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    root = (cache_dir if cache_dir is not None else cache_root()) / "broker-auditor"
    target = root / digest.hexdigest()[:16]
    jar = target / JAR_NAME
    if (target / _COMPLETE).exists():
        return jar
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / ".lock"):
        if not (target / _COMPLETE).exists():
            _build(folder, target, kafka_version, progress)
    return jar


def _build(folder: Path, target: Path, kafka_version: str, progress: Progress | None) -> None:
    mvn = require_mvn()
    require_java()
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=target.parent))
    try:
        # Built in a copy, so the checkout gets no target/ and two versions never mix.
        for path in _sources(folder):
            dest = staging / path.relative_to(folder)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        if progress is not None:
            progress(f"Building kaudit's broker auditor for Kafka {kafka_version} with Maven")
        cmd = [mvn, "-B", "-q", "package", "-DskipTests", f"-Dkafka.version={kafka_version}"]
        try:
            done = subprocess.run(
                cmd,
                cwd=staging,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_MVN_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise KafkaDownloadError(
                f"mvn did not build the broker auditor within {_MVN_TIMEOUT_S:.0f} s"
            ) from exc
        built = sorted((staging / "target").glob("kaudit-broker-auditor-*.jar"))
        if done.returncode != 0 or not built:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
            raise KafkaDownloadError(
                f"mvn could not build the broker auditor in {folder} (exit "
                f"{done.returncode}):\n{tail}"
            )
        out = staging / "out"
        out.mkdir()
        shutil.copyfile(built[0], out / JAR_NAME)
        (out / _COMPLETE).touch()
        shutil.rmtree(target, ignore_errors=True)
        os.rename(out, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclass(frozen=True)
class BrokerAuditorPlugin:
    """What a local broker running kaudit's auditor gets: `jar` on its classpath, and the
    properties `properties` gives (`settings` are ``kaudit.audit.*`` keys without the
    prefix, e.g. ``{"queue.capacity": "100"}``)."""

    jar: Path
    settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return self.settings.get("topic", DECISIONS_TOPIC)

    def properties(self, host: str, ports: KafkaPorts) -> dict[str, str]:
        return {
            "authorizer.class.name": AUTHORIZER_CLASS,
            "kaudit.audit.bootstrap.servers": f"{host}:{ports.plaintext}",
            "kaudit.audit.broker.principals": BROKER_PRINCIPAL,
            # Its producer uses that PLAINTEXT listener, the broker's own path, too.
            "kaudit.audit.principal": BROKER_PRINCIPAL,
            **{f"kaudit.audit.{key}": value for key, value in self.settings.items()},
        }


def broker_auditor_plugin(
    settings: Mapping[str, str] | None = None,
    *,
    kafka_version: str = KAFKA_VERSION,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> BrokerAuditorPlugin:
    """The plugin built (once) for `kafka_version`, with `settings`."""
    jar = ensure_jar(kafka_version, cache_dir=cache_dir, progress=progress)
    return BrokerAuditorPlugin(jar, dict(settings or {}))
