"""A person logs in to the console through Keycloak in headless Chromium, and the console
records `auth.login` with the OpenID Connect user.

The console runs on a real port (Keycloak's redirect and Chromium must reach it), with
an OIDC provider configured against the Keycloak the tests start; Chromium clicks the
login page's provider button, is refused once with a wrong password, then logs in. The
console app, its harness (tests/support/console.py) and the browser
(tests/support/browser.py) come from the console's core.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from kaudit.config.console_auth import OidcProvider
from support import browser, console
from support.asgi_server import serve
from support.keycloak import CLIENT_ID, CLIENT_SECRET, USERS, Keycloak


def test_a_person_logs_in_through_keycloak_in_chromium_and_it_is_recorded(
    keycloak: Keycloak, tmp_path: Path
) -> None:
    provider = OidcProvider(
        name="keycloak",
        issuer=keycloak.issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        roles_claim="realm_access.roles",
    )
    harness = console.ConsoleHarness(console.console_config(tmp_path, oidc=[provider]))
    try:
        with serve(harness.app) as url, browser.browser_page() as page:
            page.goto(f"{url}/login?next=/topics")
            page.click("a[href^='/auth/oidc/keycloak/login']")
            page.wait_for_url(f"{keycloak.issuer}/**")

            page.fill("#username", "alice")
            page.fill("#password", "not-alices-password")
            page.click("#kc-login")
            page.wait_for_selector("text=Invalid username or password")
            assert harness.events("auth.login") == []

            page.fill("#password", USERS["alice"][0])
            page.click("#kc-login")
            page.wait_for_url(lambda u: u.startswith(url) and "/auth/oidc/" not in u)
            assert urlsplit(page.url).path == "/topics"
            me = page.request.get(f"{url}/api/v1/me")
            assert me.ok, me.text()
            assert me.json()["login"] == "alice"
            assert me.json()["provider"] == "oidc:keycloak"

        [login] = harness.events("auth.login")
        assert login["action"]["result"] == "success"
        assert login["actor"]["id"] == "alice"
        assert login["actor"]["auth"] == "oidc:keycloak"
        assert "kafka-admin" in login["actor"]["roles"]
        assert login["actor"]["ip_address"] == "127.0.0.1"
        user = login["details"]["user"]
        assert user["provider"] == "oidc:keycloak"
        assert user["login"] == "alice"
        assert user["email"] == "alice@example.com"
        assert user["name"] == "Alice Admin"
    finally:
        harness.close()
