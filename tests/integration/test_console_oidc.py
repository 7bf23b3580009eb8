"""OpenID Connect login against a real provider: Keycloak started by the tests.

Each test drives the authorization code flow the way a browser does, with httpx: the
app's login route redirects to Keycloak, Keycloak's login form is posted with a user's
password, and Keycloak's redirect is followed back to the app's callback, which hands
the user to a recording `LoginHooks`.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from kaudit.config.console_auth import OidcProvider
from kaudit.console.auth.callback import LoginError
from kaudit.console.auth.oidc import OidcClient, oidc_router
from support.asgi_server import serve
from support.keycloak import CLIENT_ID, CLIENT_SECRET, PUBLIC_CLIENT_ID, USERS, Keycloak
from support.login_hooks import RecordingHooks, login_app

_FORM_ACTION = re.compile(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"')


def _provider(keycloak: Keycloak, **overrides: object) -> OidcProvider:
    settings: dict[str, object] = {
        "name": "keycloak",
        "issuer": keycloak.issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "roles_claim": "realm_access.roles",
        **overrides,
    }
    return OidcProvider.model_validate(settings)


@pytest.fixture
def hooks() -> RecordingHooks:
    return RecordingHooks()


@pytest.fixture
def app_url(keycloak: Keycloak, hooks: RecordingHooks) -> Iterator[str]:
    public = OidcProvider(
        name="keycloak-public",
        issuer=keycloak.issuer,
        client_id=PUBLIC_CLIENT_ID,
        roles_claim="groups",
    )
    app = login_app(oidc_router([_provider(keycloak), public], hooks))
    with serve(app) as url:
        yield url


@contextmanager
def _new_browser() -> Iterator[httpx.Client]:
    """One browser's cookie jar; redirects are followed by hand to look at each hop.

    Keycloak marks its cookies Secure even over http. Browsers send those to loopback
    addresses anyway (127.0.0.1 is a "potentially trustworthy" origin); httpx does not,
    so the jar is told the same rule after each response.
    """

    def loopback_is_secure(response: httpx.Response) -> None:
        for cookie in client.cookies.jar:
            if cookie.domain.startswith("127.0.0.1"):
                cookie.secure = False

    with httpx.Client(
        follow_redirects=False, timeout=30, event_hooks={"response": [loopback_is_secure]}
    ) as client:
        yield client


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with _new_browser() as client:
        yield client


def _to_keycloak_form(
    browser: httpx.Client, app_url: str, next_url: str | None = None, provider: str = "keycloak"
) -> str:
    """Start a login at the app; returns the action URL of Keycloak's login form."""
    query = f"?{urlencode({'next': next_url})}" if next_url is not None else ""
    started = browser.get(f"{app_url}/auth/oidc/{provider}/login{query}")
    assert started.status_code == 302, started.text
    authorize = started.headers["location"]
    params = parse_qs(urlsplit(authorize).query)
    assert params["code_challenge_method"] == ["S256"]
    assert params["code_challenge"][0] and params["state"][0] and params["nonce"][0]
    page = browser.get(authorize)
    assert page.status_code == 200, page.text
    match = _FORM_ACTION.search(page.text)
    assert match, page.text
    return html.unescape(match.group(1))


def _submit(browser: httpx.Client, action: str, username: str, password: str) -> httpx.Response:
    return browser.post(action, data={"username": username, "password": password})


def _log_in(
    browser: httpx.Client,
    app_url: str,
    username: str,
    next_url: str | None = None,
    provider: str = "keycloak",
) -> httpx.Response:
    action = _to_keycloak_form(browser, app_url, next_url, provider)
    answer = _submit(browser, action, username, USERS[username][0])
    assert answer.status_code == 302, answer.text
    callback = answer.headers["location"]
    assert callback.startswith(f"{app_url}/auth/oidc/{provider}/callback?")
    return browser.get(callback)


@pytest.mark.timeout(600)
def test_a_user_logs_in_with_their_roles_from_the_configured_claim(
    keycloak: Keycloak, app_url: str, browser: httpx.Client, hooks: RecordingHooks
) -> None:
    done = _log_in(browser, app_url, "alice", next_url="/topics?cluster=prod")

    assert done.status_code == 200, done.text
    assert hooks.failures == []
    [(user, next_url)] = hooks.logins
    assert next_url == "/topics?cluster=prod"
    assert user.provider == "oidc:keycloak"
    assert user.login == "alice"
    assert user.email == "alice@example.com"
    assert user.name == "Alice Admin"
    assert re.fullmatch(r"[0-9a-f-]{36}", user.id), user.id  # Keycloak's subject
    assert "kafka-admin" in user.roles
    assert "kafka-viewer" not in user.roles


def test_each_user_gets_their_own_roles_and_a_foreign_next_is_dropped(
    app_url: str, browser: httpx.Client, hooks: RecordingHooks
) -> None:
    done = _log_in(browser, app_url, "bob", next_url="https://evil.example/steal")

    assert done.status_code == 200, done.text
    [(user, next_url)] = hooks.logins
    assert next_url is None
    assert user.login == "bob"
    assert "kafka-viewer" in user.roles
    assert "kafka-admin" not in user.roles


