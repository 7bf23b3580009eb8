"""What login providers share: `next` kept only as a local path, and roles read from a
claim path."""

from __future__ import annotations

import pytest

from kaudit.console.auth.next_url import local_path
from kaudit.console.auth.oidc import claim_at


@pytest.mark.parametrize("value", ["/", "/topics", "/topics/orders?cluster=prod#configs"])
def test_a_local_path_is_kept(value: str) -> None:
    assert local_path(value) == value


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "topics",
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "/\t/evil.example/",
        "/\n/evil.example/",
        "javascript:alert(1)",
        "/" + "a" * 3000,
        ["/topics"],
    ],
)
def test_anything_that_could_leave_the_site_is_dropped(value: object) -> None:
    assert local_path(value) is None


def test_roles_are_found_by_dotted_path_or_by_a_claim_name_holding_dots() -> None:
    claims = {
        "realm_access": {"roles": ["kafka-admin"]},
        "resource_access": {"kaudit-console": {"roles": ["editor"]}},
        "https://acme.example/roles": ["auditor"],
        "groups": "ops",
    }

    assert claim_at(claims, "realm_access.roles") == ["kafka-admin"]
    assert claim_at(claims, "resource_access.kaudit-console.roles") == ["editor"]
    assert claim_at(claims, "https://acme.example/roles") == ["auditor"]
    assert claim_at(claims, "groups") == "ops"
    assert claim_at(claims, "realm_access.missing") is None
    assert claim_at(claims, "groups.inner") is None
