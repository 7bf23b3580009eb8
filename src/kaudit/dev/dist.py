"""Apache Kafka assembled from Maven Central, cached per version, and its Java tools.

This module owns the on-disk Kafka "distribution" the local broker runs from: a
generated pom, ``mvn dependency:copy-dependencies`` into
``~/.cache/kaudit/kafka/<version>/lib`` (``$XDG_CACHE_HOME`` or ``$KAUDIT_CACHE_DIR``
move it), the quiet log4j2 configuration for Kafka's command-line tools, and
`run_kafka_tool` to run those tools. No download archive is used: Maven Central is
reachable wherever the project runs, and the jars it serves are the ones the release
tarball is built from.

The cache is published atomically: jars are copied into a staging directory next to
``lib``, checked, marked complete, and only then renamed to ``lib``. An interrupted
download therefore leaves a staging directory (removed by the next run) and never a
``lib`` that looks complete. A per-version file lock serializes concurrent first runs.
Where a cached version keeps its files (`KafkaDist`) is `kaudit.dev.files`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

from kaudit.dev.errors import KafkaDownloadError, KafkaToolError, MissingToolError
from kaudit.dev.files import KafkaDist, file_lock, write_atomic

# The newest Kafka release on Maven Central when this was written (checked with
# `mvn dependency:get -Dartifact=org.apache.kafka:kafka_2.13:4.3.1:pom`).
KAFKA_VERSION = "4.3.1"

# log4j2 is not in Kafka's published POMs at the version Kafka ships in its tarball
# (log4j-slf4j-impl is "releaseOnly" in Kafka's build), so it is pinned here the way
# Kafka's gradle/dependencies.gradle pins it for each release line.
_LOG4J_VERSIONS: tuple[tuple[tuple[int, int, int], str], ...] = (
    ((4, 2, 1), "2.25.4"),
    ((4, 2, 0), "2.25.3"),
    ((4, 0, 0), "2.24.3"),
)
_MIN_JAVA = 17
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
_COMPLETE_MARKER = ".kaudit-complete"
_MVN_TIMEOUT_S = 900.0

# Kafka's tools log at WARN to stderr, as upstream config/tools-log4j2.yaml does, so
# their stdout carries only their answer.
TOOLS_LOG4J2 = """\
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
"""

# Short-lived JVMs: a small heap, one GC thread, C1 only. Kafka's scripts use -Xmx256M
# for tools; C1-only and SerialGC cut start-up CPU, which matters on two cores.
TOOL_JVM_FLAGS: tuple[str, ...] = (
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)

Progress = Callable[[str], None]


def cache_root() -> Path:
    """The kaudit cache directory (the Kafka jars live under ``kafka/<version>``)."""
    explicit = os.environ.get("KAUDIT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "kaudit"


def log4j_version_for(kafka_version: str) -> str:
    """The log4j2 version Kafka's own release of `kafka_version` ships with."""
    key = _version_key(kafka_version)
    for since, log4j in _LOG4J_VERSIONS:
        if key >= since:
            return log4j
    raise KafkaDownloadError(f"Kafka {kafka_version} is not supported: kaudit needs Kafka 4.x")


def render_pom(kafka_version: str) -> str:
    """The pom whose runtime dependencies are a Kafka broker plus its Java CLI tools."""
    log4j = log4j_version_for(kafka_version)
    # kafka-tools drags in connect-runtime (Jetty, Jersey) only for ConnectPluginPath;
    # the broker and the topic/ACL/config tools never load it. slf4j-api is pinned to
    # 1.7 because an SLF4J 2.x API ignores the 1.x log4j binding Kafka uses.
    return f"""\
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.kaudit</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{kafka_version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka_version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>{kafka_version}</version>
      <exclusions>
        <exclusion>
          <groupId>org.apache.kafka</groupId>
          <artifactId>connect-runtime</artifactId>
        </exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-api</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>1.7.36</version>
    </dependency>
  </dependencies>
</project>
"""


def require_java() -> str:
    """Path of a `java` of version 17 or later, or `MissingToolError` saying what to install."""
    java = shutil.which("java")
    if java is None:
        raise MissingToolError(
            "`java` was not found on PATH: the local Kafka needs a Java 17+ runtime "
            "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless)"
        )
    major = _java_major(java)
    if major < _MIN_JAVA:
        raise MissingToolError(
            f"{java} is Java {major}; Kafka 4 needs Java {_MIN_JAVA} or later "
            "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless)"
        )
    return java


