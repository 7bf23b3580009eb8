"""A fresh clone installs quietly and its README stays inside the repository: the
package metadata uses the SPDX `project.license` string and `license-files` (a license
table makes setuptools print deprecation blocks at every `make demo`), and every link
in README.md points at a file of the repository or an anchor in it."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.licenses import canonicalize_license_expression
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def test_the_license_is_an_spdx_string_with_its_files_in_the_repository() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    license_ = pyproject["project"]["license"]
    assert isinstance(license_, str), "project.license as a table is deprecated by setuptools"
    assert canonicalize_license_expression(license_) == license_
    for name in pyproject["project"]["license-files"]:
        assert (ROOT / name).is_file(), name
    # SPDX strings and license-files need setuptools 77 or later in the build.
    backend = [Requirement(r) for r in pyproject["build-system"]["requires"]]
    setuptools = next(r for r in backend if r.name == "setuptools")
    assert not setuptools.specifier.contains(Version("76.9")), setuptools


def test_readme_links_only_to_files_in_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    for target in targets:
        if target.startswith(("#", "http://", "https://", "mailto:")):
            continue
        path = (ROOT / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"README links outside the repository: {target}"
        assert path.exists(), f"README links to a missing file: {target}"


def test_building_the_package_prints_nothing() -> None:
    """What `make demo` runs first (`pip install --quiet -e .`) builds the metadata with
    the newest setuptools in an isolated environment: it must print no warning. A dry
    run builds the same metadata and installs nothing."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--no-deps", "-e",
         str(ROOT)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == "", done.stdout + done.stderr
