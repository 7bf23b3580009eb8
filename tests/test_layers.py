"""The layers in pyproject.toml's import-linter contracts hold, and they bite: an upward
import added to a copy of the package fails `lint-imports`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    """Run the project's contracts against the `kaudit` package found under `src`."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "src" / "kaudit",
        tmp_path / "kaudit",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def test_the_package_keeps_its_layers(package_copy: Path) -> None:
    result = lint_imports(package_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "upward_import", "broken"),
    [
        # The log reaching up into a source.
        ("log/cursor.py", "import kaudit.gateway.listener", "write path flows one way"),
        # The event model reaching up into the recorder.
        ("events/model.py", "import kaudit.recorder.core", "write path flows one way"),
        # An exporter reaching into the write path.
        ("exporters/file.py", "import kaudit.session", "never reach into sources"),
        # Integrity reaching into a reader of the log.
        ("integrity/chain.py", "import kaudit.store.index", "never import the readers"),
    ],
)
def test_an_upward_import_fails_the_check(
    package_copy: Path, module: str, upward_import: str, broken: str
) -> None:
    target = package_copy / "kaudit" / module
    source = target.read_text()
    head, sep, rest = source.partition("from __future__ import annotations\n")
    assert sep, f"{module} has no __future__ import to insert after"
    target.write_text(f"{head}{sep}{upward_import}\n{rest}")
    result = lint_imports(package_copy)
    assert result.returncode != 0, result.stdout
    assert broken in " ".join(result.stdout.split()), result.stdout
    assert "BROKEN" in result.stdout
