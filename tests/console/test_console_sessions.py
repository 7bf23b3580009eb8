"""Redirect targets after login stay on the site; the login limiter's window slides."""

from __future__ import annotations

import time

import pytest

from kaudit.console.identity import ConsoleUser
from kaudit.console.sessions import LoginLimiter, SessionStore, safe_next


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


def test_an_attempt_counts_until_withdrawn_and_is_refused_past_the_limit() -> None:
    limiter = LoginLimiter(per_user=2, per_address=10, window_seconds=60)
    first = limiter.attempt("alice", "10.0.0.1")
    second = limiter.attempt("alice", "10.0.0.1")
    assert first is not None and second is not None
    assert limiter.attempt("alice", "10.0.0.1") is None  # two in flight fill the limit
    limiter.withdraw("alice", "10.0.0.1", second)
    assert not limiter.blocked("alice", "10.0.0.1")
    limiter.withdraw("alice", "10.0.0.1", first)
    assert len(limiter) == 0


def test_ended_sessions_and_old_failures_are_forgotten() -> None:
    sessions = SessionStore(idle_seconds=0.05, max_seconds=10)
    first = sessions.start(ConsoleUser("local", "a", "a"))
    time.sleep(0.1)  # the idle timeout itself is under test
    sessions.start(ConsoleUser("local", "b", "b"))
    assert sessions.touch(first) is None
    assert len(sessions) == 1

    limiter = LoginLimiter(per_user=1, per_address=1, window_seconds=0.05)
    limiter.failed("a", "10.0.0.1")
    time.sleep(0.1)
    assert not limiter.blocked("a", "10.0.0.1")
    assert len(limiter) == 0
