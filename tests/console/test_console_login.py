"""Local login: argon2id passwords, sessions (new id at login, logout, idle timeout),
auth.login / auth.logout / auth.failed events, and failed logins rate-limited per user
and per address."""

from __future__ import annotations

import time
from pathlib import Path

from click.testing import CliRunner

from kaudit.cli import main
from kaudit.console.auth.local import hash_password
from support.console import ConsoleHarness, console_config, harness, local_user, page_csrf


def _attempt(console: ConsoleHarness, username: str, password: str, client=None):  # type: ignore[no-untyped-def]
    client = client or console.client()
    token = page_csrf(client.get("/login").text)
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )


def test_login_records_auth_login_with_provider_and_address(console: ConsoleHarness) -> None:
    client = console.login("alice")
    assert client.get("/api/v1/me").json()["login"] == "alice"
    (event,) = console.events("auth.login")
    assert event["actor"]["id"] == "alice"
    assert event["actor"]["auth"] == "local"
    assert event["actor"]["ip_address"] == "testclient"
    assert event["details"]["provider"] == "local"
    assert event["details"]["user"]["email"] == "alice@example.com"
    assert event["action"]["result"] == "success"


def test_wrong_password_and_unknown_user_fail_alike(console: ConsoleHarness) -> None:
    wrong = _attempt(console, "alice", "nope")
    unknown = _attempt(console, "mallory", "nope")
    assert wrong.status_code == unknown.status_code == 401
    assert "Login failed" in wrong.text and "Login failed" in unknown.text
    failed = console.events("auth.failed")
    assert [e["actor"]["id"] for e in failed] == ["alice", "mallory"]
    assert all(e["action"]["result"] == "failure" for e in failed)
    assert all(e["details"]["provider"] == "local" for e in failed)


def test_failed_logins_are_limited_per_user(console: ConsoleHarness) -> None:
    for _ in range(3):
        assert _attempt(console, "alice", "nope").status_code == 401
    # The right password no longer helps: the limit holds before the password is checked.
    limited = _attempt(console, "alice", "ecila-pw")
    assert limited.status_code == 429
    assert console.events("auth.failed")[-1]["action"]["result"] == "denied"
    # Another user from the same address is not limited yet (5 per address).
    assert _attempt(console, "root", "toor-pw").status_code == 303


def test_failed_logins_are_limited_per_address(console: ConsoleHarness) -> None:
    for name in ("u1", "u2", "u3", "u4", "u5"):
        assert _attempt(console, name, "nope").status_code == 401
    assert _attempt(console, "alice", "ecila-pw").status_code == 429


def test_login_starts_a_new_session_and_logout_ends_it(console: ConsoleHarness) -> None:
    client = console.client()
    client.get("/login")
    anonymous = client.cookies.get("kaudit_session")
    console.login("alice", client=client)
    logged_in = client.cookies.get("kaudit_session")
    assert logged_in and logged_in != anonymous
    assert client.get("/api/v1/me").status_code == 200

    copied = console.client()
    copied.cookies.set("kaudit_session", logged_in)
    assert copied.get("/api/v1/me").status_code == 200

    out = client.post("/logout", headers={"X-CSRF-Token": client.headers["X-CSRF-Token"]})
    assert out.status_code == 303
    assert client.get("/api/v1/me").status_code == 401
    # A copy of the cookie taken before the logout opens nothing either.
    assert copied.get("/api/v1/me").status_code == 401
    (event,) = console.events("auth.logout")
    assert event["actor"]["id"] == "alice"


def test_a_session_ends_when_idle(tmp_path: Path) -> None:
    config = console_config(tmp_path, users=[local_user("alice", "dev")], session_idle_minutes=0.03)
    for console in harness(config):
        client = console.login("alice")
        time.sleep(2.2)  # the idle timeout itself is what is under test: 1.8 s
        assert client.get("/api/v1/me").status_code == 401


def test_roles_outside_authorized_roles_cannot_log_in(tmp_path: Path) -> None:
    config = console_config(
        tmp_path,
        users=[local_user("alice", "dev"), local_user("eve", "guest")],
        rbac={"authorized_roles": ["dev"]},
    )
    for console in harness(config):
        assert _attempt(console, "eve", "eve"[::-1] + "-pw").status_code == 401
        assert console.events("auth.failed")[0]["action"]["error"] == "no role in authorized_roles"
        console.login("alice")


def test_hash_password_command_makes_an_argon2id_hash_that_logs_in(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["console", "hash-password", "--stdin"], input="s3cret\n")
    assert result.exit_code == 0, result.output
    hashed = result.output.strip()
    assert hashed.startswith("$argon2id$")
    assert hash_password("s3cret") != hashed  # salted
    user = {**local_user("carol"), "password_hash": hashed}
    for console in harness(console_config(tmp_path, users=[user])):
        console.login("carol", "s3cret")


def test_the_login_page_offers_each_configured_provider(tmp_path: Path) -> None:
    config = console_config(
        tmp_path,
        users=[local_user("alice")],
        oidc=[
            {"name": "keycloak", "issuer": "https://sso.example.com/realms/ops", "client_id": "c"},
            {"name": "okta", "issuer": "https://acme.okta.example.com", "client_id": "c"},
        ],
        github={"client_id": "x", "client_secret": "y"},
    )
    for console in harness(config):
        page = console.client().get("/login", params={"next": "/clusters/offline/topics"})
        assert 'href="/auth/oidc/keycloak/login?next=/clusters/offline/topics"' in page.text
        assert 'href="/auth/oidc/okta/login?next=/clusters/offline/topics"' in page.text
        assert 'href="/auth/github/login?next=/clusters/offline/topics"' in page.text
        assert 'name="username"' in page.text


def test_the_session_cookie_is_httponly_and_samesite_lax(console: ConsoleHarness) -> None:
    client = console.client()
    token = page_csrf(client.get("/login").text)
    answer = client.post(
        "/login", data={"username": "alice", "password": "ecila-pw", "csrf_token": token}
    )
    cookie = answer.headers["set-cookie"].lower()
    assert cookie.startswith("kaudit_session=")
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_a_session_ends_at_its_absolute_timeout_even_when_busy(tmp_path: Path) -> None:
    config = console_config(tmp_path, users=[local_user("alice")], session_max_hours=0.0005)
    for console in harness(config):
        client = console.login("alice")
        deadline = time.monotonic() + 8
        while client.get("/api/v1/me").status_code == 200:  # used all the time: never idle
            assert time.monotonic() < deadline, "the session outlived its 1.8 s maximum"
            time.sleep(0.05)
        assert client.get("/api/v1/me").status_code == 401
