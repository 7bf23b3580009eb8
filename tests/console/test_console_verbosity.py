"""The console's verbosity decides only whether queries are recorded: mutations, logins
and message inspection are recorded at every verbosity."""

from __future__ import annotations

import pytest

from kaudit.console.audit import ConsoleRecorder
from support.console import ConsoleHarness

ALWAYS = ["acl.created", "topic.deleted", "auth.login", "auth.failed", "records.inspected"]
QUERIES = ["acl.described", "config.viewed"]


@pytest.mark.parametrize("verbosity", ["mutations", "queries", "all"])
def test_mutations_logins_and_inspection_are_recorded_at_every_verbosity(
    console: ConsoleHarness, verbosity: str
) -> None:
    audit = ConsoleRecorder(console.session.recorder, verbosity)
    assert [t for t in ALWAYS if not audit.selected(t)] == []
    assert [audit.selected(t) for t in QUERIES] == [verbosity != "mutations"] * len(QUERIES)
