"""Redirect targets after login stay on the site; the login limiter's window slides."""

from __future__ import annotations

import pytest

from kaudit.console.sessions import LoginLimiter, safe_next


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/clusters/a/topics?x=1", "/clusters/a/topics?x=1"),
        ("/", "/"),
        (None, "/"),
        ("", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok\r\nLocation: x", "/"),
        ("relative/path", "/"),
    ],
)
def test_safe_next(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_the_limiter_counts_per_user_and_per_address_within_its_window() -> None:
    limiter = LoginLimiter(per_user=2, per_address=3, window_seconds=0.2)
    limiter.failed("alice", "10.0.0.1")
    assert not limiter.blocked("alice", "10.0.0.1")
    limiter.failed("alice", "10.0.0.2")
    assert limiter.blocked("alice", "10.0.0.9")
    assert not limiter.blocked("bob", "10.0.0.1")
    limiter.failed("bob", "10.0.0.1")
    limiter.failed("carol", "10.0.0.1")
    assert limiter.blocked("dave", "10.0.0.1")
