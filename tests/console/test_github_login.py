"""GitHub OAuth login, against a local stand-in of GitHub (tests/support/github_standin.py).

Why a stand-in: github.com is unreachable from where the tests run, and a real GitHub
login would need a real account, a registered OAuth app and a person at the consent
page. The stand-in follows GitHub's documented OAuth web flow and REST answers, and is
served over real HTTP, so the router's Authlib client and httpx calls run unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from kaudit.config.console_auth import GithubLogin
from kaudit.console.auth.github import github_router
from support.asgi_server import serve
from support.github_standin import CLIENT_ID, CLIENT_SECRET, GithubStandin, running_github_standin
from support.login_hooks import RecordingHooks, login_app


@pytest.fixture
def github() -> Iterator[GithubStandin]:
    with running_github_standin() as standin:
        yield standin


@pytest.fixture
def hooks() -> RecordingHooks:
    return RecordingHooks()


@pytest.fixture
def app_url(github: GithubStandin, hooks: RecordingHooks) -> Iterator[str]:
    config = GithubLogin(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        oauth_base_url=github.base_url,
        api_base_url=github.api_base_url,
        team_roles={
            "acme/kafka-admins": ["admin"],
            "acme/*": ["viewer"],
            "big-org/team-129": ["ops"],
        },
    )
    with serve(login_app(github_router(config, hooks))) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(follow_redirects=False, timeout=30) as client:
        yield client


def _to_callback(browser: httpx.Client, app_url: str, next_url: str | None = None) -> str:
    """Start at the app, pass GitHub's consent; returns the callback URL GitHub sends."""
    query = f"?{urlencode({'next': next_url})}" if next_url is not None else ""
    started = browser.get(f"{app_url}/auth/github/login{query}")
    assert started.status_code == 302, started.text
    authorize = urlsplit(started.headers["location"])
    params = parse_qs(authorize.query)
    assert params["client_id"] == [CLIENT_ID]
    assert params["code_challenge_method"] == ["S256"]
    assert "read:org" in params["scope"][0].split()
    consent = browser.get(started.headers["location"])
    assert consent.status_code == 302, consent.text
    callback = consent.headers["location"]
    assert callback.startswith(f"{app_url}/auth/github/callback?")
    return callback


def test_a_github_user_logs_in_with_roles_from_their_org_teams(
    app_url: str, browser: httpx.Client, github: GithubStandin, hooks: RecordingHooks
) -> None:
    done = browser.get(_to_callback(browser, app_url, next_url="/topics"))

    assert done.status_code == 200, done.text
    assert hooks.failures == []
    [(user, next_url)] = hooks.logins
    assert next_url == "/topics"
    assert user.provider == "github"
    assert user.login == "octocat"
    assert user.id == "583231"
    assert user.name == "The Octocat"
    assert user.email == "octocat@acme.example"  # the primary verified one
    assert user.roles == ("admin", "viewer")
    [token_request] = github.token_requests
    assert token_request["client_secret"] == CLIENT_SECRET
    assert token_request["code_verifier"]  # PKCE checked by the stand-in


def test_a_user_on_many_teams_is_paged_through_and_a_public_email_is_used(
    app_url: str, browser: httpx.Client, github: GithubStandin, hooks: RecordingHooks
) -> None:
    github.signed_in = "hubot"

    browser.get(_to_callback(browser, app_url, next_url="//evil.example/"))

    [(user, next_url)] = hooks.logins
    assert next_url is None
    assert user.login == "hubot"
    assert user.email == "hubot@acme.example"
    assert user.name is None
    assert user.roles == ("ops",)  # team-129 is on the second page of /user/teams


def test_a_tampered_state_or_a_reused_code_is_a_failed_login(
    app_url: str, browser: httpx.Client, hooks: RecordingHooks
) -> None:
    callback = _to_callback(browser, app_url)
    tampered = callback.replace("state=", "state=x")
    refused = browser.get(tampered)

    second = _to_callback(browser, app_url)
    browser.get(second)  # logs in, and uses the code up
    _to_callback(browser, app_url)  # a new login in progress, with a new state…
    replay = browser.get(second)  # …which the old callback does not match

    assert refused.status_code == 401
    assert replay.status_code == 401
    assert len(hooks.logins) == 1
    assert [f.provider for f in hooks.failures] == ["github", "github"]
    assert all("state does not match" in f.reason for f in hooks.failures)


def test_a_code_github_does_not_accept_is_a_failed_login(
    app_url: str, browser: httpx.Client, hooks: RecordingHooks
) -> None:
    callback = urlsplit(_to_callback(browser, app_url))
    params = {k: v[0] for k, v in parse_qs(callback.query).items()}

    answer = browser.get(
        f"{app_url}/auth/github/callback?{urlencode({**params, 'code': 'not-issued'})}"
    )

    assert answer.status_code == 401
    [failure] = hooks.failures
    assert "could not be exchanged" in failure.reason
    assert "bad_verification_code" in failure.reason
    assert hooks.logins == []


def test_a_refusal_at_github_or_a_failing_api_is_a_failed_login(
    app_url: str, browser: httpx.Client, github: GithubStandin, hooks: RecordingHooks
) -> None:
    browser.get(f"{app_url}/auth/github/login")
    denied = browser.get(
        f"{app_url}/auth/github/callback",
        params={"error": "access_denied", "error_description": "The user has denied access"},
    )
    github.fail_teams = True
    broken = browser.get(_to_callback(browser, app_url))

    assert denied.status_code == 401
    assert broken.status_code == 401
    assert hooks.logins == []
    first, second = hooks.failures
    assert first.reason == "GitHub refused: access_denied (The user has denied access)"
    assert second.login == "octocat"
    assert "/user/teams failed" in second.reason


def test_a_login_that_took_too_long_at_the_provider_is_refused(
    app_url: str, browser: httpx.Client, hooks: RecordingHooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    callback = _to_callback(browser, app_url)
    monkeypatch.setattr("kaudit.console.auth.callback.LOGIN_TIMEOUT_S", -1.0)

    answer = browser.get(callback)

    assert answer.status_code == 401
    assert hooks.logins == []
    [failure] = hooks.failures
    assert failure.reason.startswith("the login took longer than")