def require_mvn() -> str:
    """Path of `mvn`, or `MissingToolError` saying what to install."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingToolError(
            "`mvn` was not found on PATH: the local Kafka is assembled from Maven Central "
            "with Apache Maven (Debian/Ubuntu: apt-get install maven)"
        )
    return mvn


def cached_dist(kafka_version: str = KAFKA_VERSION, *, cache_dir: Path | None = None) -> KafkaDist:
    """The cache location of `kafka_version`, whether or not it has been downloaded."""
    root = cache_dir if cache_dir is not None else cache_root()
    return KafkaDist(version=kafka_version, home=root / "kafka" / kafka_version)


def is_complete(dist: KafkaDist) -> bool:
    """Whether `dist` holds a fully downloaded and checked set of jars."""
    return (dist.lib_dir / _COMPLETE_MARKER).is_file()


def ensure_kafka(
    kafka_version: str = KAFKA_VERSION,
    *,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> KafkaDist:
    """Return the cached Kafka `kafka_version`, downloading it with Maven the first time."""
    dist = cached_dist(kafka_version, cache_dir=cache_dir)
    if not is_complete(dist):
        dist.home.mkdir(parents=True, exist_ok=True)
        with file_lock(dist.home / ".lock"):
            # Another process may have finished the download while this one waited.
            if not is_complete(dist):
                _download(dist, progress)
    _write_if_changed(dist.tools_log4j_config, TOOLS_LOG4J2)
    return dist


def run_kafka_tool(
    main_class: str,
    args: Sequence[str],
    *,
    dist: KafkaDist | None = None,
    check: bool = True,
    timeout: float = 120.0,
    jvm_flags: Sequence[str] = TOOL_JVM_FLAGS,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one of Kafka's Java command-line tools and capture its output.

    `main_class` is what Kafka's bin/ scripts run, e.g. ``org.apache.kafka.tools.AclCommand``,
    ``org.apache.kafka.tools.TopicCommand``, ``kafka.admin.ConfigCommand``,
    ``kafka.tools.StorageTool``. With `check`, a non-zero exit raises `KafkaToolError`
    carrying both output streams. `input` is written to the tool's stdin (e.g. records for
    the console producer).
    """
    java = require_java()
    if dist is None:
        dist = ensure_kafka()
    cmd = [
        java,
        *jvm_flags,
        f"-Dlog4j2.configurationFile={dist.tools_log4j_config}",
        "-cp",
        dist.classpath,
        main_class,
        *args,
    ]
    try:
        done = subprocess.run(
            cmd,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise KafkaToolError(
            f"{main_class} did not finish within {timeout:.0f} s",
            returncode=-1,
            stdout=_text(exc.stdout),
            stderr=_text(exc.stderr),
        ) from exc
    if check and done.returncode != 0:
        raise KafkaToolError(
            f"{main_class} {' '.join(args)} exited with {done.returncode}:\n"
            f"{_tail(done.stderr or done.stdout)}",
            returncode=done.returncode,
            stdout=done.stdout,
            stderr=done.stderr,
        )
    return done


def _download(dist: KafkaDist, progress: Progress | None) -> None:
    mvn = require_mvn()
    require_java()
    # Leftovers of interrupted runs; safe to remove because we hold the lock.
    for stale in dist.home.glob("staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if dist.lib_dir.exists():
        # A lib without the completion marker was not published by this module.
        shutil.rmtree(dist.lib_dir)
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=dist.home))
    try:
        pom = staging / "pom.xml"
        pom.write_text(render_pom(dist.version), encoding="utf-8")
        lib = staging / "lib"
        if progress is not None:
            progress(f"Fetching Apache Kafka {dist.version} from Maven Central into {dist.home}")
        started = time.monotonic()
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom),
            f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={lib}",
        ]
        try:
            done = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_MVN_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise KafkaDownloadError(
                f"mvn did not finish within {_MVN_TIMEOUT_S:.0f} s fetching Kafka {dist.version}"
            ) from exc
        if done.returncode != 0:
            raise KafkaDownloadError(
                f"mvn could not fetch Kafka {dist.version} from Maven Central "
                f"(exit {done.returncode}); is the version released and the network up?\n"
                f"{_tail(done.stdout + done.stderr)}"
            )
        jars = sorted(p.name for p in lib.glob("*.jar"))
        _check_jars(dist.version, jars)
        marker = {"kafka_version": dist.version, "jars": jars, "created": time.time()}
        (lib / _COMPLETE_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        shutil.copyfile(pom, dist.home / "pom.xml")
        # The publishing step: rename is atomic within one file system.
        os.rename(lib, dist.lib_dir)
        if progress is not None:
            elapsed = time.monotonic() - started
            progress(f"Fetched {len(jars)} jars in {elapsed:.1f} s")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_jars(kafka_version: str, jars: list[str]) -> None:
    required = [
        f"kafka_2.13-{kafka_version}.jar",
        f"kafka-clients-{kafka_version}.jar",
        f"kafka-server-{kafka_version}.jar",
        f"kafka-tools-{kafka_version}.jar",
    ]
    missing = [name for name in required if name not in jars]
    if not any(name.startswith("log4j-slf4j-impl-") for name in jars):
        # Without the binding SLF4J logs nothing, and the broker log stays empty.
        missing.append("log4j-slf4j-impl-*.jar")
    if missing:
        raise KafkaDownloadError(
            f"mvn finished but the Kafka {kafka_version} jars are incomplete: "
            f"missing {', '.join(missing)}"
        )


@cache
def _java_major(java: str) -> int:
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MissingToolError(f"{java} -version failed: {exc}") from exc
    # `openjdk version "17.0.15" 2025-04-15`, or `java version "1.8.0_392"` for Java 8.
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if match is None:
        raise MissingToolError(f"cannot tell the version of {java}: {done.stderr.strip()}")
    first = int(match.group(1))
    return int(match.group(2) or 0) if first == 1 else first


def _version_key(version: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version)
    if match is None:
        raise KafkaDownloadError(f"not a Kafka release version: {version!r} (e.g. 4.3.1)")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except FileNotFoundError:
        pass
    write_atomic(path, text)


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
