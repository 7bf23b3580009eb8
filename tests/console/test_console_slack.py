"""Console actions reach Slack in Kpow's words: "Action `create-topic: [tx-events]` by
*John Smith* succeeded on cluster `…`" (the slack destination's message for the event
the console recorded)."""

from __future__ import annotations

from kaudit.events.codec import decode
from kaudit.exporters.slack import message, selected
from kaudit.log.segments import LogReader
from support.console import ConsoleHarness


def test_a_console_action_reads_as_kpows_slack_message(console: ConsoleHarness) -> None:
    client = console.login("alice")  # the seed's policy: TOPIC_CREATE is denied
    answer = client.post("/api/v1/clusters/offline/topics", json={"name": "tx-events"})
    assert answer.status_code == 403
    console.session.flush()
    events = [decode(line) for _, line in LogReader(console.config.log_dir).iter_lines()]
    (created,) = [e for e in events if e.event_type == "topic.created"]
    payload = message(created, "#kafka", None)
    expected = "Action `create-topic: [tx-events]` by *Alice* was denied on cluster `offline-id`"
    assert payload["text"] == expected
    headline = payload["blocks"][0]["text"]["text"]
    assert headline == f"{expected}\n> no policy allows TOPIC_CREATE here"
    assert selected(created.event_type, "MUTATIONS")
    (login,) = [e for e in events if e.event_type == "auth.login"]
    assert "Action" not in message(login, None, None)["text"]
