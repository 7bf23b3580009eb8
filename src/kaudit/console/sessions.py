"""Console sessions, CSRF tokens, safe redirects and login rate limits.

The session cookie is Starlette's signed cookie (HttpOnly, SameSite=Lax so a provider's
redirect back carries it, Secure unless served on loopback or `secure_cookies` is false);
it holds a random session id and the CSRF token. The sessions themselves live here, in
memory, so that a logout or a timeout ends them for good: a copied cookie of an ended
session opens nothing. Each has an idle and an absolute timeout; a login always starts a
new one (new id, new CSRF token).
"""

from __future__ import annotations

import collections
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from kaudit.console.identity import ConsoleUser

__all__ = ["LiveSession", "LoginLimiter", "SessionStore", "new_token", "safe_next"]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def safe_next(target: str | None) -> str:
    """`target` when it is a path on this site, else `/` (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 0x20 or c == "\\" for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


@dataclass
class LiveSession:
    user: ConsoleUser
    started: float
    seen: float = field(default=0.0)


class SessionStore:
    """Sessions by id, ended by logout, the idle timeout or the absolute timeout."""

    def __init__(self, idle_seconds: float, max_seconds: float) -> None:
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds
        self._sessions: dict[str, LiveSession] = {}
        self._lock = threading.Lock()

    def start(self, user: ConsoleUser) -> str:
        """A new session for `user`; its id."""
        sid = new_token()
        now = time.monotonic()
        with self._lock:
            # Ended sessions nobody came back to are dropped here, so memory stays bounded.
            for old in [k for k, v in self._sessions.items() if self._expired(v, now)]:
                del self._sessions[old]
            self._sessions[sid] = LiveSession(user, now, now)
        return sid

    def __len__(self) -> int:
        """Sessions held in memory (live, or ended and not yet dropped)."""
        return len(self._sessions)

    def _expired(self, live: LiveSession, now: float) -> bool:
        return now - live.seen > self.idle_seconds or now - live.started > self.max_seconds

    def touch(self, sid: str | None) -> ConsoleUser | None:
        """The user of a live session, marking it used now; None when it has ended."""
        if not sid:
            return None
        now = time.monotonic()
        with self._lock:
            live = self._sessions.get(sid)
            if live is None:
                return None
            if self._expired(live, now):
                del self._sessions[sid]
                return None
            live.seen = now
            return live.user

    def peek(self, sid: str | None) -> ConsoleUser | None:
        """The user of a live session, without marking it used (a stream that checks its
        session must not keep it from going idle); None when it has ended."""
        with self._lock:
            live = self._sessions.get(sid or "")
            if live is None or self._expired(live, time.monotonic()):
                return None
            return live.user

    def end(self, sid: str | None) -> ConsoleUser | None:
        """End a session; its user, if it was live."""
        with self._lock:
            live = self._sessions.pop(sid or "", None)
        return live.user if live is not None else None


class LoginLimiter:
    """Failed logins per user and per address within a sliding window."""

    def __init__(self, per_user: int, per_address: int, window_seconds: float) -> None:
        self.per_user = per_user
        self.per_address = per_address
        self.window = window_seconds
        self._failures: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> collections.deque[float]:
        times = self._failures.setdefault(key, collections.deque())
        while times and now - times[0] > self.window:
            times.popleft()
        return times

    def __len__(self) -> int:
        """Users and addresses with failures held in memory."""
        return len(self._failures)

    def _count(self, key: str, now: float) -> int:
        """Failures within the window; a key with none left is forgotten."""
        if key not in self._failures:
            return 0
        count = len(self._recent(key, now))
        if not count:
            del self._failures[key]
        return count

    def blocked(self, login: str | None, address: str | None) -> bool:
        """Whether another attempt for this login or from this address must wait."""
        with self._lock:
            return self._over(login, address, time.monotonic())

    def _over(self, login: str | None, address: str | None, now: float) -> bool:
        if login and self._count(f"user:{login}", now) >= self.per_user:
            return True
        return bool(address and self._count(f"addr:{address}", now) >= self.per_address)

    def attempt(self, login: str | None, address: str | None) -> float | None:
        """Count an attempt as failed before its password is checked, in one step with the
        check (so concurrent attempts cannot all pass it); None when it must wait. The
        stamp returned is given to `withdraw` once the attempt's outcome is known."""
        now = time.monotonic()
        with self._lock:
            if self._over(login, address, now):
                return None
            for key in self._keys(login, address):
                self._recent(key, now).append(now)
        return now

    def withdraw(self, login: str | None, address: str | None, stamp: float) -> None:
        """Take back the count of an attempt made with `attempt`."""
        with self._lock:
            for key in self._keys(login, address):
                times = self._failures.get(key)
                if times is not None and stamp in times:
                    times.remove(stamp)
                    if not times:
                        del self._failures[key]

    @staticmethod
    def _keys(login: str | None, address: str | None) -> list[str]:
        return [k for k, v in ((f"user:{login}", login), (f"addr:{address}", address)) if v]

    def failed(self, login: str | None, address: str | None) -> None:
        now = time.monotonic()
        with self._lock:
            if login:
                self._recent(f"user:{login}", now).append(now)
            if address:
                self._recent(f"addr:{address}", now).append(now)