def test_a_public_client_logs_in_with_pkce_alone_and_roles_from_userinfo(
    app_url: str, browser: httpx.Client, hooks: RecordingHooks
) -> None:
    # This client has no secret, and its `groups` claim is only in the userinfo answer.
    alice = _log_in(browser, app_url, "alice", provider="keycloak-public")
    with _new_browser() as other_browser:
        bob = _log_in(other_browser, app_url, "bob", provider="keycloak-public")

    assert alice.status_code == 200, alice.text
    assert bob.status_code == 200, bob.text
    assert hooks.failures == []
    [(alice_user, _), (bob_user, _)] = hooks.logins
    assert alice_user.provider == "oidc:keycloak-public"
    assert alice_user.roles == ("kafka-ops",)
    assert bob_user.login == "bob"
    assert bob_user.roles == ()


def test_a_wrong_password_never_reaches_the_callback(
    app_url: str, browser: httpx.Client, hooks: RecordingHooks
) -> None:
    action = _to_keycloak_form(browser, app_url)
    answer = _submit(browser, action, "alice", "not-alices-password")

    # Keycloak shows its form again with an error; nothing is sent back to the app.
    assert answer.status_code == 200
    assert "Invalid username or password" in answer.text
    assert hooks.logins == []


def test_a_tampered_state_is_refused_and_the_login_cannot_be_replayed(
    app_url: str, browser: httpx.Client, hooks: RecordingHooks
) -> None:
    action = _to_keycloak_form(browser, app_url)
    answer = _submit(browser, action, "alice", USERS["alice"][0])
    assert answer.status_code == 302, answer.text
    callback = urlsplit(answer.headers["location"])
    params = {k: v[0] for k, v in parse_qs(callback.query).items()}
    forged = urlunsplit(callback._replace(query=urlencode({**params, "state": "forged-state"})))

    refused = browser.get(forged)
    replayed = browser.get(answer.headers["location"])

    assert refused.status_code == 401
    assert replayed.status_code == 401
    assert hooks.logins == []
    assert [f.provider for f in hooks.failures] == ["oidc:keycloak", "oidc:keycloak"]
    assert "state does not match" in hooks.failures[0].reason
    assert "no login in progress" in hooks.failures[1].reason


def test_an_error_from_the_provider_is_a_failed_login(
    app_url: str, browser: httpx.Client, hooks: RecordingHooks
) -> None:
    _to_keycloak_form(browser, app_url)

    answer = browser.get(
        f"{app_url}/auth/oidc/keycloak/callback",
        params={"error": "access_denied", "error_description": "user cancelled"},
    )

    assert answer.status_code == 401
    assert hooks.logins == []
    [failure] = hooks.failures
    assert failure.reason == "the provider refused: access_denied (user cancelled)"


def test_an_unreachable_provider_is_a_failed_login_and_an_unknown_one_is_404(
    hooks: RecordingHooks, browser: httpx.Client
) -> None:
    closed = OidcProvider(name="gone", issuer="http://127.0.0.1:9/realms/x", client_id="c")
    with serve(login_app(oidc_router([closed], hooks))) as url:
        unreachable = browser.get(f"{url}/auth/oidc/gone/login")
        unknown = browser.get(f"{url}/auth/oidc/nobody/login")

    assert unreachable.status_code == 401
    [failure] = hooks.failures
    assert failure.provider == "oidc:gone"
    assert "discovery document" in failure.reason and "unavailable" in failure.reason
    assert unknown.status_code == 404


def test_id_tokens_not_signed_by_the_provider_are_refused(keycloak: Keycloak) -> None:
    asyncio.run(_forged_tokens_are_refused(keycloak))


async def _forged_tokens_are_refused(keycloak: Keycloak) -> None:
    client = OidcClient(_provider(keycloak))
    metadata = await client.metadata()
    real_kid = (await client.key_set()).keys[0].kid
    now = int(time.time())
    claims = {
        "iss": metadata["issuer"],
        "sub": "someone",
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "nonce": "n-1",
    }
    # Same claims and key id as Keycloak would use, signed with a key Keycloak never had.
    forged = jwt.encode({"alg": "RS256", "kid": real_kid}, claims, RSAKey.generate_key(2048))
    unsigned = jwt.encode({"alg": "none"}, claims, None, algorithms=["none"])

    for token in (forged, unsigned):
        with pytest.raises(LoginError, match="ID token is not valid"):
            await client.verify_id_token(token, "n-1", None)


@pytest.mark.parametrize(
    ("param", "value", "reason"),
    [
        ("code", "forged-code", "could not be exchanged for tokens: invalid_grant"),
        ("iss", "http://127.0.0.1:9/realms/other", "the answer comes from issuer"),
    ],
)
def test_a_callback_with_a_forged_code_or_issuer_is_a_failed_login(
    app_url: str,
    browser: httpx.Client,
    hooks: RecordingHooks,
    param: str,
    value: str,
    reason: str,
) -> None:
    action = _to_keycloak_form(browser, app_url)
    answer = _submit(browser, action, "alice", USERS["alice"][0])
    callback = urlsplit(answer.headers["location"])
    params = {k: v[0] for k, v in parse_qs(callback.query).items()}
    assert param in params  # Keycloak sends both (iss per RFC 9207)
    forged = urlunsplit(callback._replace(query=urlencode({**params, param: value})))

    refused = browser.get(forged)

    assert refused.status_code == 401
    assert hooks.logins == []
    [failure] = hooks.failures
    assert reason in failure.reason
