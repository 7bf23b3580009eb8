"""The Go and Node test clients (tests/clients/go, tests/clients/node), built from source.

`go_client(name)` builds the franz-go and Sarama clients with the Go toolchain (modules
from the Go module proxy, pinned by go.sum); `node_client()` installs kafkajs with
`npm ci` (pinned by package-lock.json). Each result is cached under kaudit's cache directory
(``$KAUDIT_CACHE_DIR``, else ``~/.cache/kaudit``) in a folder named by a hash of the
client's sources, so a fresh machine builds once and a changed client builds anew. A
missing toolchain fails the test with what to install; it never skips.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from kaudit.dev.dist import cache_root

CLIENTS = Path(__file__).resolve().parents[1] / "clients"


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    assert path, f"`{name}` is not installed: the gateway's {package} client tests need it"
    return path


def _cached(kind: str, sources: list[Path]) -> tuple[Path, bool]:
    """(the cache folder for these sources, whether it is complete)."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(str(source.relative_to(CLIENTS)).encode() + b"\0" + source.read_bytes())
    folder = cache_root() / "test-clients" / kind / digest.hexdigest()[:16]
    return folder, (folder / ".complete").exists()


def _publish(staging: Path, folder: Path) -> None:
    """Move a finished build into place; a concurrent run that finished first wins."""
    (staging / ".complete").touch()
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(staging, folder)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        assert (folder / ".complete").exists(), f"could not publish {folder}"


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"


def go_client(name: str) -> Path:
    """The executable of Go client `name` (``franz``: franz-go, ``sarama``: Sarama), built
    once per version of the Go module's sources."""
    source = CLIENTS / "go"
    files = [*sorted(source.glob("*/*.go")), source / "go.mod", source / "go.sum"]
    folder, complete = _cached("go", files)
    binary = folder / f"kaudit-{name}-client"
    if complete:
        return binary
    go = _tool("go", "Go")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent))
    for client in sorted(p.parent.name for p in source.glob("*/main.go")):
        _run([go, "build", "-o", str(staging / f"kaudit-{client}-client"), f"./{client}"], source)
    _publish(staging, folder)
    return binary


def node_client() -> tuple[list[str], dict[str, str]]:
    """(the command that runs the kafkajs client, the environment that finds kafkajs),
    its modules installed once per version of package.json and package-lock.json."""
    source = CLIENTS / "node"
    manifests = [source / "package.json", source / "package-lock.json"]
    folder, complete = _cached("node", manifests)
    node = _tool("node", "Node")
    if not complete:
        npm = _tool("npm", "Node")
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent))
        for manifest in manifests:
            shutil.copy(manifest, staging / manifest.name)
        _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=staging)
        _publish(staging, folder)
    env = {**os.environ, "NODE_PATH": str(folder / "node_modules")}
    return [node, str(source / "client.js")], env
