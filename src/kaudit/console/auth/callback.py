"""What every OAuth-style login checks when the provider sends the browser back: that
this browser started a login, that the provider did not refuse, that the state matches
in constant time, and that the login did not take too long. `LoginError` carries the
reason a login cannot finish to `LoginHooks.login_failed`."""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["LOGIN_TIMEOUT_S", "LoginError", "checked_code"]

LOGIN_TIMEOUT_S = 600.0
"""How long a user may take at the provider before the pending login is refused."""

# The provider's error description is shown in the failure reason, which ends up in an
# audit event; whoever holds the browser can write it, so it is kept short.
_MAX_DESCRIPTION = 200


class LoginError(Exception):
    """A login that cannot finish; `reason` goes to `login_failed`, with the login when
    it is known by then."""

    def __init__(self, reason: str, login: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.login = login


def checked_code(params: Mapping[str, str], pending: Any, provider_label: str) -> str:
    """The authorization code of a callback whose `pending` login (as the login route
    stored it in the session) matches; else `LoginError` saying what was wrong."""
    if not isinstance(pending, dict):
        raise LoginError(
            "no login in progress for this browser (the session cookie was missing or expired)"
        )
    error = params.get("error")
    if error:
        description = (params.get("error_description") or "")[:_MAX_DESCRIPTION]
        raise LoginError(
            f"{provider_label} refused: {error[:_MAX_DESCRIPTION]}"
            + (f" ({description})" if description else "")
        )
    state = params.get("state") or ""
    if not hmac.compare_digest(state.encode(), str(pending.get("state", "")).encode()):
        raise LoginError("the state does not match the login this browser started")
    if time.time() - float(pending.get("started", 0)) > LOGIN_TIMEOUT_S:
        raise LoginError(f"the login took longer than {LOGIN_TIMEOUT_S:.0f} s")
    code = params.get("code")
    if not code:
        raise LoginError(f"{provider_label}'s answer has no authorization code")
    return code
