"""Headless Chromium for the console's browser tests: Debian's `chromium` package driven
by Playwright for Python (`executable_path`, since Playwright cannot download its own
browsers here). `browser_page()` yields a Playwright `Page`; when the test fails, a
screenshot of the page is kept under `KAUDIT_TEST_ARTIFACTS` (default
`test-artifacts/`) to see what the browser saw."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

__all__ = ["CHROMIUM", "browser_page", "chromium_path"]

CHROMIUM = "/usr/bin/chromium"


def chromium_path() -> str:
    """Debian's Chromium, or a clear error naming the package to install."""
    found = os.environ.get("KAUDIT_CHROMIUM") or shutil.which("chromium") or CHROMIUM
    if not Path(found).exists():
        raise RuntimeError(
            "Chromium is missing: install Debian's chromium package (make system-deps does)"
        )
    return found


@contextlib.contextmanager
def browser_page(name: str = "browser") -> Iterator[Page]:
    """A fresh headless Chromium page (its own cookies); a screenshot if the body fails."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            # The tests run as root in containers, where Chromium's sandbox cannot start.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            context = browser.new_context()
            page = context.new_page()
            page.set_default_timeout(30_000)
            try:
                yield page
            except BaseException:
                artifacts = Path(os.environ.get("KAUDIT_TEST_ARTIFACTS", "test-artifacts"))
                artifacts.mkdir(parents=True, exist_ok=True)
                safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name)
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(artifacts / f"{safe}.png"), full_page=True)
                raise
            finally:
                context.close()
        finally:
            browser.close()
