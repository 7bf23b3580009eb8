"""The tools the deployment files are checked with (tests/deploy): helm and kubeconform,
built from the Go module proxy with `go install` at pinned versions into kaudit's cache
directory (``$KAUDIT_CACHE_DIR``, else ``~/.cache/kaudit``), and the Kubernetes JSON
schemas kubeconform validates against, from the `kubernetes-validate` package on PyPI.

`make test` builds the tools first (`make deploy-tools` runs this module), since
building helm takes minutes; a test that finds one missing fails saying so.

kubernetes-validate ships each resource's schema with its definitions in a shared
`_definitions.json` that its `$ref`s name by an absolute path (`/api/...`), which
kubeconform cannot follow; `kubernetes_schemas` writes the schemas of the kinds asked
for with those definitions inlined, so each file stands alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import kubernetes_validate

from kaudit.dev.dist import cache_root

TOOLS = {
    "helm": ("helm.sh/helm/v4/cmd/helm", "v4.3.2"),
    "kubeconform": ("github.com/yannh/kubeconform/cmd/kubeconform", "v0.7.0"),
}
KUBERNETES_VERSION = "1.37.0"
_LOCATION = (
    "/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}"
    "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
)
SCHEMAS = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"


def tool_path(name: str) -> Path:
    version = TOOLS[name][1]
    return cache_root() / "tools" / f"{name}-{version}" / name


def tool(name: str) -> str:
    """The path of `name` (helm, kubeconform); fails the test when it was not built."""
    path = tool_path(name)
    assert path.exists(), (
        f"{path} is missing: `make deploy-tools` builds it (Go from the module proxy)"
    )
    return str(path)


def build_tools() -> None:
    """`go install` each tool not yet in the cache."""
    go = shutil.which("go")
    if go is None:
        raise SystemExit("go is not installed: `make system-deps` installs it")
    for name, (module, version) in TOOLS.items():
        path = tool_path(name)
        if path.exists():
            continue
        print(f"building {name} {version} with go install (a few minutes the first time)")
        env = {**os.environ, "GOBIN": str(path.parent), "CGO_ENABLED": "0"}
        subprocess.run([go, "install", f"{module}@{version}"], env=env, check=True)


def _kind_suffix(api_version: str) -> str:
    """kubeconform's {{ .KindSuffix }}: -<first part of the group>-<version>, or -<version>."""
    group, _, version = api_version.rpartition("/")
    return f"-{group.split('.')[0]}-{version}".lower() if group else f"-{version}".lower()


def kubernetes_schemas(target: Path, resources: Iterable[tuple[str, str]]) -> str:
    """Write stand-alone strict schemas for the (kind, apiVersion) pairs under `target`;
    the -schema-location template kubeconform reads them with."""
    source = SCHEMAS / f"v{KUBERNETES_VERSION}-local-strict"
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    out = target / f"v{KUBERNETES_VERSION}-local-strict"
    out.mkdir(parents=True, exist_ok=True)
    for kind, api_version in set(resources):
        name = f"{kind.lower()}{_kind_suffix(api_version)}.json"
        if not (source / name).exists():
            continue  # kubeconform reports the missing schema itself
        text = (source / name).read_text().replace('"/api/_definitions.json#/', '"#/')
        schema = json.loads(text)
        schema["$defs"] = json.loads(
            json.dumps(definitions).replace('"/api/_definitions.json#/', '"#/')
        )
        (out / name).write_text(json.dumps(schema))
    return str(target) + _LOCATION


if __name__ == "__main__":
    build_tools()
    sys.exit(0)
