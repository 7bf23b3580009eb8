"""The console's logins import Authlib's httpx client without its deprecation warning,
which used to print in the middle of `make demo`."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_oidc_and_github_logins_prints_nothing() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", "import kaudit.console.auth.oidc, kaudit.console.auth.github"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stderr == ""
