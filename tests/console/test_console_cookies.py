"""The session cookie is Secure by default unless the console listens on loopback (where
http://127.0.0.1 must keep working); `secure_cookies` says so explicitly either way."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.console import console_config, harness


@pytest.mark.parametrize(
    ("listen", "setting", "secure"),
    [
        ("127.0.0.1:8080", None, False),
        ("[::1]:8080", None, False),
        ("localhost:8080", None, False),
        ("0.0.0.0:8080", None, True),
        ("console.example.com:443", None, True),
        ("0.0.0.0:8080", False, False),
        ("127.0.0.1:8080", True, True),
    ],
)
def test_the_session_cookie_is_secure_beyond_loopback(
    tmp_path: Path, listen: str, setting: bool | None, secure: bool
) -> None:
    extra = {} if setting is None else {"secure_cookies": setting}
    for console in harness(console_config(tmp_path, listen=listen, **extra)):
        cookie = console.client().get("/login").headers["set-cookie"]
        assert cookie.startswith("kaudit_session=")
        assert ("; secure" in cookie.lower()) == secure, cookie
