"""The console's wall: every route refuses a request without a session (the test walks
`app.routes`, so a new route cannot slip past), every state-changing request needs the
CSRF token, the login's `next` cannot send anyone off the site, one user cannot read
another's log, values are escaped, and every page carries a strict CSP."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount, Route

from kaudit.console.app import PUBLIC_ROUTES
from kaudit.events.model import Action, Actor, AuditEvent, Context, Resource
from support.console import ConsoleHarness, page_csrf, password_of


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_every_route_needs_a_session_except_the_public_ones(console: ConsoleHarness) -> None:
    client = console.client()
    checked = 0
    served = {context.path for context in iter_route_contexts(console.app.routes)}
    assert served >= PUBLIC_ROUTES, "a listed public route is not served by the app"
    # Included routers show up in app.routes as one entry each; iter_route_contexts
    # walks into them, so every route the app serves is visited.
    for context in iter_route_contexts(console.app.routes):
        route, path = context.original_route, context.path
        assert path is not None
        if isinstance(route, Mount):
            assert path in PUBLIC_ROUTES, f"mount {path} is not a listed public route"
            continue
        assert isinstance(route, APIRoute | Route), route
        if path in PUBLIC_ROUTES:
            continue
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            answer = client.request(method, _concrete(path))
            if path.startswith("/api/"):
                assert answer.status_code == 401, (method, path, answer.status_code)
                assert answer.json() == {"error": "unauthenticated"}
            else:
                assert answer.status_code == 303, (method, path, answer.status_code)
                assert answer.headers["location"].startswith("/login?next=")
            checked += 1
    assert checked >= 10
    assert console.events() == []  # nothing reached a service


def test_public_routes_are_only_login_health_static_and_provider_callbacks() -> None:
    assert {
        "/login",
        "/healthz",
        "/static",
        "/auth/oidc/{name}/login",
        "/auth/oidc/{name}/callback",
        "/auth/github/login",
        "/auth/github/callback",
        "/api/v1/events",
    } == PUBLIC_ROUTES


@pytest.mark.parametrize("token", [None, "forged"])
def test_state_changing_requests_need_the_csrf_token(
    console: ConsoleHarness, token: str | None
) -> None:
    client = console.login("alice")
    del client.headers["X-CSRF-Token"]
    headers = {"X-CSRF-Token": token} if token else {}
    form = {"name": "t1"} | ({"csrf_token": token} if token else {})
    assert client.post("/clusters/offline/topics", data=form).status_code == 403
    assert client.delete("/api/v1/clusters/offline/topics/t1", headers=headers).status_code == 403
    assert client.post("/logout", headers=headers).status_code == 403
    assert client.get("/api/v1/me").status_code == 200  # still logged in: logout was refused
    assert [e["event_type"] for e in console.events()] == ["auth.login"]


def test_login_itself_needs_the_csrf_token(console: ConsoleHarness) -> None:
    client = console.client()
    client.get("/login")
    answer = client.post("/login", data={"username": "alice", "password": password_of("alice")})
    assert answer.status_code == 403
    assert console.events("auth.login") == []


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "http:/evil",
        "javascript:x",
        "/%0d%0aLocation:%20http://evil",
        " //evil.example",
    ],
)
def test_login_next_cannot_leave_the_site(console: ConsoleHarness, target: str) -> None:
    client = console.client()
    token = page_csrf(client.get("/login", params={"next": target}).text)
    answer = client.post(
        "/login",
        data={
            "username": "alice",
            "password": password_of("alice"),
            "csrf_token": token,
            "next": target,
        },
    )
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location
    assert "evil" not in location or location.startswith("/%0d"), location


def test_login_next_keeps_a_local_path(console: ConsoleHarness) -> None:
    client = console.client()
    first = client.get("/clusters/offline/topics?x=1")
    assert first.headers["location"] == "/login?next=%2Fclusters%2Foffline%2Ftopics%3Fx%3D1"
    token = page_csrf(client.get(first.headers["location"]).text)
    answer = client.post(
        "/login",
        data={
            "username": "alice",
            "password": password_of("alice"),
            "csrf_token": token,
            "next": "/clusters/offline/topics?x=1",
        },
    )
    assert answer.headers["location"] == "/clusters/offline/topics?x=1"


def test_another_users_log_is_refused_but_an_admin_may_read_it(console: ConsoleHarness) -> None:
    alice = console.login("alice")
    root = console.login("root")
    assert alice.get("/api/v1/users/local/root/events").status_code == 403
    own = alice.get("/api/v1/users/local/alice/events")
    assert own.status_code == 200
    assert [e["event_type"] for e in own.json()] == ["auth.login"]
    assert [e["actor"]["id"] for e in alice.get("/api/v1/me/events").json()] == ["alice"]
    by_admin = root.get("/api/v1/users/local/alice/events")
    assert by_admin.status_code == 200
    assert [e["actor"]["id"] for e in by_admin.json()] == ["alice"]


def test_pages_have_a_strict_csp_and_no_inline_script(console: ConsoleHarness) -> None:
    client = console.login("alice")
    for page in (console.client().get("/login"), client.get("/my-log")):
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert page.headers["x-frame-options"] == "DENY"
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
        assert scripts and all(
            'src="/static/' in attrs and not body.strip() for attrs, body in scripts
        )
        assert not re.search(r"<[^>]+\son[a-z]+=", page.text), "inline event handler"
    htmx = client.get("/static/htmx.min.js")
    assert htmx.status_code == 200 and "htmx" in htmx.text
    assert "Zero-Clause BSD" in client.get("/static/htmx.LICENSE").text


def test_values_in_pages_are_escaped(console: ConsoleHarness) -> None:
    client = console.login("alice")
    evil = '"><img src=x onerror=alert(1)><script>alert(2)<\\script>'
    # The name reaches the page through the refusal: no such cluster.
    page = client.get(f"/clusters/{evil}/topics")
    assert page.status_code == 404
    assert "<img" not in page.text and "<script>alert" not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)" in page.text


def test_event_fields_in_the_users_log_are_escaped(console: ConsoleHarness) -> None:
    client = console.login("alice")
    evil = "<img src=x onerror=alert(1)>"
    refused = client.post(f"/clusters/offline/topics/{evil}/delete")
    assert refused.status_code == 403  # the seed's policy has no TOPIC_DELETE
    assert "<img" not in refused.text
    console.session.flush()
    page = client.get("/my-log")
    assert page.status_code == 200
    assert "delete-topic" in page.text
    assert "<img" not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text


def test_the_users_log_holds_the_last_seven_days(console: ConsoleHarness) -> None:
    old = AuditEvent(
        timestamp="2020-01-01T00:00:00.000Z",
        event_type="topic.created",
        event_id="",
        actor=Actor(type="user", id="alice"),
        resource=Resource(type="topic", id="ancient"),
        action=Action(operation="create-topic"),
        context=Context(source="console"),
        details={"console_action": "create-topic", "user": {"provider": "local", "login": "alice"}},
    )
    console.session.recorder.record(old)
    client = console.login("alice")
    assert len(console.events()) == 2
    assert [e["event_type"] for e in client.get("/api/v1/me/events").json()] == ["auth.login"]
