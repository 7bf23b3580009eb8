"""A user's own log matches the provider's stable id, not the login: two OIDC accounts
that share a login (an email reused by another subject) never see each other's events.
The logins are recorded through the console's own recorder into a real local log."""

from __future__ import annotations

from kaudit.console.audit import RequestInfo
from kaudit.console.identity import ConsoleUser
from kaudit.console.userlog import user_events
from support.console import ConsoleHarness


def test_the_log_of_one_subject_leaves_out_another_with_the_same_login(
    console: ConsoleHarness,
) -> None:
    first = ConsoleUser(provider="oidc:sso", login="al@example.com", id="sub-1")
    second = ConsoleUser(provider="oidc:sso", login="al@example.com", id="sub-2")
    audit = console.app.state.console.recorder
    for n, user in enumerate((first, first, second)):
        audit.auth(
            "auth.login",
            provider=user.provider,
            login=user.login,
            user=user,
            info=RequestInfo(request_id=f"r{n}", source_address="192.0.2.1"),
            result="success",
        )
    console.events()  # waits until written
    mine = user_events(console.config, "oidc:sso", "sub-1", 100)
    assert [e["details"]["user"]["id"] for e in mine] == ["sub-1", "sub-1"]
    theirs = user_events(console.config, "oidc:sso", "sub-2", 100)
    assert [e["details"]["user"]["id"] for e in theirs] == ["sub-2"]
