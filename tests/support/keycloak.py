"""A real OpenID provider for the tests: Keycloak, from Maven Central, in dev mode.

`keycloak_home()` fetches `org.keycloak:keycloak-quarkus-dist:<version>:zip` with Maven
(`mvn dependency:copy`, so a fresh machine gets it from Maven Central and a machine that
has it in ~/.m2 does not download it again) and unpacks it once into the kaudit cache
(`$KAUDIT_CACHE_DIR`, else ~/.cache/kaudit). `running_keycloak()` starts
`bin/kc.sh start-dev` on free loopback ports with an in-memory database and the realm in
keycloak_realm.json imported, and waits until the realm's discovery document answers.

The realm (`kaudit`) has a confidential client that requires PKCE (S256) and puts the
realm roles in the ID token at `realm_access.roles`; a public client (PKCE only, no
secret) whose `groups` claim is in the userinfo answer only, as Okta and Entra ID often
do; and two users: alice (realm role `kafka-admin`, group `kafka-ops`) and bob
(`kafka-viewer`, no group).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from kaudit.dev.dist import cache_root
from kaudit.dev.files import file_lock, write_atomic
from kaudit.dev.ports import free_port_block

KEYCLOAK_VERSION = "26.4.7"
REALM = "kaudit"
CLIENT_ID = "kaudit-console"
CLIENT_SECRET = "kaudit-console-secret"
PUBLIC_CLIENT_ID = "kaudit-console-public"
USERS = {
    "alice": ("alice-password", "kafka-admin"),
    "bob": ("bob-password", "kafka-viewer"),
}
REALM_FILE = Path(__file__).with_name("keycloak_realm.json")

_ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{KEYCLOAK_VERSION}:zip"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
_COMPLETE_MARKER = ".kaudit-complete"
# Keycloak builds itself on the first start of a configuration (~40 s) and then boots
# (~20 s); on a loaded machine both take longer.
_START_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Keycloak:
    """A running Keycloak: where it is and the realm's client and users."""

    base_url: str
    log_file: Path

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/realms/{REALM}"


def keycloak_home() -> Path:
    """The unpacked Keycloak distribution, fetched and unpacked on first use."""
    root = cache_root() / "keycloak"
    root.mkdir(parents=True, exist_ok=True)
    home = root / KEYCLOAK_VERSION
    with file_lock(root / f".{KEYCLOAK_VERSION}.lock"):
        if not (home / _COMPLETE_MARKER).exists():
            _fetch(root, home)
    return home


def _fetch(root: Path, home: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError(
            "`mvn` is needed to fetch Keycloak from Maven Central (make system-deps)"
        )
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=root))
    try:
        subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                f"{_DEPENDENCY_PLUGIN}:copy",
                f"-Dartifact={_ARTIFACT}",
                f"-DoutputDirectory={staging}",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=True,
            timeout=900,
            cwd=staging,
        )
        archive = staging / f"keycloak-quarkus-dist-{KEYCLOAK_VERSION}.zip"
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                target = staging / info.filename
                zf.extract(info, staging)
                # zipfile drops Unix permissions: kc.sh must stay executable.
                mode = info.external_attr >> 16
                if mode and not info.is_dir():
                    target.chmod(stat.S_IMODE(mode))
        unpacked = staging / f"keycloak-{KEYCLOAK_VERSION}"
        (unpacked / _COMPLETE_MARKER).write_text(KEYCLOAK_VERSION)
        if home.exists():
            shutil.rmtree(home)
        unpacked.rename(home)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"mvn could not fetch {_ARTIFACT}: {exc.stderr or exc.stdout}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def running_keycloak(work_dir: Path) -> Iterator[Keycloak]:
    """Keycloak in dev mode with the test realm; stopped (its process group) on exit."""
    home = keycloak_home()
    import_dir = home / "data" / "import"
    import_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(import_dir / f"{REALM}-realm.json", REALM_FILE.read_text(encoding="utf-8"))
    port = free_port_block(2)
    log_file = work_dir / "keycloak.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KC_")}
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [
                str(home / "bin" / "kc.sh"),
                "start-dev",
                "--http-host=127.0.0.1",
                f"--http-port={port}",
                f"--http-management-port={port + 1}",
                "--db=dev-mem",
                "--import-realm",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    keycloak = Keycloak(f"http://127.0.0.1:{port}", log_file)
    try:
        _wait_ready(keycloak, process)
        yield keycloak
    finally:
        _stop(process)


def _wait_ready(keycloak: Keycloak, process: subprocess.Popen[bytes]) -> None:
    url = f"{keycloak.issuer}/.well-known/openid-configuration"
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"Keycloak exited with {process.returncode}:\n{_tail(keycloak.log_file)}"
            )
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(
        f"Keycloak did not serve {url} within {_START_TIMEOUT_S:.0f} s:\n{_tail(keycloak.log_file)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
