"""The event type catalog: lookups, close-match hints for typos, globs and custom types."""

from __future__ import annotations

import re

import pytest

from kaudit.errors import UnknownEventTypeError
from kaudit.events.catalog import CATALOG, CATEGORIES, EventCatalog, is_glob


def test_every_builtin_name_is_category_dot_verb() -> None:
    for name in CATALOG.names:
        assert re.fullmatch(r"[a-z]+\.[a-z_]+", name), name


def test_categories_are_those_of_the_builtin_types_in_order() -> None:
    assert CATEGORIES[:3] == ("topic", "acl", "config")
    assert set(CATEGORIES) == {name.partition(".")[0] for name in CATALOG.names}


def test_a_known_name_gives_its_type() -> None:
    created = CATALOG.get("topic.created")
    assert created.category == "topic"
    assert created.mutation is True
    assert CATALOG.get("acl.described").mutation is False


def test_an_unknown_name_is_refused_with_the_closest_known_names() -> None:
    with pytest.raises(UnknownEventTypeError) as info:
        CATALOG.get("topic.create")
    message = str(info.value)
    assert "unknown event type 'topic.create'" in message
    assert "did you mean topic.created" in message
    assert "audit.custom_event_types" in message
    assert isinstance(info.value, ValueError)


def test_a_name_like_nothing_known_gets_no_guess_but_the_categories() -> None:
    message = CATALOG.unknown_message("zzzz")
    assert "did you mean" not in message
    assert "known categories: access, acl," in message


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("*.denied", ["access.denied"]),
        ("acl.*", ["acl.created", "acl.deleted", "acl.described"]),
        ("topic.created", ["topic.created"]),
        ("topic.nope", []),
        ("auth.log*", ["auth.login", "auth.logout"]),
        ("[ab]*.failed", ["backup.failed", "auth.failed"]),
    ],
)
def test_globs_select_types_by_name(pattern: str, expected: list[str]) -> None:
    assert sorted(CATALOG.matching(pattern)) == sorted(expected)


def test_glob_matching_is_case_sensitive() -> None:
    assert CATALOG.matching("TOPIC.*") == []


def test_is_glob_recognises_wildcards_only() -> None:
    assert is_glob("topic.*") and is_glob("auth.log?") and is_glob("[ab]*")
    assert not is_glob("topic.created")


def test_custom_types_are_accepted_and_matched_without_shadowing_builtins() -> None:
    catalog = EventCatalog(custom=["backup.verified", "topic.created"])
    assert "backup.verified" in catalog
    assert catalog.get("backup.verified").mutation is True
    assert catalog.get("topic.created").description == CATALOG.get("topic.created").description
    assert "backup.verified" in catalog.matching("backup.*")
    assert "backup.verified" not in CATALOG
